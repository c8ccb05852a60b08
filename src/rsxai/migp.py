"""Group PCA by MIGP, with a memory bound that does not grow with the number of subjects.

MIGP (MELODIC's Incremental Group-PCA; Smith et al. 2014, *NeuroImage*
101:738-749) approximates the top spatial eigenvectors of the temporal
concatenation of all subjects without ever holding that concatenation:
subjects are visited in random order, and each one's rows ``Y`` are merged
into a working matrix ``W`` of at most ``m`` rows by keeping the top ``m``
eigen-time-series ``U' [W; Y]``. Subjects may be given as arrays or as
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

# Rows (volumes) per block of the finiteness check, and voxels per block when
# normalising and reducing: both bound transient memory to about 1 MB.
_ROW_BLOCK = 16
_VOXEL_BLOCK = 1024

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
        Largest number of rows decomposed together (the rows of the working
        matrix plus those of the piece of a subject being added); never
        above ``2 m``. The working matrix itself holds at most ``m`` rows.
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
    # A few rows at a time: a boolean mask of the whole subject would be a
    # temporary of T x V bytes.
    if not all(
        np.isfinite(data[start : start + _ROW_BLOCK]).all()
        for start in range(0, data.shape[0], _ROW_BLOCK)
    ):
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; fix the preprocessing or "
            "mask out the voxels without signal."
        )
    return data


def _voxel_scaling(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, inverse standard deviation and number of non-constant voxels of one subject.

    Accumulated in float64 from the subject as given (often a read-only memory
    map), a block of voxels at a time, so that no normalised copy of the
    subject is ever made: :func:`migp` normalises ``(data - mean) * scale``
    block by block as it reads the subject. Constant voxels get a scale of 0
    and stay zero rather than becoming NaN.

    Returns
    -------
    mean : ndarray of shape (V,), float64
    scale : ndarray of shape (V,), float64
        ``1 / std`` (population standard deviation), 0 for constant voxels.
    n_varying : int
    """
    n_volumes, n_voxels = data.shape
    mean = np.empty(n_voxels)
    sum_of_squares = np.empty(n_voxels)
    for columns in _voxel_blocks(n_voxels):  # float64 temporaries of (T, block) only
        block = np.array(data[:, columns], dtype=np.float64)
        mean[columns] = block.mean(axis=0)
        block -= mean[columns]
        sum_of_squares[columns] = np.einsum("tv,tv->v", block, block)
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
    and its rows ``Y`` join the working matrix ``W`` of at most ``m`` rows:
    appended while they fit, otherwise ``[W; Y]`` is replaced by ``U' [W; Y]``,
    ``U`` the top ``m`` eigenvectors of its Gram matrix. This is Smith et
    al.'s (2014) algorithm (a reduction after every subject once ``m`` rows
    are reached); a subject of more than ``m`` volumes is added in pieces of
    ``m``, so that no more than ``2 m`` rows are ever decomposed together.
    Memory stays bounded whatever the number of subjects: ``W`` itself
    (``m x V``, the result), the subject being added as it was given (e.g. a
    memory map; it is never copied, but read and normalised a block of voxels
    at a time), the ``2m x 2m`` Gram matrix and temporaries of about 1 MB.

    The reduction uses ``eigh`` of the small Gram matrix of ``[W; Y]``
    rather than an SVD: the matrix is short and wide (``2m << V``), and after
    a reduction the Gram block of ``W`` is already diagonal (the
    eigenvalues), so only the products with the new rows ``W Y'`` and
    ``Y Y'`` are computed. ``U' [W; Y]`` is then formed in place, a block of
    voxels at a time. A randomised SVD would not help: most rows are kept.

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

    buffer = None  # (m, V) working matrix W, first `n_rows` rows in use
    gram = None  # (2m, 2m) float64: Gram matrix of W and the rows being added
    n_rows = peak_rows = 0
    reduced = False  # whether W holds eigen-rows (Gram diagonal, decreasing)
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
            # Pages of rows never used (fewer volumes in all than m) are never touched.
            buffer = np.empty((m, n_voxels), dtype=dtype)
            gram = np.zeros((2 * m, 2 * m))
            # Normalised blocks of the subject's rows being added (see _Piece).
            piece_scratch = np.empty(m * _VOXEL_BLOCK, dtype=dtype)
        mean, scale, n_varying = _voxel_scaling(raw)
        scale = scale.astype(dtype)
        n_volumes = raw.shape[0]
        # Each normalised varying voxel has a sum of squares of exactly n_volumes.
        total_variance += float(n_volumes * n_varying)
        n_time_points += n_volumes
        rank_bound += n_volumes - 1

        for start in range(0, n_volumes, m):  # pieces of at most m rows
            piece = _Piece(raw[start : start + m], mean, scale, piece_scratch)
            n_new = piece.n_rows
            peak_rows = max(peak_rows, n_rows + n_new)
            if n_rows + n_new <= m:  # room left: the normalised rows are appended to W
                new = buffer[n_rows : n_rows + n_new]
                piece.normalise_into(new)
                _add_to_gram(gram, n_rows, buffer[:n_rows] @ new.T, new @ new.T)
                n_rows += n_new
                reduced = False
            else:
                _add_to_gram(gram, n_rows, *piece.products(buffer[:n_rows]))
                n_rows = _reduce(buffer, gram, n_rows, m, piece)
                reduced = True
        del raw, piece

    rank_bound = min(rank_bound, n_voxels)
    if reduced:
        # W already holds eigen-rows in decreasing order: keep those within the rank.
        n_kept = min(n_rows, rank_bound)
    else:
        n_kept = _reduce(buffer, gram, n_rows, min(m, rank_bound))
    eigenvalues = np.diag(gram)[:n_kept].copy()
    del gram
    # A view of the leading rows, not a copy (which would need a second (m, V)
    # array at once); rows never written take no memory.
    components = buffer[:n_kept]
    if components.dtype != np.float32:
        components = components.astype(np.float32)
    return MIGPResult(
        components=components,
        eigenvalues=eigenvalues,
        total_variance=total_variance,
        subject_order=order,
        n_time_points=n_time_points,
        rank_bound=rank_bound,
        peak_rows=peak_rows,
    )


