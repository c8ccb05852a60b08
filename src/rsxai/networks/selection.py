"""Which group map is each network: by the templates, by hand, or by a reference map.

Also the reading of group maps made elsewhere (e.g. MELODIC's ``melodic_IC``).
Apart from :mod:`rsxai.networks.network_maps`, the estimator that calls them,
because they work on any set of group maps, fitted or imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.networks.labelling import (
    NetworkLabels,
    NetworkTemplates,
    builtin_templates,
    label_components,
    load_templates,
)


def load_group_maps(path: str | Path, grid: Grid) -> np.ndarray:
    """Read group maps made elsewhere (e.g. MELODIC's ``melodic_IC.nii.gz``) onto the grid.

    Parameters
    ----------
    path : str or Path
        A 4D NIfTI, one volume per component, in MNI space.
    grid : Grid
        The analysis grid.

    Returns
    -------
    maps : ndarray of shape (n_components, n_voxels)
        Resampled by affine (trilinear), float32.
    """
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn import image

    path = Path(path)
    try:
        img = nib.load(path)
    except (OSError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(
            f"{path}: cannot read the group maps ({error}). Give a 4D NIfTI."
        ) from None
    if len(img.shape) != 4:
        raise InputError(
            f"{path}: group maps must be 4D (one volume per component); got shape {img.shape}."
        )
    resampled = image.resample_img(
        img,
        target_affine=grid.affine,
        target_shape=grid.shape,
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    maps = grid.from_img_data(np.asarray(resampled.dataobj, dtype=np.float32))
    maps = np.nan_to_num(maps)
    empty = np.flatnonzero(np.abs(maps).max(axis=1) == 0)
    if len(empty) == maps.shape[0] or maps.shape[1] == 0:
        raise InputError(
            f"{path}: the group maps do not overlap the analysis brain mask; are they in MNI "
            "space? Resample them to MNI space first."
        )
    if len(empty):
        raise InputError(
            f"{path}: components {empty.tolist()} are empty inside the analysis brain mask. "
            "Remove them or check the image's space."
        )
    return maps


def match_reference_maps(
    components: np.ndarray, references: Mapping[str, np.ndarray]
) -> dict[str, dict]:
    """The component that correlates best with each reference map.

    Parameters
    ----------
    components : ndarray of shape (K, n_voxels)
        Sign-fixed group maps (positive tail = the network).
    references : mapping of str to ndarray of shape (n_voxels,)
        One map per network, e.g. the component chosen on all subjects.

    Returns
    -------
    dict of str to dict
        Per network: ``component`` (index into ``components``) and ``r`` (its
        Pearson correlation with the reference; signed, since the signs are fixed).
    """
    matches = {}
    centred = components - components.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    for name, reference in references.items():
        ref = np.asarray(reference, dtype=np.float64) - np.mean(reference)
        r = centred @ ref / np.maximum(norms * np.linalg.norm(ref), np.finfo(float).tiny)
        best = int(np.argmax(r))
        matches[name] = {"component": best, "r": float(r[best])}
    return matches


def choose_networks(
    components: np.ndarray,
    grid: Grid,
    *,
    templates: NetworkTemplates | str | Path | None = None,
    networks: Sequence[str] = ("sensorimotor", "visual"),
    force: Mapping[str, int] | None = None,
    min_r: float = 0.15,
) -> NetworkLabels:
    """Label group maps with the templates (built-in when ``templates`` is None).

    Parameters
    ----------
    components : ndarray of shape (K, n_voxels)
        Sign-fixed group maps on ``grid``.
    grid : Grid
    templates, networks, force, min_r
        As :class:`NetworkMaps`.

    Returns
    -------
    NetworkLabels
        A requested network without a matching component has None; see
        :func:`check_networks_found`.
    """
    if not isinstance(templates, NetworkTemplates):
        templates = (
            builtin_templates(grid) if templates is None else load_templates(templates, grid)
        )
    return label_components(
        components,
        templates,
        networks=tuple(networks),
        force=dict(force) if force else None,
        min_r=min_r,
    )


def check_networks_found(labels: NetworkLabels, min_r: float) -> None:
    """Raise InputError naming every requested network left without a component."""
    missing = [name for name, index in labels.selected.items() if index is None]
    if missing:
        raise InputError(
            f"networks: no component matches {', '.join(missing)} (best template r below "
            f"min_r={min_r}). Look at the components and their template matches "
            "(group/desc-ica_components.nii.gz and .tsv), then choose one with "
            f"--force-component {missing[0]}=INDEX, or lower --min-template-r."
        )
