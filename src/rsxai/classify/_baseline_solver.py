"""The batched solver behind :class:`~rsxai.classify.LinearBaseline`: L2 fits on a Gram matrix.

Everything here works on ``K = X X^T + 1``, the n x n Gram matrix of the
standardised training subjects (the constant 1 being the intercept as a
penalised feature), never on the voxels: by the representer theorem the L2
problem has its solution ``w = X^T beta`` in the row space of ``X`` (see
:mod:`rsxai.classify.baselines`). It is apart from :mod:`rsxai.classify.baselines` because it
is pure numerical optimisation with no estimator API, voxel or
permutation-test bookkeeping.

What is written by hand, and why. scikit-learn's solvers on n x n inputs spend
most of their time in per-call overhead (0.3 to 5 ms a fit for liblinear
and lbfgs), and a permutation test needs 1,000 x 10 folds x (5 inner folds x 6 C
+ 1) = 310,000 fits. :func:`_newton_path` solves many such problems at once,
stacked in NumPy, by Newton's method in the n-dimensional coefficient space
(the Woodbury form of the voxel-space Newton step), warm-started along the C
grid, to machine precision; ``tests/test_baselines.py`` checks it against
``LinearSVC`` and ``LogisticRegression(solver="liblinear")`` on the full
voxels. :func:`fit_with_inner_cv` runs the inner cross-validation choice of C
for a stack of labelings (the observed one and its permutations) on one Gram
matrix, and :func:`platt_sigmoid` fits the SVM's probability calibration.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold

__all__ = ["fit_with_inner_cv", "platt_sigmoid"]

# Newton stops when the gradient norm falls below this fraction of its norm at w = 0.
_TOLERANCE = 1e-10
_MAX_ITER = 100
_MAX_HALVINGS = 40


def _loss(kind: str, margin: np.ndarray):
    """Loss, first and second derivative at ``margin = y * decision``."""
    if kind == "logistic":
        return np.logaddexp(0.0, -margin), -expit(-margin), expit(margin) * expit(-margin)
    hinge = np.maximum(0.0, 1.0 - margin)  # squared hinge (LinearSVC's default loss)
    return hinge * hinge, -2.0 * hinge, 2.0 * (margin < 1.0)


def _objective(kind, C, y, weights, beta, decision):
    """1/2 |w|^2 + C sum_i weight_i loss_i, with |w|^2 = beta . K beta = beta . decision."""
    loss = _loss(kind, y * decision)[0]
    return 0.5 * np.einsum("bi,bi->b", beta, decision) + C * np.einsum("bi,bi->b", weights, loss)


def _newton_path(kind: str, gram: np.ndarray, y: np.ndarray, weights: np.ndarray, Cs):
    """Solve a stack of L2 problems on one Gram matrix, for each C (ascending), warm-started.

    Problem ``b`` is ``min_beta 1/2 beta.K.beta + C sum_i weights[b, i] loss(y[b, i] (K beta)_i)``,
    the voxel-space problem with ``w = X^T beta``. Rows with weight 0 (held out
    of an inner fold) do not enter it; their decision values are still given.

    Parameters
    ----------
    kind : {"svm", "logistic"}
    gram : ndarray of shape (m, m)
        ``X X^T + 1`` (the 1: the intercept as a penalised constant feature).
    y : ndarray of shape (n_problems, m)
        Labels as -1 / +1.
    weights : ndarray of shape (n_problems, m)
        1 for the rows a problem is fitted on, 0 otherwise.
    Cs : sequence of float, ascending

    Returns
    -------
    betas, decisions : ndarray of shape (len(Cs), n_problems, m)
        Coefficients and the decision value ``K beta`` of every row.
    """
    n_problems, m = y.shape
    beta, decision = np.zeros((n_problems, m)), np.zeros((n_problems, m))
    betas, decisions = np.empty((len(Cs), n_problems, m)), np.empty((len(Cs), n_problems, m))
    diagonal = np.arange(m)
    slope_at_zero = _loss(kind, np.zeros(1))[1][0]
    for k, C in enumerate(Cs):
        # Gradient in voxel space is X^T gamma, with norm^2 gamma . K gamma.
        gamma0 = C * weights * slope_at_zero * y
        scale = np.einsum("bi,bi->b", gamma0 @ gram, gamma0)
        active = np.arange(n_problems)
        for _ in range(_MAX_ITER):
            b, f, yy, w = beta[active], decision[active], y[active], weights[active]
            _, slope, curvature = _loss(kind, yy * f)
            gamma = b + C * w * slope * yy
            k_gamma = gamma @ gram
            todo = np.einsum("bi,bi->b", k_gamma, gamma) > _TOLERANCE**2 * scale[active]
            active = active[todo]
            if not active.size:
                break
            b, f, yy, w = b[todo], f[todo], yy[todo], w[todo]
            gamma, k_gamma, curvature = gamma[todo], k_gamma[todo], curvature[todo]
            # Newton step in voxel space, (I + X^T D X)^-1 X^T gamma with D = C w loss'',
            # is X^T (gamma - S (I + S K S)^-1 S K gamma), S = D^1/2 (Woodbury): an
            # m x m solve, symmetric with eigenvalues >= 1, rows with D = 0 decoupled.
            root = np.sqrt(C * w * curvature)
            system = root[:, :, None] * gram
            system *= root[:, None, :]
            system[:, diagonal, diagonal] += 1.0
            step = root * np.linalg.solve(system, (root * k_gamma)[..., None])[..., 0] - gamma
            d_decision = step @ gram
            t = _backtrack(
                kind, C, yy, w, b, f, step, d_decision, np.einsum("bi,bi->b", k_gamma, step)
            )
            beta[active] = b + t[:, None] * step
            decision[active] = f + t[:, None] * d_decision
        else:
            warnings.warn(
                f"{kind} solver did not converge in {_MAX_ITER} Newton iterations at C={C:g} "
                f"for {active.size} of {n_problems} problem(s).",
                ConvergenceWarning,
                stacklevel=3,
            )
        betas[k], decisions[k] = beta, decision
    return betas, decisions


def _backtrack(kind, C, y, weights, beta, decision, step, d_decision, slope):
    """Armijo step length along ``step`` (halving from 1); ``slope`` < 0 is the derivative at 0."""
    # Along the line, |w|^2 is a quadratic in t and decisions are linear in t: no new products.
    start = _objective(kind, C, y, weights, beta, decision)
    linear, quadratic = (
        np.einsum("bi,bi->b", beta, d_decision),
        np.einsum("bi,bi->b", step, d_decision),
    )
    # Near the optimum the decrease is below rounding: the full Newton step is then right.
    t = np.ones(y.shape[0])
    pending = np.flatnonzero(-slope > 1e-13 * np.abs(start))
    for _ in range(_MAX_HALVINGS):
        if not pending.size:
            break
        tp = t[pending]
        loss = _loss(kind, y[pending] * (decision[pending] + tp[:, None] * d_decision[pending]))[0]
        value = (
            0.5 * np.einsum("bi,bi->b", beta[pending], decision[pending])
            + tp * linear[pending]
            + 0.5 * tp**2 * quadratic[pending]
            + C * np.einsum("bi,bi->b", weights[pending], loss)
        )
        pending = pending[value > start[pending] + 1e-4 * tp * slope[pending]]
        t[pending] *= 0.5
    return t


def _stratified_test_folds(y: np.ndarray, inner_cv: int, random_state) -> np.ndarray:
    """Inner test fold of each row, as ``StratifiedKFold(inner_cv, shuffle=True)``; y (m,)."""
    folds = StratifiedKFold(inner_cv, shuffle=True, random_state=random_state)
    test_fold = np.empty(y.size, dtype=int)
    for k, (_, held_out) in enumerate(folds.split(np.zeros(y.size), y)):
        test_fold[held_out] = k
    return test_fold


def _inner_test_folds(y: np.ndarray, inner_cv: int, random_state) -> np.ndarray:
    """Inner test fold of each row for each labelling; y (n_labelings, m) -> same shape.

    ``StratifiedKFold(shuffle=True, random_state=int)`` hands each class a
    sequence of fold numbers that depends only on the class sizes, on which
    class comes first in ``y`` and on the seed, and gives it to the class's
    members in row order. Within-fold permutations keep the class sizes of
    every training set, so the two sequences (first row positive or negative)
    are drawn once and dealt by rank within class, instead of calling the
    splitter for each of the 1,000 permutations (a third of the run time).
    The shortcut is checked against the splitter on the first labelling (the
    observed one) and not used if they differ.
    """
    positive = y > 0
    n_positive = np.count_nonzero(positive, axis=1)
    if random_state is None or np.unique(n_positive).size != 1:
        return np.stack([_stratified_test_folds(row, inner_cv, random_state) for row in y])
    m, n_pos = y.shape[1], int(n_positive[0])
    sequences = {}
    for first_positive in (True, False):
        canonical = np.where(np.arange(m) < n_pos, 1.0, -1.0)
        canonical = canonical if first_positive else canonical[::-1]
        test_fold = _stratified_test_folds(canonical, inner_cv, random_state)
        sequences[first_positive] = (test_fold[canonical > 0], test_fold[canonical < 0])
    rank = np.where(positive, np.cumsum(positive, axis=1), np.cumsum(~positive, axis=1)) - 1
    folds = np.empty(y.shape, dtype=int)
    for first_positive, (for_positive, for_negative) in sequences.items():
        for members, sequence in ((positive, for_positive), (~positive, for_negative)):
            members = members & (positive[:, :1] == first_positive)
            folds[members] = sequence[rank[members]]
    if not np.array_equal(folds[0], _stratified_test_folds(y[0], inner_cv, random_state)):
        return np.stack([_stratified_test_folds(row, inner_cv, random_state) for row in y])
    return folds


def fit_with_inner_cv(kind, gram, y, Cs, inner_cv, random_state):
    """Choose C by inner CV and fit, for several label vectors on one Gram matrix.

    The inner folds are those of ``StratifiedKFold(inner_cv, shuffle=True,
    random_state=random_state)`` on each labeling; C is the first (smallest)
    with the best mean inner accuracy, as ``GridSearchCV`` on an ascending grid.

    Parameters
    ----------
    kind : {"svm", "logistic"}
    gram : ndarray of shape (m, m)
        ``X X^T + 1`` of the standardised training samples.
    y : ndarray of shape (n_labelings, m), -1 / +1
    Cs : ndarray, ascending, absolute
    inner_cv : int
        Number of inner folds.
    random_state : int or None
        Shuffling of the inner folds.

    Returns
    -------
    beta : ndarray of shape (n_labelings, m)
        Final coefficients (all rows, chosen C).
    chosen : ndarray of int, shape (n_labelings,)
    scores : ndarray of shape (n_labelings, len(Cs), inner_cv)
        Inner validation accuracy.
    held_out_decision : ndarray of shape (n_labelings, m)
        Each row's decision value from the inner fold that held it out, at the chosen C.
    """
    n_labelings, m = y.shape
    test_folds = _inner_test_folds(y, inner_cv, random_state)
    # Weights of the rows in each inner training set, then of all rows (the final fit).
    weights = np.ones((n_labelings, inner_cv + 1, m))
    weights[:, :inner_cv] = test_folds[:, None, :] != np.arange(inner_cv)[None, :, None]
    stacked_y = np.repeat(y, inner_cv + 1, axis=0)
    betas, decisions = _newton_path(kind, gram, stacked_y, weights.reshape(-1, m), Cs)
    betas = betas.reshape(len(Cs), n_labelings, inner_cv + 1, m)
    decisions = decisions.reshape(len(Cs), n_labelings, inner_cv + 1, m)
    held_out = 1.0 - weights[:, :inner_cv]  # (n_labelings, inner_cv, m)
    correct = ((decisions[:, :, :inner_cv] > 0) == (y[None, :, None] > 0)) * held_out
    scores = (correct.sum(axis=-1) / held_out.sum(axis=-1)).transpose(1, 0, 2)
    # First best mean score: the smallest C among ties (GridSearchCV's rule on an ascending grid).
    chosen = np.argmax(scores.mean(axis=-1), axis=1)
    index = np.arange(n_labelings)
    held_out_decision = np.einsum("lkm,lkm->lm", decisions[chosen, index, :inner_cv], held_out)
    return betas[chosen, index, inner_cv], chosen, scores, held_out_decision


def platt_sigmoid(decision: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid P(+1) = expit(a f + b) of held-out decision values, slope a >= 0.

    Platt's (1999) smoothed targets; the slope is kept non-negative so that a
    higher SVM decision value never means a lower probability.

    Parameters
    ----------
    decision : ndarray of shape (m,)
        Held-out decision values.
    y : ndarray of shape (m,)
        Labels as -1 / +1.

    Returns
    -------
    slope, intercept : float
    """
    n_pos, n_neg = np.count_nonzero(y > 0), np.count_nonzero(y < 0)
    target = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def negative_log_likelihood(params):
        z = params[0] * decision + params[1]
        residual = expit(z) - target
        value = np.sum(np.logaddexp(0.0, z) - target * z)
        return value, np.array([residual @ decision, residual.sum()])

    start = np.array([1.0, math.log((n_pos + 1) / (n_neg + 1))])
    fitted = optimize.minimize(
        negative_log_likelihood,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, None), (None, None)],
    )
    return float(fitted.x[0]), float(fitted.x[1])
