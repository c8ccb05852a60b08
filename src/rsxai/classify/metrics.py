"""Classification metrics with intervals, and the significance of a cross-validated classifier.

Every function returns JSON-ready values (Python ``float``, ``int``, ``None``
for a quantity that the data do not define), so that a result can go
straight into ``metrics.json``.

Intervals (95 % by default)

- accuracy, sensitivity, specificity: Clopper–Pearson "exact" binomial
  intervals (``scipy.stats.binomtest(...).proportion_ci(method="exact")``);
  they never undercover, and are still defined at 0 % or 100 %.
- balanced accuracy, the mean of sensitivity and specificity, is not a
  binomial proportion: its interval is the central 95 % of its posterior
  distribution when sensitivity and specificity get independent flat Beta(1, 1)
  priors (Brodersen et al. 2010, "The balanced accuracy and its posterior
  distribution", ICPR), i.e. of the mean of Beta(TP + 1, FN + 1) and
  Beta(TN + 1, FP + 1), computed by (exact) Gauss–Legendre quadrature: no
  resampling, deterministic. A stratified bootstrap was not used: at 100 % sensitivity in a
  group of 30 it would not vary that half of the mean at all.
- ROC AUC: DeLong et al. (1988) variance in Sun & Xu's (2014) O(n log n) form,
  normal interval clipped to [0, 1] (as R's pROC ``ci.auc(method="delong")``).
  At AUC 0 or 1 the DeLong variance is 0 and the interval collapses to the
  point: with two groups of 30 that says only that the scores separated them.

Significance

- :func:`permutation_p_value` for a label-permutation test of the whole
  cross-validation procedure, the reference test: cross-validated predictions
  are not independent (the folds share training subjects), so
- :func:`binomial_test` against chance is only a quick, approximate check.

The summaries of a cross-validation's prediction table (per fold, over
repeats) are in :mod:`rsxai.classify.summaries`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "binomial_test",
    "chance_level",
    "classification_metrics",
    "delong_auc",
    "ensemble_probability",
    "permutation_p_value",
]


def _as_json_scalar(value):
    """A label as a plain Python scalar (NumPy scalars are not JSON-serialisable)."""
    return value.item() if isinstance(value, np.generic) else value


def chance_level(y_true) -> float:
    """Accuracy of always predicting the larger group: the proportion of the larger group.

    Chance is not 0.5 when the groups are unbalanced: with 40 patients and
    20 controls a classifier that answers "patient" for everyone, having
    learned nothing from the images, is right 2/3 of the time; an accuracy
    must beat that to show the images carry information.
    """
    _, counts = np.unique(np.asarray(y_true), return_counts=True)
    if counts.size == 0:
        raise ValueError("y_true is empty; chance level needs at least one label.")
    return float(counts.max() / counts.sum())


def binomial_test(n_correct: int, n: int, chance: float) -> float:
    """One-sided binomial p-value of ``n_correct`` right out of ``n`` against ``chance``.

    P(X >= n_correct) for X ~ Binomial(n, chance). Use the majority-class
    proportion (:func:`chance_level`) as ``chance``, not 0.5. Approximate for
    cross-validated predictions, which are not independent; the permutation
    test (:func:`permutation_p_value`) is the reference.

    Returns
    -------
    float
    """
    if not (isinstance(n, Integral) and n >= 1):
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    if not (isinstance(n_correct, Integral) and 0 <= n_correct <= n):
        raise ValueError(f"n_correct must be an integer between 0 and n={n}; got {n_correct!r}.")
    if not (isinstance(chance, Real) and 0 < chance < 1):
        raise ValueError(f"chance must be a number strictly between 0 and 1; got {chance!r}.")
    return float(stats.binomtest(int(n_correct), int(n), float(chance), "greater").pvalue)


def permutation_p_value(observed: float, null) -> float:
    """Monte Carlo permutation p-value ``(1 + #(null >= observed)) / (1 + n_null)``.

    ``null`` holds the statistic of ``n_null`` label permutations, the
    unpermuted data not included (the observed data count once, as the
    ``1 +``; Phipson & Smyth 2010), so the p-value is never 0 and the test
    is exact. Values equal to ``observed`` up to rounding (relative 1e-12)
    count as at least as large, since accuracies of the same subjects
    computed along different code paths may differ in the last bit.
    """
    null = np.asarray(null, dtype=np.float64).ravel()
    if null.size == 0:
        raise ValueError("null is empty; a permutation p-value needs at least one permutation.")
    if not np.all(np.isfinite(null)) or not np.isfinite(observed):
        raise ValueError("observed and null must be finite numbers.")
    at_least = (null >= observed) | np.isclose(null, observed, rtol=1e-12, atol=1e-12)
    return float((1 + np.count_nonzero(at_least)) / (1 + null.size))


def _clopper_pearson(successes: int, trials: int, confidence: float) -> dict | None:
    if trials == 0:
        return None
    interval = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method="exact"
    )
    return {
        "value": successes / trials,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "successes": int(successes),
        "trials": int(trials),
        "method": "clopper-pearson",
    }


def _mean_of_betas_cdf(x: float, first: tuple[float, float], second: tuple[float, float]):
    """P((A + B) / 2 <= x) for independent A ~ Beta(*first), B ~ Beta(*second).

    ``F_A(max(0, 2x - 1)) + integral of f_A(a) F_B(2x - a) da`` over the range
    where ``0 < 2x - a < 1``. With integer parameters (counts + 1) the integrand
    is a polynomial of degree ``sum(first) + sum(second) - 3``, so Gauss–Legendre
    with more than half that many nodes integrates it exactly.
    """
    low, high = max(0.0, 2 * x - 1), min(1.0, 2 * x)
    below = special.betainc(*first, low)
    if high <= low:
        return float(below)
    n_nodes = max(32, int(sum(first) + sum(second)) // 2 + 4)
    nodes, node_weights = np.polynomial.legendre.leggauss(n_nodes)
    a = low + (high - low) * (nodes + 1) / 2
    log_pdf = (first[0] - 1) * np.log(a) + (first[1] - 1) * np.log1p(-a) - special.betaln(*first)
    inside = np.sum(node_weights * np.exp(log_pdf) * special.betainc(*second, 2 * x - a))
    return float(below + inside * (high - low) / 2)


def _balanced_accuracy_interval(
    tp: int, fn: int, tn: int, fp: int, confidence: float
) -> tuple[float, float]:
    """Equal-tailed interval of the Beta-posterior of the balanced accuracy (Brodersen 2010)."""
    first, second = (tp + 1.0, fn + 1.0), (tn + 1.0, fp + 1.0)
    tail = (1 - confidence) / 2
    bounds = []
    for target in (tail, 1 - tail):
        bounds.append(
            optimize.brentq(
                lambda x, target=target: _mean_of_betas_cdf(x, first, second) - target,
                0.0,
                1.0,
                xtol=1e-10,
            )
        )
    return float(bounds[0]), float(bounds[1])


def delong_auc(y_positive, score) -> tuple[float, float | None]:
    """ROC AUC and its DeLong variance, in O(n log n) (Sun & Xu 2014).

    Parameters
    ----------
    y_positive : array-like of bool, shape (n,)
        True for the positive class.
    score : array-like of float, shape (n,)
        Higher means more likely positive; ties count one half.

    Returns
    -------
    auc : float
    variance : float or None
        None when either class has fewer than two members.

    Notes
    -----
    Written here because scikit-learn gives the AUC but no variance. With
    ``m`` positives and ``n`` negatives, the structural components are
    ``V10_i`` = the fraction of negatives that positive ``i`` outscores and
    ``V01_j`` = the fraction of positives that outscore negative ``j``; both
    come from mid-ranks, and ``var = var(V10) / m + var(V01) / n``.
    """
    y_positive = np.asarray(y_positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    positives, negatives = score[y_positive], score[~y_positive]
    m, n = positives.size, negatives.size
    if m == 0 or n == 0:
        raise ValueError("ROC AUC needs both classes in y_true.")
    rank_all = stats.rankdata(np.concatenate([positives, negatives]))
    v10 = (rank_all[:m] - stats.rankdata(positives)) / n
    v01 = 1.0 - (rank_all[m:] - stats.rankdata(negatives)) / m
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return auc, None
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


def _check_labels(y_true, y_pred, positive):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must be 1D of the same length; got shapes {y_true.shape} "
            f"and {y_pred.shape}."
        )
    labels = np.unique(np.concatenate([y_true, y_pred]))
    if labels.size > 2:
        raise ValueError(
            f"two classes expected; y_true and y_pred hold {labels.size}: {labels.tolist()}."
        )
    if labels.size == 2 and positive not in labels:
        raise ValueError(f"positive={positive!r} is not one of the labels {labels.tolist()}.")
    return y_true == positive, y_pred == positive


def classification_metrics(
    y_true, y_pred, probability, *, positive=1, confidence: float = 0.95
) -> dict:
    """Accuracy, balanced accuracy, sensitivity, specificity and ROC AUC with intervals.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
        True and predicted labels (two classes).
    probability : array-like of float, shape (n,)
        Predicted probability of the ``positive`` class (any score increasing
        with it gives the same AUC).
    positive : label, default=1
        The positive class (patients): sensitivity is its recall.
    confidence : float, default=0.95
        Level of every interval.

    Returns
    -------
    dict
        ``n``, ``n_positive``, ``n_negative``, ``positive``, ``confidence``;
        ``accuracy``, ``sensitivity``, ``specificity`` (``value``, ``ci_low``,
        ``ci_high``, ``successes``, ``trials``, ``method``),
        ``balanced_accuracy`` and ``roc_auc`` (``value``, ``ci_low``,
        ``ci_high``, ``method``; ``roc_auc`` also ``se``); ``chance_level``
        (majority-class proportion) and ``binomial_p_value`` (one-sided, of
        the accuracy against it). A metric the data do not define (e.g.
        specificity without negatives) is None. Intervals: see the module
        docstring.
    """
    if not (isinstance(confidence, Real) and 0 < confidence < 1):
        raise ValueError(f"confidence must be strictly between 0 and 1; got {confidence!r}.")
    is_positive, says_positive = _check_labels(y_true, y_pred, positive)
    probability = np.asarray(probability, dtype=np.float64)
    if probability.shape != is_positive.shape or not np.all(np.isfinite(probability)):
        raise ValueError(
            f"probability must be {is_positive.size} finite numbers, one per subject; "
            f"got shape {probability.shape}."
        )
    n = is_positive.size
    if n == 0:
        raise ValueError("y_true is empty.")
    tp = int(np.count_nonzero(is_positive & says_positive))
    fn = int(np.count_nonzero(is_positive & ~says_positive))
    tn = int(np.count_nonzero(~is_positive & ~says_positive))
    fp = int(np.count_nonzero(~is_positive & says_positive))
    n_correct, n_positive, n_negative = tp + tn, tp + fn, tn + fp
    chance = chance_level(is_positive)
    result = {
        "n": n,
        "n_positive": n_positive,
        "n_negative": n_negative,
        "positive": _as_json_scalar(positive),
        "confidence": float(confidence),
        "accuracy": _clopper_pearson(n_correct, n, confidence),
        "sensitivity": _clopper_pearson(tp, n_positive, confidence),
        "specificity": _clopper_pearson(tn, n_negative, confidence),
        "balanced_accuracy": None,
        "roc_auc": None,
        "chance_level": chance,
        "binomial_p_value": binomial_test(n_correct, n, chance) if chance < 1 else None,
    }
    if n_positive and n_negative:
        low, high = _balanced_accuracy_interval(tp, fn, tn, fp, confidence)
        result["balanced_accuracy"] = {
            "value": (tp / n_positive + tn / n_negative) / 2,
            "ci_low": low,
            "ci_high": high,
            "method": "beta-posterior (Brodersen et al. 2010)",
        }
        auc, variance = delong_auc(is_positive, probability)
        roc = {"value": auc, "ci_low": None, "ci_high": None, "se": None, "method": "delong"}
        if variance is not None:
            se = math.sqrt(max(variance, 0.0))
            half = stats.norm.ppf(0.5 + confidence / 2) * se
            roc.update(ci_low=max(0.0, auc - half), ci_high=min(1.0, auc + half), se=se)
        result["roc_auc"] = roc
    return result


def ensemble_probability(probabilities: Sequence) -> np.ndarray:
    """Mean over networks of each subject's probability of the positive class.

    Parameters
    ----------
    probabilities : sequence of array-like, each shape (n,)
        One array per network, subjects in the same order.

    Returns
    -------
    ndarray of shape (n,)
        The ensemble's probability; it predicts the positive class at >= 0.5.
    """
    arrays = [np.asarray(p, dtype=np.float64) for p in probabilities]
    if not arrays:
        raise ValueError("probabilities is empty; give one array per network.")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 1:
        raise ValueError(
            f"each network's probabilities must be 1D of the same length; got shapes "
            f"{sorted(shapes)}."
        )
    stacked = np.stack(arrays)
    if not np.all((stacked >= 0) & (stacked <= 1)):
        raise ValueError("probabilities must lie in [0, 1] (probability of the positive class).")
    return stacked.mean(axis=0)
