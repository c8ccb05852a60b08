"""Linear baselines on masked maps: linear SVM and L2 logistic regression, scikit-learn style.

:class:`LinearBaseline` is the same estimator (to solver precision) as
``make_pipeline(StandardScaler(), GridSearchCV(LinearSVC(C) or
LogisticRegression(C, solver="liblinear"), {"C": grid},
cv=StratifiedKFold(inner_cv, shuffle=True, random_state=random_state)))``,
i.e. nilearn ``Decoder``'s ``svc`` and ``logistic_l2`` with C chosen by an
inner cross-validation. The scaler is fitted on the training subjects only,
once, and the inner CV works on that scaling: the voxel means and standard
deviations of an inner validation subject (never its label) enter the inner
training; this touches only the choice of C, never an outer test subject.
It is computed another way, fast enough for a 1,000-permutation test of
the whole procedure (:func:`rsxai.classify.permutation_scores`, in
:mod:`rsxai.classify.baseline_permutations`).

Why it can be fast. With an L2 penalty, the problem
``min_w 1/2 |w|^2 + C sum_i loss(y_i, x_i . w)`` (the intercept being a
penalised constant feature, as in liblinear) has its solution in the row
space of the training matrix: any part of ``w`` orthogonal to every ``x_i``
changes no ``x_i . w`` and only adds to ``|w|^2`` (the representer theorem).
So ``w = X^T beta`` with one coefficient per training subject, and the problem
only ever sees ``K = X X^T``, the n x n Gram matrix: fitting on ``K`` is the
same optimisation problem as fitting on the 30,000 to 230,000 voxels, not an
approximation. (Equivalently: fitting on ``Z = X V``, the coordinates in an
orthonormal basis ``V`` of the row space, e.g. from a thin SVD, since
``Z Z^T = K`` and ``|w| = |a|`` for ``w = V a``.) The voxels are read once per
outer fold, to standardise them and form ``K``; the inner cross-validation
fits are problems on sub-blocks of the same ``K`` (an inner training set's row
space lies inside the outer one's), and a label permutation changes only
``y``, so every permutation of a fold reuses its ``K``.

The solver. :mod:`rsxai.classify._baseline_solver` solves many such problems at once
on ``K`` by Newton's method (scikit-learn's solvers spend most of an n x n fit
in per-call overhead); the tests check it against ``LinearSVC`` and
``LogisticRegression(solver="liblinear")`` on the full voxels.

C grid. With ``p`` standardised voxels every sample has squared norm ``p``,
so the same C means a weaker penalty at 2 mm than at 4 mm. ``Cs`` are
therefore relative: the C used is ``Cs[k] / p`` (``p`` = mean squared norm of
a standardised training sample, i.e. the number of non-constant voxels);
``Cs`` from 1e-3 (almost the class-mean-difference direction) to 100 (close
to the hard-margin solution) spans the useful range. ``C_`` is the absolute value
chosen, for reproduction with scikit-learn.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rsxai.classify._baseline_solver import fit_with_inner_cv, platt_sigmoid

__all__ = [
    "DEFAULT_CS",
    "KINDS",
    "LinearBaseline",
]

KINDS = ("svm", "logistic")
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def check_baseline_params(kind, Cs, inner_cv, random_state) -> np.ndarray:
    """Validated relative Cs, sorted ascending."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}.")
    values = np.asarray(Cs, dtype=np.float64).ravel() if np.size(Cs) else np.empty(0)
    if values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"Cs must be a non-empty sequence of positive numbers; got {Cs!r}.")
    if not (isinstance(inner_cv, Integral) and inner_cv >= 2):
        raise ValueError(f"inner_cv must be an integer >= 2; got {inner_cv!r}.")
    if not (random_state is None or isinstance(random_state, Integral)):
        raise ValueError(f"random_state must be None or an integer; got {random_state!r}.")
    return np.unique(values)


def signed_labels(y, inner_cv: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes (sorted) and y as -1 / +1 (+1 = ``classes[1]``), checking inner CV is possible."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1D (one label per subject); got shape {y.shape}.")
    classes, counts = np.unique(y, return_counts=True)
    if classes.size != 2:
        found = f"{classes.size} class" if classes.size == 1 else f"{classes.size} classes"
        raise ValueError(
            "Only binary classification is supported: y must hold exactly two classes; "
            f"got {found}: {classes.tolist()}."
        )
    if counts.min() < inner_cv:
        raise ValueError(
            f"inner_cv={inner_cv} needs at least {inner_cv} training subjects of each class; "
            f"got {dict(zip(classes.tolist(), counts.tolist(), strict=True))}. Lower inner_cv."
        )
    return classes, np.where(y == classes[1], 1.0, -1.0)


