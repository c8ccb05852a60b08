"""Classification metrics: values against scikit-learn, intervals against references."""

from __future__ import annotations

import json
from fractions import Fraction
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from rsxai.classify import aggregate_repeats, classification_metrics, fold_metrics
from rsxai.classify.metrics import (
    binomial_test,
    chance_level,
    delong_auc,
    ensemble_probability,
    permutation_p_value,
)


def _random_case(seed: int, n: int = 60, labels=(0, 1)):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(labels, size=n, p=[0.4, 0.6])
    y_true[:2] = labels  # both classes present
    probability = np.clip(0.5 + 0.3 * (y_true == labels[1]) + rng.normal(0, 0.3, n), 0, 1)
    y_pred = np.where(probability >= 0.5, labels[1], labels[0])
    y_pred[rng.random(n) < 0.1] = labels[0]
    return y_true, y_pred, probability


@pytest.mark.parametrize("seed", range(5))
def test_metric_values_match_sklearn(seed):
    y_true, y_pred, probability = _random_case(seed)
    result = classification_metrics(y_true, y_pred, probability)
    assert result["accuracy"]["value"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"]["value"] == pytest.approx(
        balanced_accuracy_score(y_true, y_pred)
    )
    assert result["sensitivity"]["value"] == pytest.approx(recall_score(y_true, y_pred))
    assert result["specificity"]["value"] == pytest.approx(
        recall_score(y_true, y_pred, pos_label=0)
    )
    assert result["roc_auc"]["value"] == pytest.approx(roc_auc_score(y_true, probability))
    assert result["n"] == 60 and result["n_positive"] == int(np.sum(y_true == 1))
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc"):
        item = result[name]
        assert 0 <= item["ci_low"] <= item["value"] <= item["ci_high"] <= 1
    # JSON-ready: no NumPy types, no NaN.
    json.dumps(result, allow_nan=False)


def test_string_labels_and_positive_class():
    y_true, y_pred, probability = _random_case(7, labels=("control", "ALS"))
    result = classification_metrics(y_true, y_pred, probability, positive="ALS")
    assert result["sensitivity"]["value"] == pytest.approx(
        recall_score(y_true, y_pred, pos_label="ALS")
    )
    assert result["specificity"]["value"] == pytest.approx(
        recall_score(y_true, y_pred, pos_label="control")
    )
    assert result["roc_auc"]["value"] == pytest.approx(roc_auc_score(y_true == "ALS", probability))
    with pytest.raises(ValueError, match="positive='patient'"):
        classification_metrics(y_true, y_pred, probability, positive="patient")


def test_clopper_pearson_known_values():
    # R: binom.test(682, 925) -> 95 percent confidence interval 0.7076683 0.7654066.
    y = np.ones(925, dtype=int)
    pred = np.r_[np.ones(682, dtype=int), np.zeros(243, dtype=int)]
    result = classification_metrics(y, pred, np.full(925, 0.5))
    assert result["accuracy"]["ci_low"] == pytest.approx(0.7076683, abs=5e-8)
    assert result["accuracy"]["ci_high"] == pytest.approx(0.7654066, abs=5e-8)
    assert result["specificity"] is None and result["roc_auc"] is None
    # 47 of 60: the beta-quantile form of the exact interval.
    y = np.r_[np.ones(30, dtype=int), np.zeros(30, dtype=int)]
    pred = y.copy()
    pred[:13] = 0  # 17/30 positives right, 30/30 negatives right: 47/60
    result = classification_metrics(y, pred, np.linspace(0, 1, 60))
    assert result["accuracy"]["successes"] == 47
    assert result["accuracy"]["ci_low"] == pytest.approx(stats.beta.ppf(0.025, 47, 14))
    assert result["accuracy"]["ci_high"] == pytest.approx(stats.beta.ppf(0.975, 48, 13))
    # 30/30: the lower bound is (alpha / 2) ** (1 / n), the upper is 1.
    assert result["specificity"]["ci_low"] == pytest.approx(0.025 ** (1 / 30))
    assert result["specificity"]["ci_high"] == 1.0


