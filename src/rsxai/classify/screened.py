"""A screened linear baseline: smoothing, univariate screening in the fold, logistic regression.

What users of nilearn's ``Decoder(smoothing_fwhm=..., screening_percentile=...)``
expect beside a whole-brain linear model. :class:`ScreenedBaseline` smooths
every map within the brain mask, ranks the voxels by a two-sample t-test on
the training subjects it is given, averages the few most different voxels in
each direction into two features and fits an L2 logistic regression on them.
A region-blind method that can still find a region: the whole-brain
baselines spread their weight over tens of thousands of voxels, most of them
noise, and lose a small local effect in it.

Its permutation test (:func:`screened_permutation_scores`) refits every fold
(the screening depends on the labels, so there is no Gram-matrix shortcut as
for :class:`rsxai.classify.baselines.LinearBaseline`), but smooths each map
once: smoothing uses no label and each map is smoothed on its own, so
smoothing the maps before the folds gives the same features as smoothing
inside every fit.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rsxai.classify.refit_permutations import refit_permutation_scores

__all__ = ["ScreenedBaseline", "screened_permutation_scores", "smooth_maps"]

#: FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2).
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# Maps smoothed at a time: bounds memory at 2 mm (one float64 box of the MNI mask is 4 MB).
_SMOOTH_BATCH = 16


def _voxel_sizes(voxel_size) -> np.ndarray:
    sizes = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise ValueError(f"voxel_size must be a positive number of mm (or 3); got {voxel_size!r}.")
    return sizes


def smooth_maps(X, mask: np.ndarray, voxel_size, fwhm: float) -> np.ndarray:
    """Gaussian smoothing of masked maps within the mask, each map on its own.

    The smoothed value of a voxel is the Gaussian-weighted mean of the mask
    voxels around it (``G * (x m) / G * m``, ``m`` the mask): voxels outside
    the brain count as missing, not as zeros, so the edge of the mask is not
    pulled towards 0.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_voxels)
        Columns in the order of ``mask``'s True voxels (C order).
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size : float or sequence of 3 float
        Voxel edges in mm.
    fwhm : float
        Full width at half maximum of the kernel, in mm; 0 returns a copy.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_voxels)
    """
    X = np.asarray(X, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if X.ndim != 2 or X.shape[1] != np.count_nonzero(mask):
        raise ValueError(
            f"X must have shape (n_samples, {np.count_nonzero(mask)}), one column per mask "
            f"voxel; got shape {X.shape}."
        )
    if fwhm == 0:
        return X.copy()
    sigma = fwhm / _FWHM_PER_SIGMA / _voxel_sizes(voxel_size)
    # Zeros outside the array (mode="constant") are the zeros outside the mask, so the
    # mask's bounding box gives the same values as the whole volume, faster.
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(mask))
    inside = mask[box]
    weight = gaussian_filter(inside.astype(np.float64), sigma, mode="constant")[inside]
    smoothed = np.empty_like(X)
    for start in range(0, X.shape[0], _SMOOTH_BATCH):
        rows = X[start : start + _SMOOTH_BATCH]
        volumes = np.zeros((rows.shape[0], *inside.shape))
        volumes[:, inside] = rows
        # No smoothing across maps (sigma 0 on axis 0: scipy skips that axis), so a map's
        # result does not depend on the others in its batch.
        volumes = gaussian_filter(volumes, (0.0, *sigma), mode="constant")
        smoothed[start : start + _SMOOTH_BATCH] = volumes[:, inside] / weight
    return smoothed


def _t_values(X: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Student's two-sample t per column, positive where the ``positive`` rows are higher.

    The pooled-variance t is the signed square root of the ANOVA F of
    ``sklearn.feature_selection.f_classif``, the screening of nilearn's
    ``Decoder``. Constant columns get t = 0.
    """
    a, b = X[positive], X[~positive]
    n_a, n_b = a.shape[0], b.shape[0]
    pooled = ((n_a - 1) * a.var(axis=0, ddof=1) + (n_b - 1) * b.var(axis=0, ddof=1)) / (
        n_a + n_b - 2
    )
    scale = np.sqrt(pooled * (1.0 / n_a + 1.0 / n_b))
    difference = a.mean(axis=0) - b.mean(axis=0)
    return np.divide(difference, scale, out=np.zeros_like(difference), where=scale > 0)


