"""Summaries of a cross-validation's predictions: metrics per fold and over repeats.

:func:`fold_metrics` gives the point metrics of each fold of each repeat (no
intervals: a fold of six subjects cannot support one); :func:`aggregate_repeats`
gives the headline of a repeated cross-validation, the first repeat's metrics
with intervals from :func:`rsxai.classify.metrics.classification_metrics`
(one prediction per subject, the quantity the permutation test scores), and
the mean and spread over repeats as a stability figure. Both read the
prediction table the classify stage writes, one row per subject and repeat
(columns :data:`PREDICTION_COLUMNS`). They are apart from
:mod:`rsxai.classify.metrics` because they handle that table's folds
and repeats; the metrics and intervals themselves are computed there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rsxai.classify.metrics import (
    _as_json_scalar,
    _check_labels,
    classification_metrics,
    delong_auc,
)

__all__ = ["PREDICTION_COLUMNS", "aggregate_repeats", "fold_metrics"]

PREDICTION_COLUMNS = ("subject", "y_true", "y_pred", "probability", "fold", "repeat")
_SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")


def _point_metrics(is_positive: np.ndarray, says_positive: np.ndarray, probability) -> dict:
    """The five metrics' values (NaN where undefined), without intervals."""
    n_positive = np.count_nonzero(is_positive)
    n_negative = is_positive.size - n_positive
    tp = np.count_nonzero(is_positive & says_positive)
    tn = np.count_nonzero(~is_positive & ~says_positive)
    sensitivity = tp / n_positive if n_positive else math.nan
    specificity = tn / n_negative if n_negative else math.nan
    both = bool(n_positive and n_negative)
    return {
        "n": int(is_positive.size),
        "n_positive": int(n_positive),
        "n_correct": int(tp + tn),
        "accuracy": (tp + tn) / is_positive.size,
        "balanced_accuracy": (sensitivity + specificity) / 2 if both else math.nan,
        "sensitivity": float(sensitivity),
        "specificity": float(specificity),
        "roc_auc": delong_auc(is_positive, probability)[0] if both else math.nan,
    }


def _check_predictions(predictions: pd.DataFrame) -> None:
    missing = [column for column in PREDICTION_COLUMNS if column not in predictions.columns]
    if missing:
        raise ValueError(
            f"predictions lacks column(s) {missing}; it needs {list(PREDICTION_COLUMNS)}."
        )
    duplicated = predictions.duplicated(["repeat", "subject"])
    if duplicated.any():
        first = predictions.loc[duplicated, ["repeat", "subject"]].iloc[0].tolist()
        raise ValueError(
            f"predictions has subject {first[1]!r} more than once in repeat {first[0]!r}; "
            "each subject is tested exactly once per repeat."
        )


def fold_metrics(predictions: pd.DataFrame, *, positive=1) -> pd.DataFrame:
    """Metrics of each fold of each repeat.

    Parameters
    ----------
    predictions : DataFrame
        One row per subject and repeat, columns ``subject``, ``y_true``,
        ``y_pred``, ``probability`` (of ``positive``), ``fold``, ``repeat``.
    positive : label, default=1

    Returns
    -------
    DataFrame
        One row per (``repeat``, ``fold``): ``n``, ``n_positive``,
        ``n_correct``, ``accuracy``, ``balanced_accuracy``, ``sensitivity``,
        ``specificity``, ``roc_auc`` (NaN where a fold lacks a class). No
        intervals: a fold of six subjects cannot support one.
    """
    _check_predictions(predictions)
    rows = []
    for (repeat, fold), group in predictions.groupby(["repeat", "fold"], sort=True):
        is_positive, says_positive = _check_labels(group["y_true"], group["y_pred"], positive)
        rows.append(
            {
                "repeat": _as_json_scalar(repeat),
                "fold": _as_json_scalar(fold),
                **_point_metrics(is_positive, says_positive, group["probability"].to_numpy()),
            }
        )
    return pd.DataFrame(rows)


def aggregate_repeats(predictions: pd.DataFrame, *, positive=1, confidence: float = 0.95) -> dict:
    """Summary of repeated cross-validation: the first repeat as headline, spread over repeats.

    Each repeat tests every subject once, so a repeat's metrics pool its
    folds. The headline (``first``) is the first repeat: its metrics, with
    the intervals and binomial p of
    :func:`rsxai.classify.metrics.classification_metrics` on its one
    prediction per subject. It is the quantity that the label-permutation
    tests score (:func:`rsxai.classify.permutation_scores` and
    :func:`rsxai.classify.refit_permutation_scores` run one repeat's
    partition), so the headline and its permutation p are of the same
    number. The mean, ``std``, ``min`` and ``max`` over repeats show how
    much the partition matters: a stability figure, without interval or p
    (repeats are not new subjects, and a p of the mean would need every
    permutation to rerun every repeat).

    Parameters
    ----------
    predictions : DataFrame
        As for :func:`fold_metrics`; every repeat must hold the same subjects.
    positive : label, default=1
    confidence : float, default=0.95

    Returns
    -------
    dict
        ``n_repeats``; ``first_repeat`` (the label of the first repeat, in
        sorted order); ``per_repeat`` (list of dicts: ``repeat`` and the five
        metrics); ``mean``, ``std`` (ddof 1; 0 with one repeat), ``min``,
        ``max`` (dicts metric -> float or None); ``first`` (the
        :func:`rsxai.classify.metrics.classification_metrics` dict of the
        first repeat: the headline).
    """
    _check_predictions(predictions)
    subjects_by_repeat = predictions.groupby("repeat")["subject"].apply(frozenset)
    if subjects_by_repeat.nunique() != 1:
        raise ValueError("every repeat of predictions must hold the same subjects.")
    per_repeat = []
    for repeat, group in predictions.groupby("repeat", sort=True):
        is_positive, says_positive = _check_labels(group["y_true"], group["y_pred"], positive)
        values = _point_metrics(is_positive, says_positive, group["probability"].to_numpy())
        per_repeat.append({"repeat": _as_json_scalar(repeat)} | _nan_to_none(values))
    table = pd.DataFrame(per_repeat)

    def summary(function) -> dict:
        out = {}
        for metric in _SUMMARY_METRICS:
            column = table[metric].to_numpy(dtype=np.float64)  # None becomes NaN
            out[metric] = None if np.isnan(column).any() else float(function(column))
        return out

    first_repeat = per_repeat[0]["repeat"]
    first = predictions[predictions["repeat"] == first_repeat]
    return {
        "n_repeats": len(per_repeat),
        "first_repeat": first_repeat,
        "per_repeat": per_repeat,
        "mean": summary(np.mean),
        "std": summary(lambda v: np.std(v, ddof=1) if v.size > 1 else 0.0),
        "min": summary(np.min),
        "max": summary(np.max),
        "first": classification_metrics(
            first["y_true"].to_numpy(),
            first["y_pred"].to_numpy(),
            first["probability"].to_numpy(),
            positive=positive,
            confidence=confidence,
        ),
    }


def _nan_to_none(values: dict) -> dict:
    """The five summary metrics of ``values``, NaN as None (JSON has no NaN)."""
    return {k: None if math.isnan(values[k]) else float(values[k]) for k in _SUMMARY_METRICS}