def test_balanced_accuracy_interval_is_the_beta_posterior():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30, dtype=int), np.zeros(30, dtype=int)]
    pred = y.copy()
    pred[:6] = 0  # sensitivity 24/30
    pred[30:33] = 1  # specificity 27/30
    result = classification_metrics(y, pred, rng.random(60))["balanced_accuracy"]
    assert result["value"] == pytest.approx((24 / 30 + 27 / 30) / 2)
    draws = (rng.beta(25, 7, 500_000) + rng.beta(28, 4, 500_000)) / 2
    low, high = np.quantile(draws, [0.025, 0.975])
    assert result["ci_low"] == pytest.approx(low, abs=2e-3)
    assert result["ci_high"] == pytest.approx(high, abs=2e-3)
    # At 100 % sensitivity and specificity the interval still has a width.
    perfect = classification_metrics(y, y, y.astype(float))["balanced_accuracy"]
    assert perfect["value"] == 1.0 and 0.85 < perfect["ci_low"] < 0.99


def _brute_force_delong(positives, negatives):
    psi = (positives[:, None] > negatives[None]) + 0.5 * (positives[:, None] == negatives[None])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / positives.size + v01.var(ddof=1) / negatives.size


def test_delong_matches_definition_sklearn_and_bootstrap():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(25, dtype=bool), np.zeros(35, dtype=bool)]
    score = np.round(rng.normal(0.8 * y, 1.0), 1)  # rounded: ties
    auc, variance = delong_auc(y, score)
    reference_auc, reference_variance = _brute_force_delong(score[y], score[~y])
    assert auc == pytest.approx(roc_auc_score(y, score))
    assert auc == pytest.approx(reference_auc)
    assert variance == pytest.approx(reference_variance, rel=1e-12)
    # Stratified bootstrap variance of the AUC: close to DeLong's.
    positives, negatives = np.flatnonzero(y), np.flatnonzero(~y)
    rows = np.hstack(
        [
            rng.choice(positives, (4000, positives.size)),
            rng.choice(negatives, (4000, negatives.size)),
        ]
    )
    # Mann-Whitney form of each resample's AUC (the first 25 columns are the positives).
    ranks = stats.rankdata(score[rows], axis=1)
    m, n = positives.size, negatives.size
    boot = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    assert boot[0] == pytest.approx(roc_auc_score(y[rows[0]], score[rows[0]]))
    assert np.var(boot, ddof=1) == pytest.approx(variance, rel=0.15)
    result = classification_metrics(y.astype(int), (score > 0.4).astype(int), score)["roc_auc"]
    half = stats.norm.ppf(0.975) * np.sqrt(variance)
    assert result["ci_low"] == pytest.approx(auc - half)
    assert result["ci_high"] == pytest.approx(auc + half)


def test_chance_and_binomial_test():
    assert chance_level(np.r_[np.ones(40), np.zeros(20)]) == pytest.approx(2 / 3)
    # P(X >= 47), X ~ Binomial(60, 1/2), exactly.
    exact = Fraction(sum(comb(60, k) for k in range(47, 61)), 2**60)
    assert binomial_test(47, 60, 0.5) == pytest.approx(float(exact), rel=1e-9)
    assert binomial_test(47, 60, 2 / 3) == pytest.approx(stats.binom.sf(46, 60, 2 / 3))
    # Against the majority proportion 40/60, 44 right is not significant; against 0.5 it is.
    assert binomial_test(44, 60, 2 / 3) > 0.05 > binomial_test(44, 60, 0.5)
    with pytest.raises(ValueError, match="n_correct"):
        binomial_test(61, 60, 0.5)
    with pytest.raises(ValueError, match="chance"):
        binomial_test(30, 60, 1.0)