class ScreenedBaseline(ClassifierMixin, BaseEstimator):
    """Smoothing, t-test screening and logistic regression on two regional means.

    ``fit`` smooths each map within the mask (:func:`smooth_maps`), computes a
    two-sample t per voxel on the training subjects it is given (never on any
    other row), keeps the ``n_voxels`` voxels of largest t and the
    ``n_voxels`` of smallest t, z-scores them with the training subjects'
    means and standard deviations, averages each set into one feature, and
    fits ``make_pipeline(StandardScaler(), LogisticRegression(C))`` on the two
    features. Nothing is random: the same data give the same model.

    Design choices:

    - A fixed number of voxels per direction, not nilearn's
      ``screening_percentile``: the averaged set should stay inside the
      effect, whose size is a property of the effect, not of the mask (a
      percentile grows with the mask's extent, which nilearn corrects by
      rescaling to the MNI brain volume). Each direction has its own set, so
      an effect of one sign is not diluted by voxels of the other. It is a
      count of voxels of the analysis grid: 50 voxels are 3.2 cm³ at 4 mm,
      0.4 cm³ at 2 mm.
    - The two sets averaged, not the kept voxels as features: after
      smoothing, neighbouring kept voxels carry nearly the same signal, and
      their mean is a less noisy estimate of it than any of them; two
      features for tens of training subjects need no search of the penalty.
    - A fixed, weak penalty (``C`` on standardised features), no inner CV:
      an honest inner choice of C would have to redo the screening in every
      inner fold, and with two features C barely changes the boundary.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z), optional
        The brain mask the maps' columns come from; needed for smoothing.
    voxel_size : float or sequence of 3 float, optional
        Voxel edges in mm (``Grid.voxel_size``); needed for smoothing.
    smoothing_fwhm : float or None, default=8.0
        Gaussian FWHM in mm; None or 0: no smoothing (``mask`` and
        ``voxel_size`` are then not needed).
    n_voxels : int, default=50
        Voxels kept in each direction (at most half of the voxels each).
    C : float, default=1.0
        Inverse L2 penalty of the logistic regression on the two
        standardised features.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Sorted labels; positive t and ``decision_function`` > 0 mean ``classes_[1]``.
    t_ : ndarray of shape (n_features,)
        Student's t of every (smoothed) voxel on the training subjects.
    selected_ : ndarray of int, shape (2, k)
        Column indices of the kept voxels: row 0 the largest t (higher in
        ``classes_[1]``), row 1 the smallest; ``k = min(n_voxels, n_features // 2)``.
    voxel_mean_, voxel_scale_ : ndarray of shape (2, k)
        Training mean and standard deviation of each kept voxel.
    classifier_ : Pipeline
        StandardScaler and LogisticRegression fitted on the two features.
    n_features_in_ : int
    """

    def __init__(self, mask=None, voxel_size=None, smoothing_fwhm=8.0, n_voxels=50, C=1.0):
        self.mask = mask
        self.voxel_size = voxel_size
        self.smoothing_fwhm = smoothing_fwhm
        self.n_voxels = n_voxels
        self.C = C

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Two classes only: the t-test compares two groups.
        tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> None:
        fwhm = self.smoothing_fwhm
        if fwhm is not None and not (isinstance(fwhm, Real) and np.isfinite(fwhm) and fwhm >= 0):
            raise ValueError(f"smoothing_fwhm must be None or a number of mm >= 0; got {fwhm!r}.")
        if not (isinstance(self.n_voxels, Integral) and self.n_voxels >= 1):
            raise ValueError(f"n_voxels must be an integer >= 1; got {self.n_voxels!r}.")
        if not (isinstance(self.C, Real) and np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a positive number; got {self.C!r}.")
        if self._smooths() and (self.mask is None or self.voxel_size is None):
            raise ValueError(
                f"smoothing_fwhm={fwhm} needs the brain mask and the voxel size in mm: give "
                "mask and voxel_size, or smoothing_fwhm=None to screen unsmoothed maps."
            )

    def _smooths(self) -> bool:
        return bool(self.smoothing_fwhm)

    def _smoothed(self, X: np.ndarray) -> np.ndarray:
        if not self._smooths():
            return X
        return smooth_maps(X, self.mask, self.voxel_size, float(self.smoothing_fwhm))

    def _features(self, X: np.ndarray) -> np.ndarray:
        """The two regional means of the smoothed maps; (n_samples, 2)."""
        columns = self._smoothed(X)[:, self.selected_]  # (n, 2, k)
        return ((columns - self.voxel_mean_) / self.voxel_scale_).mean(axis=2)

    def fit(self, X, y) -> ScreenedBaseline:
        """Smooth, screen on these subjects, fit; ``X`` (n_subjects, n_voxels), ``y`` binary."""
        self._check_params()
        # Also sets n_features_in_ and checks that y is given, 1D and as long as X.
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, counts = np.unique(y, return_counts=True)
        if classes.size != 2:
            found = f"{classes.size} class" if classes.size == 1 else f"{classes.size} classes"
            raise ValueError(
                "Only binary classification is supported: y must hold exactly two classes; "
                f"got {found}: {classes.tolist()}."
            )
        if counts.min() < 2:
            found = dict(zip(classes.tolist(), counts.tolist(), strict=True))
            raise ValueError(
                "ScreenedBaseline needs at least 2 subjects of each class (a t-test per "
                f"voxel); got {found}."
            )
        k = min(self.n_voxels, X.shape[1] // 2)
        if k == 0:
            raise ValueError(
                "ScreenedBaseline keeps voxels in two directions and needs at least 2 "
                f"features; got {X.shape[1]} feature(s)."
            )
        if self._smooths() and X.shape[1] != np.count_nonzero(self.mask):
            raise ValueError(
                f"X has {X.shape[1]} columns but mask has {np.count_nonzero(self.mask)} voxels; "
                "give the mask the maps were made with."
            )
        self.classes_ = classes
        smoothed = self._smoothed(X)
        self.t_ = _t_values(smoothed, y == classes[1])
        # One partition at both ends (2 k <= n_features): the two sets never share a voxel.
        # A tenth of a full sort's time; ties are broken the same way on every run.
        order = np.argpartition(self.t_, (k - 1, self.t_.size - k))
        self.selected_ = np.stack([np.sort(order[-k:]), np.sort(order[:k])])
        kept = smoothed[:, self.selected_]
        self.voxel_mean_ = kept.mean(axis=0)
        scale = kept.std(axis=0)
        self.voxel_scale_ = np.where(scale > 0, scale, 1.0)
        features = ((kept - self.voxel_mean_) / self.voxel_scale_).mean(axis=2)
        # Newton's method: exact for two features, and ten times faster than lbfgs here,
        # which matters for the permutation test's thousands of fits.
        self.classifier_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, solver="newton-cholesky")
        )
        self.classifier_.fit(features, (y == classes[1]).astype(int))
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of ``classes_[1]``; shape (n_samples,)."""
        check_is_fitted(
            self,
            "classifier_",
            msg="This %(name)s instance is not fitted yet; call fit(X, y) first.",
        )
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.classifier_.decision_function(self._features(X))

    def predict(self, X) -> np.ndarray:
        """Labels, shape (n_samples,): ``classes_[1]`` where the decision is > 0."""
        positive = self.decision_function(X) > 0  # first: it raises NotFittedError
        return self.classes_[positive.astype(int)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of the logistic model, shape (n_samples, 2)."""
        positive = expit(self.decision_function(X))
        return np.column_stack([1.0 - positive, positive])


