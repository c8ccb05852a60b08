"""The CNN weights file: safetensors tensors plus the metadata needed to rebuild the network.

:meth:`rsxai.cnn.classifier.CNNClassifier.save_weights` and
:meth:`~rsxai.cnn.classifier.CNNClassifier.from_weights` use these functions;
they hold the file format only (no model building), so that the format, its
older layout and the mask check live in one place. Safetensors cannot run
code when loaded, unlike pickles.

The metadata is one key, ``"rsxai"``, holding sorted JSON with the
architecture parameters, the classes, the input shape, a SHA-256 digest of the
training mask and the rsxai version. Files from older rsxai versions held
these keys at the top level of the metadata map; :func:`read_weights` reads
both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rsxai._version import __version__
from rsxai.cnn.inputs import check_mask
from rsxai.exceptions import InputError
from rsxai.outputs import atomic_path

__all__ = ["WeightsFile", "mask_digest", "read_weights", "write_weights"]


@dataclass
class WeightsFile:
    """What a weights file holds, read back by :func:`read_weights`.

    Attributes
    ----------
    parameters : dict
        The architecture parameters of the estimator (``architecture``,
        ``n_blocks``, ...), as given to :func:`write_weights`.
    classes : ndarray of shape (n_classes,)
        Class labels, in the order of the network's outputs.
    in_shape : tuple of 3 int
        Shape of the volumes the network sees.
    state_dict : dict of str to torch.Tensor
        The network's weights, on the CPU.
    """

    parameters: dict[str, Any]
    classes: np.ndarray
    in_shape: tuple[int, int, int]
    state_dict: dict[str, torch.Tensor]


def mask_digest(mask: np.ndarray) -> str:
    """SHA-256 of the mask's shape and voxels: identifies the mask a model was trained on.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    """
    digest = hashlib.sha256(repr(mask.shape).encode())
    digest.update(np.packbits(mask.astype(bool)).tobytes())
    return digest.hexdigest()


def write_weights(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    parameters: Mapping[str, Any],
    classes: np.ndarray,
    in_shape: Sequence[int],
    mask: np.ndarray,
) -> Path:
    """Write a network's weights and its metadata as safetensors, atomically.

    Parameters
    ----------
    path : str or Path
        The ``.safetensors`` file to write.
    state_dict : mapping of str to torch.Tensor
        The network's weights (moved to the CPU here).
    parameters : mapping
        The architecture parameters needed to rebuild the network (JSON-serialisable).
    classes : ndarray of shape (n_classes,)
    in_shape : sequence of 3 int
    mask : ndarray of bool, shape (X, Y, Z)
        The training mask; only its digest is stored.

    Returns
    -------
    Path
    """
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    metadata = {
        "rsxai_version": __version__,
        "parameters": json.dumps(dict(parameters)),
        "classes": json.dumps(np.asarray(classes).tolist()),
        "in_shape": json.dumps([int(n) for n in in_shape]),
        "mask_sha256": mask_digest(mask),
    }
    with atomic_path(path) as temporary:
        # One key holding sorted JSON: safetensors writes a metadata map in a
        # random order (safetensors issue #584), which made the same weights
        # give different bytes from run to run.
        save_file(state, str(temporary), metadata={"rsxai": json.dumps(metadata, sort_keys=True)})
    return Path(path)


def read_weights(path: str | Path, mask: np.ndarray) -> WeightsFile:
    """Read a file of :func:`write_weights` (or of older rsxai versions), checking the mask.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file written by :func:`write_weights`.
    mask : array-like of shape (X, Y, Z)
        The mask the model was trained with (checked by
        :func:`rsxai.cnn.inputs.check_mask`); its digest must match the file's.

    Returns
    -------
    WeightsFile

    Raises
    ------
    InputError
        If the file holds no rsxai metadata, the mask is not a valid mask, or
        the model was trained on another mask.
    """
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "rsxai" in metadata:  # older files held the keys at the top level
        metadata = json.loads(metadata["rsxai"])
    if "parameters" not in metadata or "mask_sha256" not in metadata:
        raise InputError(f"{path}: not written by CNNClassifier.save_weights (no rsxai metadata).")
    mask = check_mask(mask)
    if mask_digest(mask) != metadata["mask_sha256"]:
        raise InputError(
            f"{path}: the model was trained on another mask than the one given "
            "(mask digests differ). Give the mask used for training."
        )
    return WeightsFile(
        parameters=json.loads(metadata["parameters"]),
        classes=np.asarray(json.loads(metadata["classes"])),
        in_shape=tuple(json.loads(metadata["in_shape"])),
        state_dict=load_file(str(path)),
    )