def test_permutation_p_value():
    null = np.array([0.5, 0.55, 0.6, 0.45, 0.7])
    assert permutation_p_value(0.9, null) == pytest.approx(1 / 6)  # never 0
    assert permutation_p_value(0.6, null) == pytest.approx(3 / 6)  # ties count
    assert permutation_p_value(0.1, null) == 1.0
    # The same accuracy computed two ways (47/60 vs a sum of fold accuracies) is a tie.
    assert permutation_p_value(47 / 60, [sum([0.1] * 47) / 6]) == 1.0
    with pytest.raises(ValueError, match="null is empty"):
        permutation_p_value(0.5, [])


def _predictions(n_repeats: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(12, dtype=int), np.zeros(12, dtype=int)]
    frames = []
    for repeat in range(n_repeats):
        fold = rng.permutation(np.arange(24) % 3)
        probability = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.3, 24), 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "subject": [f"sub-{i:02d}" for i in range(24)],
                    "y_true": y,
                    "y_pred": (probability >= 0.5).astype(int),
                    "probability": probability,
                    "fold": fold,
                    "repeat": repeat,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_fold_metrics_per_repeat_and_fold():
    predictions = _predictions()
    table = fold_metrics(predictions)
    assert len(table) == 6 and list(table[["repeat", "fold"]].iloc[4]) == [1, 1]
    for row in table.itertuples():
        part = predictions[
            (predictions["repeat"] == row.repeat) & (predictions["fold"] == row.fold)
        ]
        assert row.n == len(part)
        assert row.accuracy == pytest.approx(accuracy_score(part["y_true"], part["y_pred"]))
        assert row.roc_auc == pytest.approx(roc_auc_score(part["y_true"], part["probability"]))
    # A fold with one class has no AUC and no specificity.
    one_class = predictions[predictions["y_true"] == 1]
    assert fold_metrics(one_class)[["roc_auc", "specificity"]].isna().all().all()
    with pytest.raises(ValueError, match="lacks column"):
        fold_metrics(predictions.drop(columns="fold"))


def test_aggregate_repeats_headline_is_the_first_repeat_and_spread_is_beside_it():
    predictions = _predictions(n_repeats=3)
    summary = aggregate_repeats(predictions)
    per_repeat = [
        accuracy_score(part["y_true"], part["y_pred"]) for _, part in predictions.groupby("repeat")
    ]
    assert summary["n_repeats"] == 3 and summary["first_repeat"] == 0
    assert summary["mean"]["accuracy"] == pytest.approx(np.mean(per_repeat))
    assert summary["std"]["accuracy"] == pytest.approx(np.std(per_repeat, ddof=1))
    # The headline is the first repeat (what the permutation test scores), with its
    # interval on the 24 subjects, never on 24 x 3 predictions; here it differs from the
    # mean over repeats, so a mean or a vote over repeats would not pass.
    assert per_repeat[0] != pytest.approx(np.mean(per_repeat))
    first = predictions[predictions["repeat"] == 0]
    assert summary["first"]["n"] == 24
    assert summary["first"]["accuracy"]["value"] == pytest.approx(per_repeat[0])
    assert summary["first"]["accuracy"]["successes"] == int(
        (first["y_true"] == first["y_pred"]).sum()
    )
    assert summary["first"]["roc_auc"]["value"] == pytest.approx(
        roc_auc_score(first["y_true"], first["probability"])
    )
    assert "consensus" not in summary
    json.dumps(summary, allow_nan=False)
    # The first repeat in sorted order, whatever the row order of the table.
    reordered = aggregate_repeats(predictions.iloc[::-1].reset_index(drop=True))
    assert reordered["first"]["accuracy"]["value"] == pytest.approx(per_repeat[0])
    duplicated = pd.concat([predictions, predictions.iloc[:1]])
    with pytest.raises(ValueError, match="more than once"):
        aggregate_repeats(duplicated)


def test_ensemble_probability_is_the_mean():
    first, second = np.array([0.2, 0.9, 0.4]), np.array([0.6, 0.7, 0.4])
    np.testing.assert_allclose(ensemble_probability([first, second]), [0.4, 0.8, 0.4])
    with pytest.raises(ValueError, match="same length"):
        ensemble_probability([first, second[:2]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ensemble_probability([first, second + 0.5])
