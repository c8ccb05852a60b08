"""Group PCA by MIGP, with a memory bound that does not grow with the number of subjects.

MIGP (MELODIC's Incremental Group-PCA; Smith et al. 2014, *NeuroImage*
101:738-749) approximates the top spatial eigenvectors of the temporal
concatenation of all subjects without ever holding that concatenation:
subjects are visited in random order, their rows are appended to a working
matrix ``W`` (rows x voxels), and whenever ``W`` is full it is replaced by its
top ``m`` eigen-time-series ``U' W``. Subjects may be given as arrays or as
zero-argument callables that load them, so only one subject is in memory at
a time.

The dimension of the group signal can be estimated from the MIGP eigenvalues
with Minka's Laplace approximation to the PPCA evidence
(:func:`rsxai.pca_dimension.estimate_n_components`), the criterion MELODIC
uses by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from rsxai.exceptions import InputError

__all__ = [
    "MIGPResult",
    "SubjectSource",
    "load_subject",
    "migp",
]

# Rows (volumes) per float64 temporary while normalising, and voxels per block
# of the in-place reduction: both bound transient memory to a few MB.
_ROW_BLOCK = 16
_VOXEL_BLOCK = 4096

SubjectSource = np.ndarray | Callable[[], np.ndarray]
"""One subject: a (T, V) array, or a zero-argument callable returning one."""


@dataclass(frozen=True)
class MIGPResult:
    """Output of :func:`migp`.

    Attributes
    ----------
    components : ndarray of shape (m, V), float32
        The MIGP reduced data: row ``i`` is the ``i``-th spatial eigenvector
        scaled by the square root of its eigenvalue (rows are mutually
        orthogonal, in decreasing order of eigenvalue).
    eigenvalues : ndarray of shape (m,), float64
        Squared norms of the rows of ``components``: approximate eigenvalues
        of ``Y Y'`` for the concatenated normalised data ``Y`` (sums of squares,
        not divided by the number of voxels).
    total_variance : float
        Sum of squares of the whole concatenated normalised data, i.e. the sum
        of all its eigenvalues; ``eigenvalues / total_variance`` is the
        fraction of variance explained.
    subject_order : ndarray of shape (n_subjects,), int
        Indices of the subjects in the order they were fed to MIGP.
    n_time_points : int
        Total number of volumes over all subjects.
    rank_bound : int
        Upper bound on the rank of the concatenated data:
        ``min(sum(T_s - 1), V)`` (temporal demeaning removes one dimension per subject).
    peak_rows : int
        Largest number of rows the working matrix held; never above ``2 m``.
    """

    components: np.ndarray
    eigenvalues: np.ndarray
    total_variance: float
    subject_order: np.ndarray
    n_time_points: int
    rank_bound: int
    peak_rows: int


def load_subject(
    subjects: Sequence[SubjectSource], index: int, n_voxels: int | None
) -> np.ndarray:
    """Return ``subjects[index]`` as a finite 2D float array, calling it if it is a loader.

    Raises :class:`~rsxai.exceptions.InputError` naming the subject when the
    array is not 2D, has fewer than 2 volumes, has a different number of
    voxels than ``n_voxels``, or holds NaN or infinite values.
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
    if not np.all(np.isfinite(data)):
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; fix the preprocessing or "
            "mask out the voxels without signal."
        )
    return data