class _Piece:
    """Up to ``m`` rows of one subject, normalised a block of voxels at a time when read.

    The rows are never copied whole: :func:`_reduce` reads them once for
    their products with ``W`` and once for the projection, normalising each
    ``(rows, block)`` block on the fly (identically both times) into one
    scratch array reused for every block.
    """

    def __init__(self, raw: np.ndarray, mean: np.ndarray, scale: np.ndarray, scratch: np.ndarray):
        self.raw, self.mean, self.scale, self.scratch = raw, mean, scale, scratch
        self.n_rows = raw.shape[0]

    def block(self, columns: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Normalised rows at ``columns``: ``(raw - mean) * scale``, centred in float64."""
        raw = self.raw[:, columns]
        if out is None:
            out = _scratch_view(self.scratch, raw.shape)
        np.subtract(raw, self.mean[columns], out=out, casting="same_kind")
        out *= self.scale[columns]
        return out

    def normalise_into(self, out: np.ndarray) -> None:
        for columns in _voxel_blocks(out.shape[1]):
            self.block(columns, out=out[:, columns])

    def products(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows @ Y'`` and ``Y @ Y'`` for the normalised piece ``Y``, summed in float64."""
        cross = np.zeros((rows.shape[0], self.n_rows))
        inner = np.zeros((self.n_rows, self.n_rows))
        for columns in _voxel_blocks(rows.shape[1]):
            block = self.block(columns)
            cross += rows[:, columns] @ block.T
            inner += block @ block.T
        return cross, inner


def _scratch_view(flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A C-contiguous ``shape`` array on the start of the flat scratch array ``flat``."""
    return flat[: shape[0] * shape[1]].reshape(shape)


def _add_to_gram(gram: np.ndarray, n_rows: int, cross: np.ndarray, inner: np.ndarray) -> None:
    """Fill in the Gram matrix of ``[W; Y]`` from ``cross = W Y'`` and ``inner = Y Y'``."""
    new = slice(n_rows, n_rows + inner.shape[0])
    gram[:n_rows, new] = cross
    gram[new, :n_rows] = cross.T
    gram[new, new] = inner


def _voxel_blocks(n_voxels: int):
    for start in range(0, n_voxels, _VOXEL_BLOCK):
        yield slice(start, min(start + _VOXEL_BLOCK, n_voxels))


def _reduce(
    buffer: np.ndarray, gram: np.ndarray, n_rows: int, n_keep: int, piece: _Piece | None = None
) -> int:
    """Replace the rows of ``[W; piece]`` by their top ``n_keep`` eigen-rows, in ``buffer``.

    ``W`` is the first ``n_rows`` rows of ``buffer``; ``gram`` must hold the
    Gram matrix of ``[W; piece]`` (``piece`` rows after ``W``'s). On return
    the first ``n_keep`` rows of ``buffer`` are ``U' [W; piece]``, ``U`` the
    top ``n_keep`` eigenvectors, and the leading ``n_keep x n_keep`` block of
    ``gram`` is the diagonal of their eigenvalues. Returns the new number of rows.
    """
    n_total = n_rows + (0 if piece is None else piece.n_rows)
    n_keep = min(n_keep, n_total, buffer.shape[0])
    # The full divide-and-conquer decomposition ("evd") is faster here than
    # computing only the kept part with "evr", which is erratically slow on
    # these nearly diagonal matrices. One LAPACK thread: on a matrix this small
    # (at most 2m x 2m) threads gain nothing, and on a busy machine their
    # synchronisation made each decomposition up to 100 times slower (4 s
    # instead of 0.04 s for 598 x 598 on 2 shared cores).
    with threadpool_limits(limits=1, user_api="blas"):
        eigenvalues, eigenvectors = linalg.eigh(gram[:n_total, :n_total], driver="evd")
    eigenvalues, eigenvectors = eigenvalues[-n_keep:], eigenvectors[:, -n_keep:]
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    # Fix the sign of each eigenvector so the result does not depend on LAPACK's choice.
    signs = np.sign(eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), np.arange(n_keep)])
    eigenvectors *= signs
    projection = np.ascontiguousarray(eigenvectors.T, dtype=buffer.dtype)  # (n_keep, n_total)
    from_rows, from_piece = projection[:, :n_rows], projection[:, n_rows:]
    # U' [W; piece] in place, one block of voxels at a time: each output column
    # depends only on the same input column, so the temporaries are
    # (n_keep, block) instead of a second (n_keep, V) matrix.
    # Two scratch arrays serve every block: no allocation in the loop.
    scratch = np.empty((2, n_keep * _VOXEL_BLOCK), dtype=buffer.dtype)
    for columns in _voxel_blocks(buffer.shape[1]):
        width = columns.stop - columns.start
        reduced = _scratch_view(scratch[0], (n_keep, width))
        np.matmul(from_rows, buffer[:n_rows, columns], out=reduced)
        if piece is not None:
            added = _scratch_view(scratch[1], (n_keep, width))
            reduced += np.matmul(from_piece, piece.block(columns), out=added)
        buffer[:n_keep, columns] = reduced
    gram[:n_total, :n_total] = 0.0
    gram[np.arange(n_keep), np.arange(n_keep)] = np.clip(eigenvalues, 0.0, None)
    return n_keep
