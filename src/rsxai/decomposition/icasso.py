"""FastICA from several random starts, and the stability of what they find.

FastICA converges to different local optima from different random starts.
ICASSO (Himberg, Hyvärinen & Esposito 2004, *NeuroImage* 22:1214-1222) runs it
several times, clusters all estimated components by the absolute correlation
between them, and scores each cluster by how tight and how isolated it is:
a component that every restart finds again forms a tight cluster far from the
others; a component that is an artefact of one start does not.

:func:`whiten` prepares the group PCA maps, :func:`fastica_restarts` runs
symmetric FastICA (Hyvärinen 1999) on them from several seeds,
:func:`icasso_stability` clusters the estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from scipy import linalg
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from threadpoolctl import threadpool_limits

from rsxai.exceptions import InputError

__all__ = [
    "StabilityResult",
    "fastica_restarts",
    "icasso_stability",
    "symmetric_fastica",
    "whiten",
]

FASTICA_FUNS = ("cube", "logcosh", "exp")
# Samples (voxels) per block of a FastICA iteration.
_SAMPLE_BLOCK = 2048


# Each non-linearity works in place on a (K, block) array of projections
# u = W x and returns g(u) and, per row, the sum of g'(u) over the block (None
# for the cube, whose mean g'(u) = 3 mean(u^2) comes exactly from the K x K
# covariance of the signals; see _fastica_iterations).


def whiten(pca_maps: np.ndarray) -> np.ndarray:
    """Rows of unit variance, uncorrelated, spanning the rows of ``pca_maps``.

    ``sqrt(V) * U'`` for the SVD ``pca_maps' = U S E'`` (left singular vectors
    as rows), computed as ``S^-1 E' pca_maps`` from the eigendecomposition of
    the small Gram matrix ``pca_maps pca_maps' = E S^2 E'`` rather than by an
    SVD of the (V, K) matrix, whose workspace would be several (V, K) arrays.
    The rows are the group PCA maps (MIGP rows are orthogonal already, so the
    Gram matrix is well conditioned), each row's sign set so that its largest
    absolute value is positive.

    Parameters
    ----------
    pca_maps : ndarray of shape (K, V), float64
        Rows demeaned across voxels, linearly independent.

    Returns
    -------
    ndarray of shape (K, V), float64
    """
    n_voxels = pca_maps.shape[1]
    eigenvalues, eigenvectors = linalg.eigh(pca_maps @ pca_maps.T)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    whitened = (eigenvectors / np.sqrt(eigenvalues / n_voxels)).T @ pca_maps
    largest = np.argmax(np.abs(whitened), axis=1)
    whitened *= np.sign(whitened[np.arange(whitened.shape[0]), largest])[:, None]
    return whitened


def _cube(projections: np.ndarray) -> tuple[np.ndarray, None]:
    # g(u) = u^3, g'(u) = 3 u^2; MELODIC's pow3. u * u * u rather than u ** 3,
    # which numpy evaluates with the generic pow (10-30x slower).
    projections *= projections * projections
    return projections, None


def _logcosh(projections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # g(u) = tanh(u), g'(u) = 1 - tanh(u)^2 (scikit-learn's default, alpha = 1).
    g = np.tanh(projections, out=projections)
    return g, g.shape[1] - np.sum(g * g, axis=1, dtype=np.float64)


def _exp(projections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # g(u) = u exp(-u^2 / 2), g'(u) = (1 - u^2) exp(-u^2 / 2).
    squares = projections * projections
    gauss = np.exp(-0.5 * squares)
    g_prime_sum = np.sum((1.0 - squares) * gauss, axis=1, dtype=np.float64)
    projections *= gauss
    return projections, g_prime_sum


_NONLINEARITIES = {"cube": _cube, "logcosh": _logcosh, "exp": _exp}


def _symmetric_decorrelation(unmixing: np.ndarray) -> np.ndarray:
    """``(W W')^(-1/2) W``: the orthogonal matrix nearest to ``W`` (rows decorrelated)."""
    eigenvalues, eigenvectors = linalg.eigh(unmixing @ unmixing.T)
    eigenvalues = np.clip(eigenvalues, np.finfo(np.float64).tiny, None)
    return (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T @ unmixing


def symmetric_fastica(
    signals: np.ndarray,
    w_init: np.ndarray,
    *,
    fun: str = "cube",
    max_iter: int = 500,
    tol: float = 1e-4,
) -> tuple[np.ndarray, int, bool]:
    """Symmetric (parallel) FastICA on whitened signals (Hyvärinen 1999).

    The fixed-point iteration of scikit-learn's ``FastICA(algorithm="parallel",
    whiten=False)``, with the same convergence test (every row of the
    unmixing matrix changes direction by less than ``tol``), written out
    because scikit-learn's spends most of its time outside the two
    products that are the real work: its cube is ``u ** 3`` (numpy's generic
    power, 30 times slower than two multiplications) and it works in
    float64 only. Here the two ``(K, V)`` products run in the precision of
    ``signals`` (float32 in :class:`~rsxai.decomposition.group_ica.GroupICA`: their relative
    error, about 1e-6, is far below ``tol``), the means of the non-linearity
    and the ``K x K`` unmixing matrix in float64; the products and the
    non-linearity are done a block of samples at a time, so that the
    projections stay in cache. On a 20 x 26,600 problem one iteration takes
    about 0.8 ms (one core) instead of 35 ms.

    Parameters
    ----------
    signals : ndarray of shape (K, V)
        Whitened signals (rows uncorrelated with unit variance), samples
        along the second axis; for spatial ICA the ``V`` voxels.
    w_init : ndarray of shape (K, K)
        Starting unmixing matrix (orthogonalised before the first step).
    fun : {"cube", "logcosh", "exp"}, default="cube"
        Contrast function.
    max_iter : int, default=500
        Maximum number of iterations.
    tol : float, default=1e-4
        Convergence tolerance on ``max |1 - |<w_new, w_old>|||`` over rows.

    Returns
    -------
    unmixing : ndarray of shape (K, K), float64
        Orthogonal; the sources are ``unmixing @ signals``.
    n_iter : int
        Iterations run.
    converged : bool
        Whether the tolerance was reached within ``max_iter``.
    """
    return _fastica_iterations(_Whitened.of(signals), w_init, fun, max_iter, tol)


@dataclass(frozen=True)
class _Whitened:
    """Whitened signals with what every FastICA iteration on them reuses.

    ``samples`` is a C-contiguous copy of ``signals.T``: the product
    ``g @ samples`` runs about a third faster than ``g @ signals.T`` on the
    transposed view (measured for K = 20, V = 26,600, float32), for 1/K more
    memory. ``covariance`` (float64) gives ``mean(u^2)`` of the projections
    ``u = W signals`` exactly as ``diag(W C W')``.
    """

    signals: np.ndarray  # (K, V)
    samples: np.ndarray  # (V, K), C-contiguous
    covariance: np.ndarray  # (K, K), float64: signals @ signals.T / V

    @classmethod
    def of(cls, signals: np.ndarray) -> _Whitened:
        n_components, n_samples = signals.shape
        covariance = np.zeros((n_components, n_components))
        for start in range(0, n_samples, 4096):  # float64 temporaries of (K, 4096)
            block = signals[:, start : start + 4096].astype(np.float64)
            covariance += block @ block.T
        return cls(signals, np.ascontiguousarray(signals.T), covariance / n_samples)


def _fastica_iterations(
    whitened: _Whitened, w_init: np.ndarray, fun: str, max_iter: int, tol: float
) -> tuple[np.ndarray, int, bool]:
    """The fixed-point iteration of :func:`symmetric_fastica` on prepared signals."""
    nonlinearity = _NONLINEARITIES[fun]
    signals, samples, covariance = whitened.signals, whitened.samples, whitened.covariance
    n_components, n_samples = signals.shape
    # The two products and the non-linearity run a block of samples at a time,
    # so that the (K, block) projections stay in cache between them: about 20 %
    # faster than whole (K, V) products (K = 20, V = 26,600, float32).
    scratch = np.empty(n_components * _SAMPLE_BLOCK, dtype=signals.dtype)
    unmixing = _symmetric_decorrelation(np.asarray(w_init, dtype=np.float64))
    for n_iter in range(1, max_iter + 1):
        weights = unmixing.astype(signals.dtype)
        update = np.zeros((n_components, n_components))
        g_prime_sum = np.zeros(n_components)
        for start in range(0, n_samples, _SAMPLE_BLOCK):
            columns = slice(start, min(start + _SAMPLE_BLOCK, n_samples))
            width = columns.stop - columns.start
            projections = scratch[: n_components * width].reshape(n_components, width)
            np.matmul(weights, signals[:, columns], out=projections)
            g, g_prime_block = nonlinearity(projections)
            update += g @ samples[columns]
            if g_prime_block is not None:
                g_prime_sum += g_prime_block
        if fun == "cube":
            g_prime_mean = 3.0 * np.einsum("ij,jk,ik->i", unmixing, covariance, unmixing)
        else:
            g_prime_mean = g_prime_sum / n_samples
        update /= n_samples
        update -= g_prime_mean[:, None] * unmixing
        new = _symmetric_decorrelation(update)
        change = np.max(np.abs(np.abs(np.einsum("ij,ij->i", new, unmixing)) - 1.0))
        unmixing = new
        if change < tol:
            return unmixing, n_iter, True
    return unmixing, max_iter, False


def _one_restart(
    whitened: _Whitened, seed: int, fun: str, max_iter: int, tol: float, max_attempts: int = 5
) -> tuple[np.ndarray, int, bool]:
    """One FastICA run from ``seed``; returns (unmixing (K, K), n_iter, converged).

    The cube non-linearity can, from an unlucky start, drive the symmetric
    decorrelation to infinity; such a start is replaced by the next seed of a
    sequence derived from ``seed``, so the result stays deterministic.
    """
    n_components = whitened.signals.shape[0]
    attempt_seeds = np.random.SeedSequence(seed).generate_state(max_attempts)
    for attempt_seed in [seed, *attempt_seeds[1:].tolist()]:
        w_init = np.random.default_rng(attempt_seed).standard_normal((n_components, n_components))
        with np.errstate(all="ignore"):
            unmixing, n_iter, converged = _fastica_iterations(whitened, w_init, fun, max_iter, tol)
        if np.all(np.isfinite(unmixing)):
            return unmixing, n_iter, converged
    raise RuntimeError(
        f"FastICA diverged from {max_attempts} starts (fun={fun!r}); try fun='logcosh' or a "
        "smaller n_components."
    )


def fastica_restarts(
    signals: np.ndarray,
    seeds: Sequence[int],
    *,
    fun: str = "cube",
    max_iter: int = 500,
    tol: float = 1e-4,
    n_jobs: int | None = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric FastICA from each seed, in parallel; results do not depend on ``n_jobs``.

    Parameters
    ----------
    signals : ndarray of shape (K, V)
        Whitened signals, see :func:`symmetric_fastica`.
    seeds : sequence of int
        One seed per run; it seeds the standard normal starting matrix.
    fun, max_iter, tol
        See :func:`symmetric_fastica`.
    n_jobs : int or None, default=1
        Runs in parallel (joblib semantics), in threads of this process: they
        share one read-only copy of ``signals`` (processes would each hold,
        and import, their own), and numpy releases the GIL in the products
        and element-wise operations that are all of the work.

    Returns
    -------
    unmixings : ndarray of shape (n_runs, K, K)
        Orthogonal unmixing matrix of each run.
    n_iter : ndarray of shape (n_runs,), int
    converged : ndarray of shape (n_runs,), bool

    Notes
    -----
    BLAS is limited to one thread during the runs, so that a run gives
    bit-identical results whatever ``n_jobs`` (thread count changes the order
    of floating-point sums); the products are small (K x V) anyway. The limit
    is set once around all runs: threadpoolctl's limits are process-wide, so
    threads setting and restoring them in turn would race.
    """
    whitened = _Whitened.of(signals)
    with threadpool_limits(limits=1, user_api="blas"):
        runs = Parallel(n_jobs=n_jobs, require="sharedmem")(
            delayed(_one_restart)(whitened, int(seed), fun, max_iter, tol) for seed in seeds
        )
    return (
        np.stack([run[0] for run in runs]),
        np.array([run[1] for run in runs]),
        np.array([run[2] for run in runs]),
    )


@dataclass(frozen=True)
class StabilityResult:
    """Output of :func:`icasso_stability`.

    Attributes
    ----------
    labels : ndarray of shape (n_runs, n_components), int
        Cluster of each estimate, ``0 .. n_clusters - 1``.
    quality_index : ndarray of shape (n_clusters,)
        ``Iq`` of each cluster: mean ``|r|`` between distinct members minus
        mean ``|r|`` between its members and all estimates outside it.
    centrotypes : ndarray of shape (n_clusters, 2), int
        ``(run, component)`` of each cluster's centrotype, the member with the
        highest summed ``|r|`` to the other members.
    best_run : int
        The run whose components lie closest to their clusters' centrotypes
        (highest summed ``|r|`` between each component and its cluster's centrotype).
    stability : ndarray of shape (n_components,)
        ``Iq`` of the cluster of each component of ``best_run``.
    """

    labels: np.ndarray
    quality_index: np.ndarray
    centrotypes: np.ndarray
    best_run: int
    stability: np.ndarray


def icasso_stability(estimates: np.ndarray, n_clusters: int | None = None) -> StabilityResult:
    """Cluster ICA estimates from several runs and score each cluster's stability.

    All ``n_runs x n_components`` estimates are compared by the absolute
    cosine similarity of their rows, which is the absolute correlation of
    the estimated sources when the rows are zero-mean sources, or rows of
    orthogonal unmixing matrices acting on the same whitened data (the
    cheaper form :class:`~rsxai.decomposition.group_ica.GroupICA` uses). They are clustered by
    agglomerative clustering with average linkage on ``1 - |r|`` into
    ``n_clusters`` clusters (ICASSO's defaults), and each cluster gets the
    quality index ``Iq = mean intra-cluster |r| - mean extra-cluster |r|``.

    A cluster with a single member has no intra-cluster pair; ICASSO leaves
    its ``Iq`` undefined, here its intra-cluster similarity counts as 0 (no
    other run reproduced it), so its ``Iq`` is at most 0.

    Parameters
    ----------
    estimates : ndarray of shape (n_runs, n_components, n_features)
        Run ``r``'s estimated components as rows ``estimates[r]``; ``n_runs >= 2``.
    n_clusters : int or None, default=None
        Number of clusters; default ``n_components``.

    Returns
    -------
    StabilityResult
    """
    estimates = np.asarray(estimates, dtype=np.float64)
    if estimates.ndim != 3 or estimates.shape[0] < 2:
        raise InputError(
            "estimates must have shape (n_runs, n_components, n_features) with n_runs >= 2; "
            f"got shape {estimates.shape}."
        )
    n_runs, n_components, _ = estimates.shape
    n_clusters = n_components if n_clusters is None else int(n_clusters)
    n_estimates = n_runs * n_components
    if not 1 <= n_clusters <= n_estimates:
        raise InputError(
            f"n_clusters must be between 1 and {n_estimates} (all estimates); got {n_clusters}."
        )

    rows = estimates.reshape(n_estimates, -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputError("estimates contains an all-zero component; it has no direction.")
    rows = rows / norms
    similarity = np.clip(np.abs(rows @ rows.T), 0.0, 1.0)
    np.fill_diagonal(similarity, 1.0)

    tree = linkage(squareform(1.0 - similarity, checks=False), method="average")
    labels = fcluster(tree, t=n_clusters, criterion="maxclust") - 1
    # maxclust may merge exact ties into fewer clusters; count what was made.
    n_made = int(labels.max()) + 1

    quality = np.empty(n_made)
    centrotype = np.empty(n_made, dtype=int)
    for cluster in range(n_made):
        inside = labels == cluster
        block = similarity[np.ix_(inside, inside)]
        size = int(inside.sum())
        intra = (block.sum() - size) / (size * (size - 1)) if size > 1 else 0.0
        extra = similarity[np.ix_(inside, ~inside)].mean() if size < n_estimates else 0.0
        quality[cluster] = intra - extra
        centrotype[cluster] = np.flatnonzero(inside)[np.argmax(block.sum(axis=1))]

    closeness = similarity[np.arange(n_estimates), centrotype[labels]]
    best_run = int(np.argmax(closeness.reshape(n_runs, n_components).sum(axis=1)))
    labels = labels.reshape(n_runs, n_components)
    return StabilityResult(
        labels=labels,
        quality_index=quality,
        centrotypes=np.column_stack(np.divmod(centrotype, n_components)),
        best_run=best_run,
        stability=quality[labels[best_run]],
    )
