"""Interpolation of a 4D image at fixed points, as one sparse weight matrix for all volumes.

:func:`rsxai.preprocess.resample_to_grid` samples every volume of a run at
the same points (the analysis mask's voxel centres). Calling
:func:`scipy.ndimage.map_coordinates` once per volume recomputes the
interpolation weights every time: for a 150-volume fMRIPrep-style run on
FSL's 2 mm grid resampled onto the 4 mm mask (26,582 voxels) that took
0.5-0.7 s, about a quarter of the per-subject preprocessing and dual
regression (``benchmarks/network_maps.py``). Neither scipy nor nilearn
exposes a reusable interpolation operator, so it is written here: the
weights are computed once, as a sparse matrix with at most 8 non-zeros per
point (1 for nearest), and each volume is one sparse matrix-vector product
(0.05-0.09 s for the same run, weights included). The values are those of
``map_coordinates(order=1 or 0, mode="constant", cval=0)``, which
``tests/test_resampling.py`` checks.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["interpolation_matrix"]


def interpolation_matrix(
    coords: np.ndarray,
    source_shape: tuple[int, int, int],
    *,
    order: int = 1,
    layout: str = "F",
) -> sparse.csr_array:
    """Sparse weights that sample a volume at voxel coordinates, as ``map_coordinates`` does.

    Parameters
    ----------
    coords : ndarray of shape (3, n_points)
        Points in the source's voxel index space (float).
    source_shape : tuple of 3 int
        Shape (X, Y, Z) of the source volume.
    order : {0, 1}, default=1
        1: trilinear; 0: nearest voxel (ties round up, as scipy does).
    layout : {"F", "C"}, default="F"
        Order in which the columns enumerate the source voxels: "F" is
        nibabel's (``volume.ravel(order="F")`` of a nibabel volume is a view,
        not a copy).

    Returns
    -------
    weights : scipy.sparse.csr_array of shape (n_points, X * Y * Z), float64
        ``weights @ volume.ravel(order=layout)`` are the samples. A point
        outside the volume (a coordinate below 0 or above the last index on
        any axis) has an empty row and samples 0, as with
        ``mode="constant"``. Zero weights are not stored, so a non-finite
        source voxel reaches only the samples it contributes to.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (trilinear); got {order!r}.")
    if layout not in ("F", "C"):
        raise ValueError(f"layout must be 'F' or 'C'; got {layout!r}.")
    coords = np.asarray(coords, dtype=np.float64)
    shape = np.asarray(source_shape, dtype=np.int64)
    last = (shape - 1)[:, None]
    n_points = coords.shape[1]
    # The same test as scipy's mode="constant": outside by any amount is outside.
    inside = np.all((coords >= 0) & (coords <= last), axis=0)
    points = np.flatnonzero(inside)
    coords = coords[:, inside]
    if layout == "F":  # flat index of (i, j, k): i + X * (j + Y * k)
        strides = np.array([1, shape[0], shape[0] * shape[1]])
    else:  # (i * Y + j) * Z + k
        strides = np.array([shape[1] * shape[2], shape[2], 1])
    if order == 0:
        nearest = np.minimum(np.floor(coords + 0.5).astype(np.int64), last)
        rows, columns, values = points, strides @ nearest, np.ones(points.size)
    else:
        # The lower corner stays below the last index so that the upper one exists; a point
        # on the last index then has weight 1 on the upper corner.
        lower = np.clip(np.floor(coords).astype(np.int64), 0, np.maximum(last - 1, 0))
        fraction = coords - lower
        upper = np.minimum(lower + 1, last)
        rows, columns, values = [], [], []
        for corner in np.ndindex(2, 2, 2):
            use_upper = np.array(corner, dtype=bool)[:, None]
            rows.append(points)
            columns.append(strides @ np.where(use_upper, upper, lower))
            values.append(np.prod(np.where(use_upper, fraction, 1 - fraction), axis=0))
        rows, columns, values = map(np.concatenate, (rows, columns, values))
    stored = values != 0
    return sparse.csr_array(
        (values[stored], (rows[stored], columns[stored])),
        shape=(n_points, int(np.prod(shape))),
    )
