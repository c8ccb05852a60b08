"""The analysis grid: the brain mask shared by all subjects (:func:`common_mask`).

Built once for the whole cohort from the subjects' own brain masks (no
labels), so it is the same in every cross-validation fold.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_brain_mask, mni_grid
from rsxai.preprocess.prepare import load_image, resample_to_grid

__all__ = ["common_mask"]


def common_mask(
    mask_paths: Sequence[str | os.PathLike | nib.spatialimages.SpatialImage],
    voxel_size: float,
    *,
    min_fraction: float = 1.0,
) -> Grid:
    """The analysis grid: voxels inside enough subjects' brain masks and the MNI152 brain.

    Parameters
    ----------
    mask_paths : sequence of paths or images
        Subject brain masks (e.g. fMRIPrep ``*_desc-brain_mask.nii.gz``) in
        MNI space, on any grid; non-zero is inside. Empty: the MNI152 brain
        mask alone.
    voxel_size : float
        Voxel edge in mm of the analysis grid :func:`rsxai.grid.mni_grid`.
    min_fraction : float, default=1.0
        A voxel is kept when it is inside at least this fraction of the
        masks (1.0: the intersection; 0: the MNI152 brain mask alone).

    Returns
    -------
    grid : Grid
        Mask on ``mni_grid(voxel_size)``, also restricted to
        :func:`rsxai.grid.mni_brain_mask`.

    Raises
    ------
    InputError
        When a mask is not 3D, or no voxel is left; the message says which
        masks do not overlap.
    """
    if isinstance(mask_paths, (str, os.PathLike)):
        raise InputError(f"mask_paths must be a list of brain-mask images; got {mask_paths!r}.")
    if not 0 <= min_fraction <= 1:
        raise InputError(
            f"min_fraction must be in [0, 1] (1.0 keeps the intersection); got {min_fraction!r}."
        )
    affine, shape = mni_grid(voxel_size)
    if len(mask_paths) == 0:
        return Grid(mni_brain_mask(voxel_size), affine)
    whole_grid = Grid(np.ones(shape, dtype=bool), affine)
    brain = mni_brain_mask(voxel_size)
    count = np.zeros(shape, dtype=np.int32)
    masks, names = [], []
    for path in mask_paths:
        img, name = load_image(path)
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise InputError(f"{name}: a brain mask must be 3D; got shape {data.shape}.")
        binary = nib.Nifti1Image((data != 0).astype(np.float32), img.affine)
        # Trilinear then >= 0.5: a grid voxel is inside when mostly inside the mask.
        inside = resample_to_grid(binary, whole_grid)[0].reshape(shape) >= 0.5
        count += inside
        masks.append(np.packbits(inside))
        names.append(name)
    keep = (count >= min_fraction * len(names) - 1e-9) & brain
    if not keep.any():
        raise InputError(_no_overlap_problems(masks, names, brain, shape, voxel_size))
    return Grid(keep, affine)


def _no_overlap_problems(masks, names, brain, shape, voxel_size) -> list[str]:
    """Explain why no voxel survives common_mask: masks outside the brain, or disjoint pairs."""
    n_grid = int(np.prod(shape))
    unpacked = [np.unpackbits(m, count=n_grid).astype(bool).reshape(shape) for m in masks]
    problems = [
        f"{name}: no voxel of this mask falls inside the MNI152 brain on the {voxel_size:g} mm "
        "grid; is the mask in MNI space (check its affine)?"
        for name, mask in zip(names, unpacked, strict=True)
        if not (mask & brain).any()
    ]
    if problems:
        return problems
    disjoint = [
        f"{names[i]} and {names[j]} do not overlap inside the MNI152 brain."
        for i in range(len(unpacked))
        for j in range(i + 1, len(unpacked))
        if not (unpacked[i] & unpacked[j] & brain).any()
    ]
    if disjoint:
        return [
            *disjoint[:20],
            "The brain masks have no voxel in common; check that all are in the same "
            "(MNI) space, or lower min_fraction.",
        ]
    return [
        f"every pair of the {len(names)} brain masks overlaps, but no voxel is inside enough "
        "of them together with the MNI152 brain; lower min_fraction."
    ]
