"""Group PCA by MIGP, with a memory bound that does not grow with the number of subjects.

MIGP (MELODIC's Incremental Group-PCA; Smith et al. 2014, *NeuroImage*
101:738-749) approximates the top spatial eigenvectors of the temporal
concatenation of all subjects without ever holding that concatenation:
subjects are visited in random order, and each one's normalised rows are
stacked under a working matrix ``W`` of ``m`` rows; whenever the stack
reaches ``2 m`` rows it is reduced to its top ``m`` eigen-time-series
``U' [W; Y_1; Y_2; ...]``. Subjects may be given as arrays or as zero-argument
callables that load them, so only one subject is in memory at a time.

The dimension of the group signal can be estimated from the MIGP eigenvalues
with Minka's Laplace approximation to the PPCA evidence
(:func:`rsxai.decomposition.pca_dimension.estimate_n_components`), the criterion MELODIC
uses by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from threadpoolctl import threadpool_limits

from rsxai.decomposition._migp_subjects import (
    VOXEL_BLOCK,
    SubjectSource,
    load_subject,
    normalise_into,
    normalised_rows,
    scratch_view,
    voxel_blocks,
)
from rsxai.exceptions import InputError
from rsxai.progress import progress_bar

__all__ = ["MIGPResult", "migp"]


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
        Largest number of rows stacked and decomposed together: the ``m``
        rows of ``W`` and at most ``m - 1 + min(m, T)`` rows under it (``T``
        the volumes of the first subject). The result holds ``m`` rows.
    """

    components: np.ndarray
    eigenvalues: np.ndarray
    total_variance: float
    subject_order: np.ndarray
    n_time_points: int
    rank_bound: int
    peak_rows: int


