"""ICASSO-style stability of ICA components across restarts (Himberg et al. 2004).

FastICA converges to different local optima from different random starts.
ICASSO (Himberg, Hyvärinen & Esposito 2004, *NeuroImage* 22:1214-1222) runs it
several times, clusters all estimated components by the absolute correlation
between them, and scores each cluster by how tight and how isolated it is:
a component that every restart finds again forms a tight cluster far from the
others; a component that is an artefact of one start does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from rsxai.exceptions import InputError

__all__ = ["StabilityResult", "icasso_stability"]


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
    cheaper form :class:`~rsxai.ica.GroupICA` uses). They are clustered by
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
