"""How MIGP reads one subject: checks, and per-voxel normalisation a block at a time.

A subject reaches :func:`rsxai.decomposition.group_pca.migp` as a ``(T, V)`` array or as a
zero-argument callable that loads it (often a read-only memory map). It is
never copied whole: it is read a block of voxels at a time, each block
demeaned and variance-normalised over all its volumes, and written into the
rows MIGP stacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from rsxai.exceptions import InputError

__all__ = [
    "VOXEL_BLOCK",
    "SubjectSource",
    "load_subject",
    "normalise_into",
    "normalised_rows",
    "scratch_view",
    "voxel_blocks",
]

#: Voxels per block when normalising and reducing: bounds transient memory to
#: about 1 MB.
VOXEL_BLOCK = 1024

SubjectSource = np.ndarray | Callable[[], np.ndarray]
"""One subject: a (T, V) array, or a zero-argument callable returning one."""


def load_subject(
    subjects: Sequence[SubjectSource], index: int, n_voxels: int | None
) -> np.ndarray:
    """Return ``subjects[index]`` as a 2D real array, calling it if it is a loader.

    Raises :class:`~rsxai.exceptions.InputError` naming the subject when the
    array is not 2D, not real-valued, has fewer than 2 volumes or a different
    number of voxels than ``n_voxels``. NaN and infinite values are found
    while the subject is normalised (:func:`normalise_into`), without a
    pass of their own.
    """
    item = subjects[index]
    data = np.asarray(item() if callable(item) else item)
    name = f"subjects[{index}]"
    if data.ndim != 2:
        raise InputError(
            f"{name} has shape {data.shape}; each subject must be a 2D array "
            "(n_volumes, n_voxels) of masked data."
        )
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise InputError(f"{name} has dtype {data.dtype}; give real-valued data.")
    if data.shape[0] < 2:
        raise InputError(f"{name} has {data.shape[0]} volume(s); give at least 2 volumes.")
    if n_voxels is not None and data.shape[1] != n_voxels:
        raise InputError(
            f"{name} has {data.shape[1]} voxels but the first subject has {n_voxels}; "
            "all subjects must be masked with the same brain mask on the same grid."
        )
    return data


def normalise_into(
    data: np.ndarray, out: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Demean and variance-normalise each voxel of one subject; its first rows into ``out``.

    One pass over the subject as given (often a read-only memory map), a
    block of voxels at a time: each block's mean over all ``T`` volumes
    (accumulated in float64), its deviations from the mean and their sum of
    squares in the precision of ``out`` (written straight into ``out`` when
    it has room for all ``T`` rows), then the first ``out.shape[0]``
    normalised rows. The statistics are returned for the rows that do not fit
    (see :func:`normalised_rows`). Constant voxels get a scale of 0 and stay
    zero rather than becoming NaN.

    NaN or infinite values make a block's mean or sum of squares non-finite,
    which is how they are found without a pass of their own. A block whose
    float32 sum of squares overflows (values beyond about 1e18) is computed
    again in float64, where squares of float32 values cannot overflow, so
    that only values that are not finite are refused.

    Parameters
    ----------
    data : ndarray of shape (T, V)
    out : ndarray of shape (n, V), n <= T
    name : str
        The subject, for the error message.

    Returns
    -------
    mean : ndarray of shape (V,), dtype of ``out``
    scale : ndarray of shape (V,), dtype of ``out``
        ``1 / std`` (population standard deviation), 0 for constant voxels.
    n_varying : int
    """
    n_volumes, n_voxels = data.shape
    n_out = out.shape[0]
    mean = np.empty(n_voxels, dtype=out.dtype)
    scale = np.empty(n_voxels, dtype=out.dtype)
    scratch = None if n_out == n_volumes else np.empty(n_volumes * VOXEL_BLOCK, out.dtype)
    finite = True
    # Non-finite values are reported below, not warned about here.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for columns in voxel_blocks(n_voxels):
            raw = data[:, columns]
            centred = out[:, columns] if scratch is None else scratch_view(scratch, raw.shape)
            mean[columns] = raw.mean(axis=0, dtype=np.float64)
            np.subtract(raw, mean[columns], out=centred, casting="same_kind")
            sum_of_squares = np.einsum("tv,tv->v", centred, centred)
            if not np.isfinite(sum_of_squares).all():  # overflow, or NaN/inf in the data
                exact = np.array(raw, dtype=np.float64)
                exact -= exact.mean(axis=0)
                sum_of_squares = np.einsum("tv,tv->v", exact, exact)
                finite = finite and np.isfinite(sum_of_squares).all()
                np.copyto(centred, exact, casting="same_kind")
            std = np.sqrt(sum_of_squares.astype(np.float64) / n_volumes)
            scale[columns] = np.where(std > 0, 1.0 / std, 0.0)
            centred *= scale[columns]
            if scratch is not None:
                out[:, columns] = centred[:n_out]
    if not finite:
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; fix the preprocessing or "
            "mask out the voxels without signal."
        )
    return mean, scale, int(np.count_nonzero(scale))


def normalised_rows(
    data: np.ndarray, mean: np.ndarray, scale: np.ndarray, out: np.ndarray
) -> None:
    """``(data - mean) * scale`` into ``out`` (same shape), a block of voxels at a time."""
    for columns in voxel_blocks(data.shape[1]):
        target = out[:, columns]
        np.subtract(data[:, columns], mean[columns], out=target, casting="same_kind")
        target *= scale[columns]


def voxel_blocks(n_voxels: int) -> Iterator[slice]:
    """Slices of at most ``VOXEL_BLOCK`` voxels covering ``range(n_voxels)``."""
    for start in range(0, n_voxels, VOXEL_BLOCK):
        yield slice(start, min(start + VOXEL_BLOCK, n_voxels))


def scratch_view(flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A C-contiguous ``shape`` array on the start of the flat scratch array ``flat``."""
    return flat[: shape[0] * shape[1]].reshape(shape)