def migp(
    subjects: Sequence[SubjectSource],
    n_components: int | None = None,
    *,
    default_cap: int | None = None,
    random_state: int | np.random.Generator | None = 0,
    dtype: type = np.float32,
    progress: bool = False,
) -> MIGPResult:
    """Top ``m`` spatial eigenvectors of the concatenated subjects, by MIGP.

    Each subject is demeaned in time and variance-normalised voxel by voxel,
    and its rows are stacked under the working matrix ``W``; whenever the
    stack reaches ``2 m`` rows, it is replaced by ``U' [W; Y_1; Y_2; ...]``,
    ``U`` the top ``m`` eigenvectors of its Gram matrix. This is Smith et
    al.'s (2014) algorithm with ``m`` MELODIC's ``--migpN``: with the default
    ``m = 2 T - 1``, two subjects are stacked under ``W`` per reduction. A
    subject of more volumes than ``min(m, T)`` (``T`` the volumes of the
    first subject) is stacked in pieces of that many rows.

    Memory stays bounded whatever the number of subjects: ``W`` (``m`` rows
    of ``V`` voxels in ``dtype``: the result), the normalised rows stacked
    under it (at most ``m + min(m, T)``, freed at the end), the subject
    being read as it was given (e.g. a memory map, never copied whole), the
    Gram matrix of the stack and temporaries of about 1 MB.

    The reduction uses ``eigh`` of the small Gram matrix of the stack rather
    than an SVD: the stack is short and wide (``2m << V``), and after a
    reduction the Gram block of ``W`` is already diagonal (the eigenvalues),
    so only the products of each new piece with the rows above it and with
    itself are computed. ``U' [stack]`` is then formed in ``W``'s place, a
    block of voxels at a time. A randomised SVD would not help: half the
    rows are kept.

    Why two subjects per reduction rather than one (a stack of at most
    ``m + T`` rows): nearly all the time is matrix products, and each
    reduction rotates the ``m`` rows of ``W`` (``m^2 V`` multiply-adds),
    which two subjects then share. With ``m = 2 T - 1`` that is about 7
    instead of 9 ``T^2 V`` multiply-adds per subject, at the cost of
    ``m`` more rows of memory.

    Parameters
    ----------
    subjects : sequence of ndarray of shape (T_s, V), or of zero-argument callables
        Subjects' masked data on a common grid of ``V`` voxels. A callable is
        called once, when its subject is needed, and its array dropped after.
    n_components : int or None, default=None
        ``m``, the number of eigenvectors kept (MELODIC's ``--migpN``).
        Default ``2 T - 1`` with ``T`` the number of volumes of the first
        subject in MIGP order (MELODIC's default), capped at the rank of the data.
    default_cap : int or None, default=None
        Upper bound on the default ``m`` (the default becomes
        ``min(2 T - 1, default_cap)``); ignored when ``n_components`` is given.
        :class:`rsxai.decomposition.group_ica.GroupICA` sets it from the number of ICA components,
        so that the work per subject stops growing with ``T^2`` on long runs.
    random_state : int, numpy Generator or None, default=0
        Seeds the random order of the subjects.
    dtype : numpy float type, default=numpy.float32
        Precision of the stack, of its matrix products and of the
        eigendecompositions of its Gram matrix (which is accumulated in
        float64). float32 halves memory and time; its error in the Gram
        matrix and its eigenvectors is of the order of the float32 rounding
        of the data themselves.
    progress : bool, default=False
        Show a progress bar over subjects.

    Returns
    -------
    MIGPResult
    """
    n_subjects = len(subjects)
    if n_subjects == 0:
        raise InputError("subjects is empty; give at least one subject's (T, V) data.")
    for name, value in (
        ("migp_dim (MIGP's n_components)", n_components),
        ("default_cap", default_cap),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise InputError(f"{name} must be None or an integer >= 1; got {value!r}.")
    rng = np.random.default_rng(random_state)
    order = rng.permutation(n_subjects)

    working = None  # (m, V) working matrix W, allocated at the first reduction
    n_working = 0  # rows of W in use: 0, then m
    pending = None  # (m + piece_rows, V): normalised rows stacked under W
    n_pending = 0  # rows of `pending` in use
    gram = None  # float64 Gram matrix of the stack [W; pending rows]
    peak_rows = 0
    n_voxels = m = piece_rows = None
    total_variance = 0.0
    n_time_points = rank_bound = 0

    for index in progress_bar(order, desc="MIGP", unit="subject", enabled=progress):
        raw = load_subject(subjects, int(index), n_voxels)
        n_volumes = raw.shape[0]
        if pending is None:
            n_voxels = raw.shape[1]
            if n_components is not None:
                m = int(n_components)
            else:
                m = (
                    2 * n_volumes - 1
                    if default_cap is None
                    else min(2 * n_volumes - 1, default_cap)
                )
            m = min(m, n_voxels)
            piece_rows = min(m, n_volumes)
            # Pages of rows never written are never touched: no memory.
            pending = np.empty((m + piece_rows, n_voxels), dtype=dtype)
            gram = np.zeros((2 * m + piece_rows, 2 * m + piece_rows))
        for start in range(0, n_volumes, piece_rows):
            new = pending[n_pending : n_pending + min(piece_rows, n_volumes - start)]
            if start == 0:  # normalised while its statistics are computed
                mean, scale, n_varying = normalise_into(raw, new, f"subjects[{int(index)}]")
            else:
                normalised_rows(raw[start : start + piece_rows], mean, scale, new)
            above = pending[:0] if working is None else working[:n_working]
            _add_rows_to_gram(gram, above, pending[:n_pending], new)
            n_pending += new.shape[0]
            peak_rows = max(peak_rows, n_working + n_pending)
            # Reduced once the stack holds 2m rows (the first time: once the
            # rows under a W still empty reach m, so that W is allocated next
            # to no more rows than later stacks hold). "Reaches", not MELODIC's
            # "exceeds": with runs of exactly m volumes (T = 15 K, where
            # GroupICA's default m stops following 2T - 1) "exceeds" would
            # stack two subjects, 3m rows, where one makes 2m, for the same
            # work per row (m^2 V per reduction shared by more rows, but the
            # products with W grow with them).
            if n_pending >= m:
                if working is None:
                    working = np.empty((m, n_voxels), dtype=dtype)
                n_working = _reduce(working, n_working, pending[:n_pending], gram, m)
                n_pending = 0
        # Each normalised varying voxel has a sum of squares of exactly n_volumes.
        total_variance += float(n_volumes * n_varying)
        n_time_points += n_volumes
        rank_bound += n_volumes - 1
        del raw

    rank_bound = min(rank_bound, n_voxels)
    if n_pending:
        if working is None:
            working = np.empty((min(m, rank_bound), n_voxels), dtype=dtype)
        n_working = _reduce(working, n_working, pending[:n_pending], gram, min(m, rank_bound))
    del pending
    # W holds eigen-rows in decreasing order: keep those within the rank. A
    # view, not a copy (which would need a second (m, V) array at once).
    n_kept = min(n_working, rank_bound)
    eigenvalues = np.diag(gram)[:n_kept].copy()
    del gram
    components = working[:n_kept]
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


def _add_rows_to_gram(
    gram: np.ndarray, working: np.ndarray, pending: np.ndarray, new: np.ndarray
) -> None:
    """Fill in the Gram rows and columns of ``new`` rows stacked under ``[W; pending]``.

    Only products involving the new rows are computed, in the stack's
    precision and stored in float64: ``W new'``, ``pending new'`` and
    ``new new'`` (a symmetric product, which NumPy computes as one). The
    Gram block of the rows above is known already (diagonal for W's
    eigen-rows).

    Parameters
    ----------
    gram : ndarray of shape (n, n), float64
    working : ndarray of shape (w, V)
    pending : ndarray of shape (p, V)
    new : ndarray of shape (r, V)
    """
    n_working, n_above = working.shape[0], working.shape[0] + pending.shape[0]
    rows = slice(n_above, n_above + new.shape[0])
    for block, above in ((working, slice(0, n_working)), (pending, slice(n_working, n_above))):
        if block.shape[0]:
            cross = block @ new.T
            gram[above, rows] = cross
            gram[rows, above] = cross.T
    gram[rows, rows] = new @ new.T


def _reduce(
    working: np.ndarray, n_working: int, pending: np.ndarray, gram: np.ndarray, n_keep: int
) -> int:
    """Replace the stack ``[working[:n_working]; pending]`` by its top ``n_keep`` eigen-rows.

    ``gram`` must hold the Gram matrix of the stack. On return the first
    ``n_keep`` rows of ``working`` are ``U' [W; pending]``, ``U`` the top
    ``n_keep`` eigenvectors, and the leading ``n_keep x n_keep`` block of
    ``gram`` is the diagonal of their eigenvalues (the rest zero). Returns
    the new number of rows of ``W``.
    """
    n_rows = n_working + pending.shape[0]
    n_keep = min(n_keep, n_rows, working.shape[0])
    # In the stack's precision: float32 decomposes the Gram matrix about
    # three times faster than float64 and errs by about as much as the
    # float32 products that made it. The full divide-and-conquer
    # decomposition ("evd") is faster here than computing only the kept
    # part with "evr", which is erratically slow on these nearly diagonal
    # matrices. One LAPACK thread: on a matrix this small threads gain
    # nothing, and on a busy machine their synchronisation made each
    # decomposition up to 100 times slower (4 s instead of 0.04 s for
    # 598 x 598 on 2 shared cores).
    with threadpool_limits(limits=1, user_api="blas"):
        eigenvalues, eigenvectors = linalg.eigh(
            gram[:n_rows, :n_rows].astype(working.dtype), driver="evd"
        )
    eigenvalues, eigenvectors = eigenvalues[-n_keep:], eigenvectors[:, -n_keep:]
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    # Fix the sign of each eigenvector so the result does not depend on LAPACK's choice.
    signs = np.sign(eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), np.arange(n_keep)])
    eigenvectors *= signs
    projection = np.ascontiguousarray(eigenvectors.T, dtype=working.dtype)  # (n_keep, n_rows)
    from_working, from_pending = projection[:, :n_working], projection[:, n_working:]
    # U' [W; pending] into W in place, one block of voxels at a time: each
    # output column depends only on the same input column, so the
    # temporaries are (n_keep, block) instead of a second (n_keep, V) matrix.
    scratch = np.empty((2, n_keep * VOXEL_BLOCK), dtype=working.dtype)
    for columns in voxel_blocks(working.shape[1]):
        width = columns.stop - columns.start
        reduced = scratch_view(scratch[0], (n_keep, width))
        np.matmul(from_pending, pending[:, columns], out=reduced)
        if n_working:
            added = scratch_view(scratch[1], (n_keep, width))
            reduced += np.matmul(from_working, working[:n_working, columns], out=added)
        working[:n_keep, columns] = reduced
    gram[:n_rows, :n_rows] = 0.0
    gram[np.arange(n_keep), np.arange(n_keep)] = np.clip(eigenvalues, 0.0, None)
    return n_keep