def standardised_gram(X: np.ndarray, train: np.ndarray):
    """Standardise on the ``train`` rows; their ``X X^T + 1`` and the C unit ``p``.

    Returns the fitted scaler, the standardised training rows, the augmented
    Gram matrix and ``p``, the mean squared norm of a standardised row.
    """
    scaler = StandardScaler().fit(X[train])
    train_std = scaler.transform(X[train])
    gram = train_std @ train_std.T
    unit = np.trace(gram) / train.size
    if unit <= 0:
        raise ValueError("every feature is constant over the training subjects; nothing to learn.")
    return scaler, train_std, gram + 1.0, unit


class LinearBaseline(ClassifierMixin, BaseEstimator):
    """Linear SVM or L2 logistic regression on standardised masked maps, C by inner CV.

    Equal (to solver precision) to ``make_pipeline(StandardScaler(),
    GridSearchCV(estimator, {"C": C_grid}, cv=StratifiedKFold(inner_cv,
    shuffle=True, random_state=random_state)))`` with ``estimator``
    ``LinearSVC(C)`` (squared hinge, nilearn's ``svc``) or
    ``LogisticRegression(C, solver="liblinear")`` (nilearn's
    ``logistic_l2``), both with the intercept as a penalised constant
    feature, and ``C_grid = Cs / p``. See the module docstring for how.

    Parameters
    ----------
    kind : {"svm", "logistic"}, default="svm"
    Cs : sequence of float, default=(1e-3, 1e-2, 1e-1, 1, 10, 100)
        Inverse penalties relative to ``1 / p`` (``p``: number of non-constant
        voxels), tried in the inner CV; ties go to the smallest.
    inner_cv : int, default=5
        Stratified folds of the inner CV; each class needs that many subjects.
    random_state : int or None, default=0
        Shuffling of the inner folds.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Sorted labels; ``classes_[1]`` is the positive class of
        ``decision_function`` and ``predict_proba[:, 1]``.
    scaler_ : StandardScaler
        Fitted on the training subjects.
    coef_ : ndarray of shape (n_features,)
        Weights on the standardised features (a map, in voxel space).
    intercept_ : float
    C_ : float
        The absolute C chosen (``relative_C_ / p``).
    relative_C_ : float
        The value of ``Cs`` chosen.
    cv_scores_ : ndarray of shape (len(Cs), inner_cv)
        Inner validation accuracy per C (ascending) and inner fold.
    platt_ : tuple of (float, float) or None
        SVM only: slope and intercept of the Platt sigmoid that
        ``predict_proba`` applies to the decision value, fitted on the inner
        folds' held-out decision values at ``C_`` (as
        ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``). A
        probability may then fall on the other side of 0.5 than the
        prediction, as with libsvm's.
    n_features_in_ : int
    """

    def __init__(self, kind: str = "svm", Cs=DEFAULT_CS, inner_cv: int = 5, random_state=0):
        self.kind = kind
        self.Cs = Cs
        self.inner_cv = inner_cv
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Two classes only: the solver, the -1 / +1 labels and the Platt sigmoid are binary.
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y) -> LinearBaseline:
        """Standardise, choose C by inner CV and fit on all of ``X`` (n_subjects, n_features)."""
        relative = check_baseline_params(self.kind, self.Cs, self.inner_cv, self.random_state)
        # Also sets n_features_in_ and checks that y is given, 1D and as long as X.
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, signed = signed_labels(y, self.inner_cv)
        self.scaler_, standardised, gram, unit = standardised_gram(X, np.arange(X.shape[0]))
        absolute = relative / unit
        beta, chosen, scores, held_out = fit_with_inner_cv(
            self.kind, gram, signed[None], absolute, self.inner_cv, self.random_state
        )
        # w = X_std^T beta: the voxel-space weights, formed once (X_std is not kept).
        self.coef_ = standardised.T @ beta[0]
        self.intercept_ = float(beta[0].sum())
        self.C_, self.relative_C_ = float(absolute[chosen[0]]), float(relative[chosen[0]])
        self.cv_scores_ = scores[0]
        self.platt_ = platt_sigmoid(held_out[0], signed) if self.kind == "svm" else None
        return self

    def decision_function(self, X) -> np.ndarray:
        """Signed distance to the boundary, positive for ``classes_[1]``; shape (n_samples,)."""
        check_is_fitted(
            self, "coef_", msg="This %(name)s instance is not fitted yet; call fit(X, y) first."
        )
        # Checks that X has the n_features_in_ columns seen in fit.
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.scaler_.transform(X) @ self.coef_ + self.intercept_

    def predict(self, X) -> np.ndarray:
        """Labels, shape (n_samples,): ``classes_[1]`` at decision > 0 (not Platt probability)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, 2) (logistic model, or Platt-scaled SVM)."""
        decision = self.decision_function(X)
        if self.platt_ is not None:
            decision = self.platt_[0] * decision + self.platt_[1]
        positive = expit(decision)
        return np.column_stack([1.0 - positive, positive])