def _memory_key(X: np.ndarray) -> tuple:
    """Arrays with equal keys (alive together) view the same memory the same way."""
    return (X.__array_interface__["data"][0], X.shape, X.strides, X.dtype.str)


def screened_permutation_scores(
    estimator: ScreenedBaseline,
    fold_X,
    y,
    folds,
    *,
    n_permutations: int,
    seed: int = 0,
    fold_random_states=None,
) -> dict:
    """Label-permutation null of a screened baseline's whole cross-validation.

    :func:`rsxai.classify.refit_permutation_scores` (labels permuted within
    the outer test folds, every fold refitted, screening included), on maps
    smoothed once beforehand by a copy without smoothing: smoothing is
    label-free and per map, so the fits, and the observed row's predictions,
    are those of ``estimator`` on the unsmoothed maps.

    Parameters
    ----------
    estimator : ScreenedBaseline
    fold_X : sequence of ndarray of shape (n_subjects, n_voxels)
        Each outer fold's maps, unsmoothed (the same array may repeat: cohort scope).
    y, folds, n_permutations, seed, fold_random_states
        As for :func:`rsxai.classify.refit_permutation_scores`.

    Returns
    -------
    dict
        As :func:`rsxai.classify.refit_permutation_scores`.
    """
    if not isinstance(estimator, ScreenedBaseline):
        raise TypeError(f"estimator must be a ScreenedBaseline; got {type(estimator).__name__}.")
    estimator._check_params()
    fold_X = [np.asarray(X) for X in fold_X]
    smoothed: dict[tuple, np.ndarray] = {}
    for X in fold_X:
        # Cohort scope gives every fold a view of the same memory: smooth it once.
        if _memory_key(X) not in smoothed:
            smoothed[_memory_key(X)] = estimator._smoothed(np.asarray(X, dtype=np.float64))
    unsmoothing = clone(estimator).set_params(smoothing_fwhm=None)
    return refit_permutation_scores(
        unsmoothing,
        [smoothed[_memory_key(X)] for X in fold_X],
        y,
        folds,
        n_permutations=n_permutations,
        seed=seed,
        fold_random_states=fold_random_states,
    )
