"""Spatial group ICA: MIGP group PCA, then FastICA with ICASSO-style restarts.

The MELODIC recipe (Beckmann & Smith 2004; Smith et al. 2014) on masked
arrays: subjects' data are reduced to a group PCA space by MIGP
(:mod:`rsxai.decomposition.group_pca`), the top ``K`` spatial eigenvectors are whitened and
unmixed by FastICA with voxels as samples (spatial ICA), FastICA is restarted
from several random starts and the most typical run is kept, with an
ICASSO stability index per component (:mod:`rsxai.decomposition.icasso`). Maps are
sign-fixed to positive skew and z-scored across voxels, never thresholded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from rsxai.decomposition._migp_subjects import SubjectSource
from rsxai.decomposition.group_pca import migp
from rsxai.decomposition.icasso import FASTICA_FUNS, fastica_restarts, icasso_stability, whiten
from rsxai.decomposition.pca_dimension import estimate_n_components
from rsxai.decomposition.regression import spatial_regression
from rsxai.exceptions import ICAConvergenceWarning, InputError

__all__ = ["GroupICA"]

_FUNS = FASTICA_FUNS
# MIGP eigenvalues below this fraction of the largest are numerical zeros
# (the working matrix is float32).
_RELATIVE_EIGENVALUE_FLOOR = 1e-5
# Default MIGP dimension per ICA component: m = min(2 T - 1, 15 K), because
# MELODIC's 2 T - 1 costs work growing with T^2 and memory with T. Against the
# exact concatenation PCA of a hard synthetic cohort (flat spectrum, 1,900
# true dimensions; benchmarks/migp_dimension.py), m = 15 K = 300 kept the
# top-K space within 1.2 degrees at T = 300 and 600 (MELODIC's m: 0.3 and
# 0.1 degrees at 2 and 4 times the time), closer than MELODIC's own default
# at T = 150 (1.6 degrees); 10 K gave 2-5 and 5 K 10-22 degrees.
MIGP_DIM_PER_COMPONENT = 15


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


class GroupICA(BaseEstimator):
    """Spatial group ICA of several subjects' masked data (MELODIC-style, memory bounded).

    ``fit`` reduces all subjects to a group PCA space by MIGP (Smith et al.
    2014), whitens the top ``n_components`` spatial eigenvectors and unmixes
    them with symmetric FastICA, voxels being the samples (spatial ICA;
    :func:`rsxai.decomposition.icasso.symmetric_fastica`, scikit-learn's iteration
    in float32). FastICA is run ``n_restarts`` times from different random starts;
    the estimates of all runs are clustered by absolute spatial correlation
    (ICASSO, Himberg et al. 2004) and the run closest to the cluster
    centrotypes is kept. Components are sign-fixed to positive skew,
    z-scored across voxels and ordered by the variance they explain in the
    group PCA space.

    Parameters
    ----------
    n_components : int or "auto", default=20
        Number of ICA components ``K``. ``"auto"`` estimates it from the MIGP
        eigenvalues: the first peak of Minka's Laplace approximation to the
        PPCA evidence (MELODIC's default criterion), voxels counting as
        independent samples, which leans high on smooth data; see
        :func:`rsxai.decomposition.pca_dimension.estimate_n_components`.
    migp_dim : int or None, default=None
        Rows ``m`` kept by MIGP (MELODIC's ``--migpN``). Default
        ``min(2 T - 1, 15 K)`` (``T`` the volumes of the first subject, ``K``
        an integer ``n_components``; MELODIC's ``2 T - 1`` with ``"auto"``),
        capped by the rank of the data: ``2 T - 1`` grows MIGP's work with
        ``T^2`` for a small gain in the top ``K`` components (see
        ``MIGP_DIM_PER_COMPONENT``). Give ``2 T - 1`` for MELODIC's value.
        MIGP holds at most ``2 m + T`` rows of ``V`` voxels (float32) and one
        subject in memory, and keeps ``m`` rows.
    n_restarts : int, default=10
        FastICA runs from different random starts. With 1, no stability can
        be measured and ``stability_`` is all NaN.
    fun : {"cube", "logcosh", "exp"}, default="cube"
        FastICA contrast; ``"cube"`` is MELODIC's ``pow3``.
    max_iter : int, default=500
        FastICA iterations per run (MELODIC's default; scikit-learn's is 200).
        Components that are noise never converge (a Gaussian-like direction
        has no optimum), so with ``n_components`` above the number of real
        networks every restart runs to ``max_iter``; the stable components
        are found in far fewer iterations and do not change with more.
    tol : float, default=1e-4
        FastICA convergence tolerance.
    random_state : int, numpy Generator or None, default=0
        Seeds the subject order of MIGP and then the seed of every restart;
        all seeds are drawn before any parallel work, so results do not
        depend on ``n_jobs``.
    n_jobs : int or None, default=1
        Parallel FastICA restarts (joblib semantics; -1 uses all cores).
        MIGP's matrix products use the BLAS threads of the environment (see
        Notes).
    progress : bool, default=False
        Show a progress bar over subjects during MIGP.

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, V), float32
        Spatial maps: positive skew, zero mean and unit standard deviation
        across voxels, ordered by ``mixing_`` column norm (largest first).
    mixing_ : ndarray of shape (n_components_, n_components_)
        How the components make up the group PCA space:
        ``demeaned migp_components_[:K] = mixing_ @ components_``, the MIGP
        rows being demeaned across voxels.
    explained_variance_ratio_ : ndarray of shape (n_components_,)
        Fraction of the total variance of the concatenated, normalised data
        carried by each component, in component order (decreasing):
        ``V * sum(mixing_[:, k] ** 2) / total``, the components being
        orthogonal with squared norm ``V``. The values add up to the fraction
        carried by the top ``K`` group PCA components (less the spatial mean
        of their maps); the PCA fractions themselves are
        ``migp_eigenvalues_[:K] / total``.
    stability_ : ndarray of shape (n_components_,)
        ICASSO quality index ``Iq`` of each component's cluster (1 = found
        identically by every restart and unlike all else; near 0 or below =
        not reproducible). All NaN when ``n_restarts == 1``.
    n_components_ : int
        Number of components actually estimated.
    n_voxels_ : int
        Number of voxels ``V`` of the data seen in ``fit``.
    migp_components_ : ndarray of shape (m, V), float32
        MIGP output: spatial eigenvectors scaled by the square root of their
        eigenvalues, largest first.
    migp_eigenvalues_ : ndarray of shape (m,)
        The corresponding eigenvalues (sums of squares).
    migp_peak_rows_ : int
        Largest number of rows MIGP stacked and decomposed at once (at most
        ``2 m + T``; see :class:`rsxai.decomposition.group_pca.MIGPResult`).
    subject_order_ : ndarray of shape (n_subjects,), int
        Order in which subjects were fed to MIGP.
    icasso_ : rsxai.decomposition.icasso.StabilityResult or None
        The full clustering of the restarts (None when ``n_restarts == 1``).
    n_iter_ : ndarray of shape (n_restarts,), int
        FastICA iterations of each restart.

    Notes
    -----
    A scikit-learn estimator (``get_params``, ``set_params``,
    ``sklearn.base.clone``; parameters are checked in ``fit``), but not a
    transformer: ``fit`` takes many subjects, ``transform`` one. FastICA
    restarts that do not converge are reported with
    :class:`rsxai.exceptions.ICAConvergenceWarning`; ``transform`` before
    ``fit`` raises scikit-learn's ``NotFittedError``.
    Subjects are expected already preprocessed and masked on a common grid;
    MIGP still demeans and variance-normalises each voxel of each subject,
    as MELODIC does.

    Nearly all of the time of ``fit`` is MIGP's matrix products, which run
    on as many BLAS threads as the environment allows (numpy's default: all
    cores). On a machine shared with other work, threads that wait for each
    other can make them several times slower than one thread; limit them
    with ``threadpoolctl.threadpool_limits(1)`` or ``OMP_NUM_THREADS=1``.
    """

    def __init__(
        self,
        n_components: int | str = 20,
        *,
        migp_dim: int | None = None,
        n_restarts: int = 10,
        fun: str = "cube",
        max_iter: int = 500,
        tol: float = 1e-4,
        random_state: int | np.random.Generator | None = 0,
        n_jobs: int | None = 1,
        progress: bool = False,
    ):
        self.n_components = n_components
        self.migp_dim = migp_dim
        self.n_restarts = n_restarts
        self.fun = fun
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress

    def _validate_params(self) -> None:
        problems = []
        if not (self.n_components == "auto" or _is_int(self.n_components)) or (
            _is_int(self.n_components) and self.n_components < 1
        ):
            problems.append(
                "n_components must be an integer >= 1 or 'auto'; "
                f"got {self.n_components!r} ({type(self.n_components).__name__})."
            )
        if self.migp_dim is not None and not (_is_int(self.migp_dim) and self.migp_dim >= 1):
            problems.append(f"migp_dim must be None or an integer >= 1; got {self.migp_dim!r}.")
        elif (
            self.migp_dim is not None
            and _is_int(self.n_components)
            and self.n_components > self.migp_dim
        ):
            problems.append(
                f"n_components must be between 1 and migp_dim={self.migp_dim}; "
                f"got {self.n_components}. Raise migp_dim or lower n_components."
            )
        for name, minimum in (("n_restarts", 1), ("max_iter", 1)):
            value = getattr(self, name)
            if not (_is_int(value) and value >= minimum):
                problems.append(f"{name} must be an integer >= {minimum}; got {value!r}.")
        if self.fun not in _FUNS:
            problems.append(f"fun must be one of {', '.join(map(repr, _FUNS))}; got {self.fun!r}.")
        if not (isinstance(self.tol, Real) and self.tol > 0):
            problems.append(f"tol must be a number > 0; got {self.tol!r}.")
        if self.n_jobs is not None and not (_is_int(self.n_jobs) and self.n_jobs != 0):
            problems.append(f"n_jobs must be None or a non-zero integer; got {self.n_jobs!r}.")
        if not (
            self.random_state is None
            or _is_int(self.random_state)
            or isinstance(self.random_state, np.random.Generator)
        ):
            problems.append(
                "random_state must be None, an integer or a numpy Generator; "
                f"got {self.random_state!r}."
            )
        if problems:
            raise InputError(problems)

    def fit(self, subjects: Sequence[SubjectSource]) -> GroupICA:
        """Learn group ICA components from several subjects.

        Parameters
        ----------
        subjects : sequence of ndarray of shape (T_s, V), or of zero-argument callables
            Each subject's masked data (volumes x voxels, same ``V`` for all),
            or a callable returning it; callables are called one at a time,
            so only one subject is held in memory.

        Returns
        -------
        self
        """
        self._validate_params()
        if isinstance(subjects, np.ndarray) and subjects.ndim == 2:
            raise InputError(
                "subjects must be a sequence of (T, V) arrays, one per subject; got a single "
                f"2D array of shape {subjects.shape}. Wrap it in a list: fit([data])."
            )
        if not (hasattr(subjects, "__len__") and hasattr(subjects, "__getitem__")):
            raise InputError(
                "subjects must be a sequence (list or tuple) of arrays or callables; "
                f"got {type(subjects).__name__}."
            )
        rng = np.random.default_rng(self.random_state)
        group_pca = migp(
            subjects,
            self.migp_dim,
            default_cap=MIGP_DIM_PER_COMPONENT * self.n_components
            if _is_int(self.n_components)
            else None,
            random_state=rng,
            progress=self.progress,
        )
        eigenvalues = group_pca.eigenvalues
        n_voxels = group_pca.components.shape[1]
        n_nonzero = int(np.sum(eigenvalues > _RELATIVE_EIGENVALUE_FLOOR * eigenvalues[0]))
        # The maps are demeaned across voxels before whitening: one more dimension lost.
        n_max = min(n_nonzero, n_voxels - 1)
        if self.n_components == "auto":
            if n_max < 2:
                raise InputError(
                    f"n_components='auto' needs at least 2 non-zero group PCA eigenvalues; "
                    f"the data have {n_nonzero}. Give more volumes or subjects."
                )
            n_components = min(estimate_n_components(eigenvalues[:n_nonzero], n_voxels), n_max)
        else:
            n_components = int(self.n_components)
            if n_components > n_max:
                raise InputError(
                    f"n_components must be between 1 and {n_max} for these data; got "
                    f"{n_components}. The limit is the smallest of: group PCA dimensions kept "
                    f"by MIGP ({eigenvalues.size}; raise migp_dim), volumes after temporal "
                    f"demeaning ({group_pca.rank_bound} = {group_pca.n_time_points} volumes "
                    f"minus one per subject), voxels - 1 ({n_voxels - 1}) and non-zero "
                    f"eigenvalues ({n_nonzero})."
                )

        # Spatial ICA: voxels are the samples, the K eigenvectors the features.
        pca_maps = group_pca.components[:n_components].astype(np.float64)
        pca_maps -= pca_maps.mean(axis=1, keepdims=True)
        # FastICA's products run in float32 (see symmetric_fastica): half the
        # memory traffic of the (K, V) products that are its whole cost.
        signals = whiten(pca_maps).astype(np.float32)
        seeds = rng.integers(0, 2**31 - 1, size=self.n_restarts)
        unmixings, self.n_iter_, converged = fastica_restarts(
            signals, seeds, fun=self.fun, max_iter=self.max_iter, tol=self.tol, n_jobs=self.n_jobs
        )
        n_failed = int(np.sum(~converged))
        if n_failed:
            warnings.warn(
                f"FastICA did not converge in {n_failed} of {self.n_restarts} restarts "
                f"(max_iter={self.max_iter}, tol={self.tol}). This is expected when some of "
                f"the n_components={n_components} components are noise: a Gaussian-like "
                "direction has no independent component to converge to, and keeps turning. "
                "Such components are not reproducible across restarts; look at their ICASSO "
                "stability (stability_, the 'stability' column of the components table) "
                "before interpreting them. Raising max_iter costs time and rarely changes the "
                "stable components.",
                ICAConvergenceWarning,
                stacklevel=2,
            )

        if self.n_restarts > 1:
            # Sources are whitened @ W', so their correlations are W_r W_s': no need
            # to compare (K, V) maps.
            self.icasso_ = icasso_stability(unmixings)
            best_run, stability = self.icasso_.best_run, self.icasso_.stability
        else:
            self.icasso_ = None
            best_run, stability = 0, np.full(n_components, np.nan)

        sources = unmixings[best_run] @ signals  # (K, V), float64
        del signals
        for row in sources:  # z-scored and sign-fixed one map at a time: no (K, V) temporaries
            row -= row.mean()
            row /= np.sqrt(np.dot(row, row) / n_voxels)
            # Skewness of a z-scored map is its mean cube (scipy.stats.skew, bias=True).
            if np.dot(row * row, row) < 0:
                row *= -1.0
        mixing = pca_maps @ sources.T / n_voxels
        del pca_maps
        order = np.argsort(-np.sum(mixing**2, axis=0), kind="stable")

        self.components_ = np.empty(sources.shape, dtype=np.float32)
        for target, index in zip(self.components_, order, strict=True):
            target[:] = sources[index]
        del sources
        self.mixing_ = mixing[:, order]
        self.stability_ = np.asarray(stability, dtype=np.float64)[order]
        # Components are orthogonal with squared norm V, so component k carries
        # V |mixing[:, k]|^2 of the group PCA space's sum of squares.
        self.explained_variance_ratio_ = (
            n_voxels * np.sum(self.mixing_**2, axis=0) / group_pca.total_variance
        )
        self.n_components_ = n_components
        self.n_voxels_ = n_voxels
        self.migp_components_ = group_pca.components
        self.migp_eigenvalues_ = eigenvalues
        self.migp_peak_rows_ = group_pca.peak_rows
        self.subject_order_ = group_pca.subject_order
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Time courses of the components in one subject's data (dual regression stage 1).

        Spatial least squares of each volume on the components, both demeaned
        across voxels, as ``fsl_glm --demean`` in FSL's dual regression; see
        :func:`rsxai.decomposition.regression.spatial_regression`.

        Parameters
        ----------
        X : ndarray of shape (T, V)
            One subject's masked data on the grid used in ``fit``.

        Returns
        -------
        ndarray of shape (T, n_components_), float32
        """
        check_is_fitted(
            self,
            "components_",
            msg="This %(name)s instance is not fitted yet; call fit(subjects) before transform.",
        )
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_voxels_:
            raise InputError(
                f"X must have shape (n_volumes, {self.n_voxels_}) like the data seen in fit; "
                f"got shape {X.shape}."
            )
        return spatial_regression(self.components_, X).astype(np.float32)
