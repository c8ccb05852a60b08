"""Conversion between masked subject maps and the CNN's input volumes.

The shared array convention holds a map as one row over a brain mask's voxels
(subjects x voxels); a 3D CNN needs volumes. :func:`maps_to_volumes` places
each map in the mask's bounding box (:func:`crop_box`) and z-scores it within
the mask, and :func:`volumes_to_maps` takes volumes on that box back to masked
maps (for writing explanation maps onto the full grid). These functions are
apart from :mod:`rsxai.cnn.classifier` because they hold no model: the
classifier, the attribution methods and the explanation stage all use them.
"""

from __future__ import annotations

import numpy as np

from rsxai.exceptions import InputError
from rsxai.grid import Grid

__all__ = ["check_mask", "crop_box", "maps_to_volumes", "volumes_to_maps"]


def check_mask(mask) -> np.ndarray:
    """The mask as a 3D boolean array, checked to hold at least one voxel.

    Parameters
    ----------
    mask : array-like of shape (X, Y, Z)
        Boolean or numeric (nonzero is inside).

    Returns
    -------
    mask : ndarray of bool, shape (X, Y, Z)
    """
    mask = np.asarray(mask)
    if mask.ndim != 3 or not (mask.dtype == bool or np.issubdtype(mask.dtype, np.number)):
        raise InputError(f"mask must be a 3D boolean array; got shape {mask.shape}, {mask.dtype}.")
    mask = mask != 0
    if not mask.any():
        raise InputError("mask is empty: no voxel is inside the brain.")
    return mask


def crop_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """Slices of the smallest box holding every voxel of ``mask`` (3D bool)."""
    return Grid(check_mask(mask), np.eye(4)).bounding_box()


def maps_to_volumes(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """CNN input volumes from masked maps: cropped to the mask's box, z-scored within the mask.

    Each map is standardised with the mean and standard deviation of its
    own in-mask voxels only (no statistic shared across subjects, so no
    leakage between training and test subjects); voxels outside the mask are
    zero.

    Parameters
    ----------
    X : ndarray of shape (n_subjects, n_voxels)
        One map per row, voxels in the order of ``mask``'s True entries
        (C order, as :class:`rsxai.grid.Grid`).
    mask : ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    volumes : ndarray of shape (n_subjects, 1, x, y, z), float32
        ``(x, y, z)`` is the shape of :func:`crop_box` of the mask.
    """
    mask = check_mask(mask)
    X = np.asarray(X, dtype=np.float64)
    n_voxels = int(mask.sum())
    if X.ndim != 2 or X.shape[1] != n_voxels:
        raise InputError(
            f"X must have shape (n_subjects, {n_voxels}): one map per row over the mask's "
            f"{n_voxels} voxels; got shape {X.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        raise InputError(f"X rows {bad.tolist()} hold NaN or infinite values.")
    sd = X.std(axis=1, keepdims=True)
    flat = np.flatnonzero(sd[:, 0] == 0)
    if flat.size:
        raise InputError(
            f"X rows {flat.tolist()} are constant over the mask: such a map carries no "
            "pattern to classify (check those subjects' dual regression)."
        )
    box = crop_box(mask)
    box_mask = mask[box]
    volumes = np.zeros((X.shape[0], 1, *box_mask.shape), dtype=np.float32)
    # The box is a contiguous block of the grid, so the C order of its
    # in-mask voxels is the order of X's columns.
    volumes[:, 0, box_mask] = (X - X.mean(axis=1, keepdims=True)) / sd
    return volumes


def volumes_to_maps(volumes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked maps from cropped volumes: the in-mask voxels, in the mask's order.

    The inverse placement of :func:`maps_to_volumes` (without undoing its
    standardisation), for writing explanation maps back onto the full grid
    with :meth:`rsxai.grid.Grid.to_img`.

    Parameters
    ----------
    volumes : ndarray of shape (n, 1, x, y, z) or (n, x, y, z)
        Volumes on the mask's bounding box.
    mask : ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    maps : ndarray of shape (n, n_voxels)
    """
    mask = check_mask(mask)
    box_mask = mask[crop_box(mask)]
    volumes = np.asarray(volumes)
    if volumes.ndim == 5 and volumes.shape[1] == 1:
        volumes = volumes[:, 0]
    if volumes.ndim != 4 or volumes.shape[1:] != box_mask.shape:
        raise InputError(
            f"volumes must have shape (n, 1, {', '.join(map(str, box_mask.shape))}) or "
            f"(n, {', '.join(map(str, box_mask.shape))}), the mask's bounding box; "
            f"got {volumes.shape}."
        )
    return volumes[:, box_mask]