def _voxel_scaling(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, inverse standard deviation and number of non-constant voxels of one subject.

    Accumulated in float64 from the subject as given (often a read-only memory
    map), a few rows at a time, so that no normalised copy of the subject is
    ever made: :func:`migp` writes ``(data - mean) * scale`` straight into its
    working matrix. Constant voxels get a scale of 0 and stay zero rather than
    becoming NaN.

    Returns
    -------
    mean : ndarray of shape (V,), float64
    scale : ndarray of shape (V,), float64
        ``1 / std`` (population standard deviation), 0 for constant voxels.
    n_varying : int
    """
    n_volumes, n_voxels = data.shape
    mean = data.mean(axis=0, dtype=np.float64)
    sum_of_squares = np.zeros(n_voxels)
    for start in range(0, n_volumes, _ROW_BLOCK):  # float64 temporaries of a few rows only
        block = data[start : start + _ROW_BLOCK] - mean
        sum_of_squares += np.einsum("tv,tv->v", block, block)
    std = np.sqrt(sum_of_squares / n_volumes)
    varying = std > 0
    scale = np.divide(1.0, std, out=np.zeros(n_voxels), where=varying)
    return mean, scale, int(np.count_nonzero(varying))


def migp(
    subjects: Sequence[SubjectSource],
    n_components: int | None = None,
    *,
    random_state: int | np.random.Generator | None = 0,
    dtype: type = np.float32,
    progress: bool = False,
) -> MIGPResult:
    """Top ``m`` spatial eigenvectors of the concatenated subjects, by MIGP.

    Each subject is demeaned in time and variance-normalised voxel by voxel,
    then its rows are appended to the working matrix ``W``. ``W`` holds at
    most ``2 m`` rows: a subject that does not fit is appended in pieces, and
    each time ``W`` is full it is reduced to ``U' W``, ``U`` the top ``m``
    eigenvectors of ``W W'``. This is Smith et al.'s (2014) algorithm with the
    reduction triggered by the row budget rather than after every subject,
    so that memory stays bounded even for long runs: the working matrix
    (``2 m x V``), the subject being appended as it was given (e.g. a
    memory map; it is normalised straight into ``W``), and temporaries of a
    few MB (the reduction is done in place, a block of voxels at a time).

    The reduction uses ``eigh`` of the small ``2m x 2m`` Gram matrix ``W W'``
    rather than an SVD of ``W``: ``W`` is short and wide (``2m << V``), so
    forming the Gram matrix is one matrix product, and after a reduction the
    Gram block of the kept rows is already diagonal (the eigenvalues), so
    only the products with the newly appended rows are computed. A
    randomised SVD would not help: half of the rows are kept each time.

    Parameters
    ----------
    subjects : sequence of ndarray of shape (T_s, V), or of zero-argument callables
        Subjects' masked data on a common grid of ``V`` voxels. A callable is
        called once, when its subject is needed, and its array dropped after.
    n_components : int or None, default=None
        ``m``, the number of eigenvectors kept (MELODIC's ``--migpN``).
        Default ``2 T - 1`` with ``T`` the number of volumes of the first
        subject in MIGP order (MELODIC's default), capped at the rank of the data.
    random_state : int, numpy Generator or None, default=0
        Seeds the random order of the subjects.
    dtype : numpy float type, default=numpy.float32
        Precision of the working matrix and of its matrix products. float32
        halves memory and time; the eigendecompositions are always float64.
    progress : bool, default=False
        Show a progress bar over subjects.

    Returns
    -------
    MIGPResult
    """
    n_subjects = len(subjects)
    if n_subjects == 0:
        raise InputError("subjects is empty; give at least one subject's (T, V) data.")
    if n_components is not None and (
        isinstance(n_components, bool)
        or not isinstance(n_components, (int, np.integer))
        or n_components < 1
    ):
        raise InputError(
            f"migp_dim (MIGP's n_components) must be None or an integer >= 1; "
            f"got {n_components!r}."
        )
    rng = np.random.default_rng(random_state)
    order = rng.permutation(n_subjects)

    buffer = None  # (2m, V) working matrix W, first `n_rows` rows in use
    gram = None  # (2m, 2m) float64, W W' for the rows in use
    n_rows = peak_rows = 0
    n_voxels = None
    m = None
    total_variance = 0.0
    n_time_points = rank_bound = 0

    for index in tqdm(order, desc="MIGP", unit="subject", disable=not progress):
        raw = load_subject(subjects, int(index), n_voxels)
        if buffer is None:
            n_voxels = raw.shape[1]
            m = int(n_components) if n_components is not None else 2 * raw.shape[0] - 1
            m = min(m, n_voxels)
            buffer = np.empty((2 * m, n_voxels), dtype=dtype)
            gram = np.zeros((2 * m, 2 * m))
        mean, scale, n_varying = _voxel_scaling(raw)
        scale = scale.astype(dtype)
        n_volumes = raw.shape[0]
        # Each normalised varying voxel has a sum of squares of exactly n_volumes.
        total_variance += float(n_volumes * n_varying)
        n_time_points += n_volumes
        rank_bound += n_volumes - 1

        start = 0
        while start < n_volumes:
            if n_rows == 2 * m:
                n_rows = _reduce(buffer, gram, n_rows, m)
            stop = min(n_volumes, start + 2 * m - n_rows)
            new = slice(n_rows, n_rows + stop - start)
            chunk = buffer[new]
            # Normalised straight into the working matrix (centred in float64).
            np.subtract(raw[start:stop], mean, out=chunk, casting="same_kind")
            chunk *= scale
            cross = buffer[:n_rows] @ chunk.T
            gram[:n_rows, new] = cross
            gram[new, :n_rows] = cross.T
            gram[new, new] = chunk @ chunk.T
            n_rows += stop - start
            peak_rows = max(peak_rows, n_rows)
            start = stop
        del raw, chunk

    rank_bound = min(rank_bound, n_voxels)
    n_kept = _reduce(buffer, gram, n_rows, min(m, rank_bound))
    eigenvalues = np.diag(gram)[:n_kept].copy()
    del gram
    if buffer.dtype == np.float32:
        # Shrink the working matrix to the kept rows in place (a realloc) rather
        # than copying them: a copy would briefly need another (m, V) array.
        buffer.resize((n_kept, n_voxels), refcheck=True)
        components = buffer
    else:
        components = buffer[:n_kept].astype(np.float32)
    return MIGPResult(
        components=components,
        eigenvalues=eigenvalues,
        total_variance=total_variance,
        subject_order=order,
        n_time_points=n_time_points,
        rank_bound=rank_bound,
        peak_rows=peak_rows,
    )


def _reduce(buffer: np.ndarray, gram: np.ndarray, n_rows: int, n_keep: int) -> int:
    """Replace the first ``n_rows`` rows of ``buffer`` by their top ``n_keep`` eigen-rows.

    ``gram`` must hold ``W W'`` for those rows; on return its leading
    ``n_keep x n_keep`` block is the diagonal of kept eigenvalues (the Gram
    matrix of the new rows). Returns the new number of rows.
    """
    n_keep = min(n_keep, n_rows)
    # The full divide-and-conquer decomposition ("evd") is faster here than
    # computing only the kept part with "evr", which is erratically slow on
    # these nearly diagonal matrices. One LAPACK thread: on a matrix this small
    # (at most 2m x 2m) threads gain nothing, and on a busy machine their
    # synchronisation made each decomposition up to 100 times slower (4 s
    # instead of 0.04 s for 598 x 598 on 2 shared cores).
    with threadpool_limits(limits=1, user_api="blas"):
        eigenvalues, eigenvectors = linalg.eigh(gram[:n_rows, :n_rows], driver="evd")
    eigenvalues, eigenvectors = eigenvalues[-n_keep:], eigenvectors[:, -n_keep:]
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    # Fix the sign of each eigenvector so the result does not depend on LAPACK's choice.
    signs = np.sign(eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), np.arange(n_keep)])
    eigenvectors *= signs
    projection = np.ascontiguousarray(eigenvectors.T, dtype=buffer.dtype)  # (n_keep, n_rows)
    # U' W in place, one block of voxels at a time: each output column depends
    # only on the same input column, so the temporary is (n_keep, block)
    # instead of a second (n_keep, V) matrix.
    for start in range(0, buffer.shape[1], _VOXEL_BLOCK):
        columns = slice(start, start + _VOXEL_BLOCK)
        buffer[:n_keep, columns] = projection @ buffer[:n_rows, columns]
    gram[:n_rows, :n_rows] = 0.0
    gram[np.arange(n_keep), np.arange(n_keep)] = np.clip(eigenvalues, 0.0, None)
    return n_keep
