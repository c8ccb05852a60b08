"""The dimension of a PCA spectrum: Minka's Laplace approximation to the PPCA evidence.

:func:`laplace_log_evidence` gives the log evidence of every rank for a set
of eigenvalues; :func:`estimate_n_components` takes its first peak, as
MELODIC does, to choose the number of group ICA components from the MIGP
eigenvalues (:mod:`rsxai.decomposition.group_pca`). They are apart from it
because they work on any spectrum, not on the subjects' data.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from rsxai.exceptions import InputError

__all__ = ["estimate_n_components", "laplace_log_evidence"]


def laplace_log_evidence(eigenvalues: np.ndarray, n_samples: int) -> np.ndarray:
    """Minka's Laplace approximation to the PPCA log evidence of every rank.

    Minka (2000), "Automatic choice of dimensionality for PCA", NIPS 13,
    eq. (30)-(31): the criterion of scikit-learn's ``PCA(n_components="mle")``
    (whose ``argmax`` over ranks this reproduces) and of MELODIC's ``--dim``
    estimate, written out and vectorised here because scikit-learn exposes it
    only through a data matrix and a private helper. The evidence does not
    depend on the scale of the eigenvalues.

    Parameters
    ----------
    eigenvalues : ndarray of shape (d,)
        Eigenvalues of the sample covariance (or any multiple of it), any order.
    n_samples : int
        Number of independent samples behind the covariance.

    Returns
    -------
    ndarray of shape (d,)
        Element ``k`` is the log evidence of rank ``k`` (``1 <= k <= d - 1``);
        element 0 is ``-inf``, as are ranks whose eigenvalues are zero or tied.
    """
    spectrum = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    n_features = spectrum.size
    if n_features < 2:
        raise InputError(
            f"eigenvalues has {n_features} value(s); estimating a dimension needs at least 2."
        )
    eps = 1e-15
    log_spectrum = np.log(np.maximum(spectrum, eps))
    tail_sums = np.cumsum(spectrum[::-1])[::-1]  # tail_sums[k] = sum(spectrum[k:])
    pair_rows, pair_cols = np.triu_indices(n_features, k=1)
    log_evidence = np.full(n_features, -np.inf)
    for rank in range(1, n_features):
        if spectrum[rank - 1] < eps:
            break
        i = np.arange(1, rank + 1)
        # log p(U): volume of the Stiefel manifold.
        log_p_u = -rank * np.log(2.0) + np.sum(
            gammaln((n_features - i + 1) / 2.0) - np.log(np.pi) * (n_features - i + 1) / 2.0
        )
        noise = max(eps, tail_sums[rank] / (n_features - rank))
        log_p_l = -n_samples / 2.0 * np.sum(log_spectrum[:rank])
        log_p_v = -n_samples * (n_features - rank) / 2.0 * np.log(noise)
        n_params = n_features * rank - rank * (rank + 1.0) / 2.0
        log_p_p = np.log(2.0 * np.pi) * (n_params + rank) / 2.0
        # log |A_Z|: Hessian of the posterior, pairs (i <= rank, j > i).
        modified = spectrum.copy()
        modified[rank:] = noise
        keep = pair_rows < rank
        rows, cols = pair_rows[keep], pair_cols[keep]
        with np.errstate(divide="ignore"):
            log_a_z = np.sum(
                np.log(
                    (spectrum[rows] - spectrum[cols])
                    * (1.0 / modified[cols] - 1.0 / modified[rows])
                )
                + np.log(n_samples)
            )
        value = log_p_u + log_p_l + log_p_v + log_p_p - log_a_z / 2.0
        value -= rank * np.log(n_samples) / 2.0
        # Tied eigenvalues make log|A_Z| = -inf: no evidence for that rank.
        log_evidence[rank] = value if np.isfinite(value) else -np.inf
    return log_evidence


def estimate_n_components(eigenvalues: np.ndarray, n_samples: int) -> int:
    """Signal dimension: the first peak of the Laplace PPCA evidence over ranks.

    The first local maximum of :func:`laplace_log_evidence`, as MELODIC's
    ``ppca_select`` takes, rather than the global maximum that
    scikit-learn's ``PCA(n_components="mle")`` takes. On a truncated
    spectrum such as MIGP's (the top ``m`` of many more eigenvalues, the
    lowest of them underestimated by the incremental reduction) the evidence
    climbs again towards the last ranks, so its global maximum says nothing
    about the signal; on a full spectrum with many samples both agree.

    For spatial group ICA the samples are voxels, counted here as
    independent. Spatial smoothness makes neighbouring voxels dependent,
    which MELODIC corrects for (effective sample size from the estimated
    smoothness) and this function does not; the estimate then leans high.

    Parameters
    ----------
    eigenvalues : ndarray of shape (d,)
        Eigenvalues (any scale, any order); ``d >= 2``.
    n_samples : int
        Number of samples behind them (voxels, for spatial ICA).

    Returns
    -------
    int
        A rank between 1 and ``d - 1``.
    """
    log_evidence = laplace_log_evidence(eigenvalues, n_samples)
    for rank in range(1, log_evidence.size - 1):
        if log_evidence[rank] >= log_evidence[rank + 1]:
            return rank
    return log_evidence.size - 1
