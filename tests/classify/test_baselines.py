"""Linear baselines: equal to scikit-learn on the voxels; permutation test of the whole CV."""

from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pytest
from scipy.special import expit
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from rsxai.classify import LinearBaseline, baselines, permutation_scores
from rsxai.classify import _baseline_solver as baseline_solver
from rsxai.classify.baseline_permutations import within_fold_permutations


def _maps(n_per_group=18, n_voxels=300, effect=0.0, seed=0):
    """Maps with voxel-specific offsets and scales, a constant voxel, and a planted effect."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_group)
    X = rng.normal(size=(y.size, n_voxels)) * rng.uniform(0.5, 3.0, n_voxels)
    X += rng.normal(0, 5, n_voxels)
    X[:, :30] += effect * y[:, None]
    X[:, -1] = 7.0  # constant over subjects: standardised to 0, not counted in the C unit
    return X, y


def _sklearn_estimator(kind: str, C: float):
    if kind == "svm":
        return LinearSVC(C=C, tol=1e-10, max_iter=100_000)
    return LogisticRegression(C=C, solver="liblinear", tol=1e-10, max_iter=100_000)


@pytest.mark.parametrize("kind", ["svm", "logistic"])
@pytest.mark.parametrize("relative_C", [1e-2, 10.0])
def test_equals_sklearn_pipeline_on_all_voxels_at_fixed_C(kind, relative_C):
    X, y = _maps(effect=0.8)
    X_new = np.random.default_rng(5).normal(size=(10, X.shape[1])) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LinearBaseline(kind, Cs=(relative_C,)).fit(X, y)
    # The C unit is the number of non-constant voxels.
    assert np.isclose(model.C_, relative_C / (X.shape[1] - 1), rtol=1e-12, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = make_pipeline(StandardScaler(), _sklearn_estimator(kind, model.C_)).fit(X, y)
    expected = reference.decision_function(X_new)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(model.decision_function(X_new), expected, atol=1e-6 * scale)
    np.testing.assert_array_equal(model.predict(X_new), reference.predict(X_new))
    assert model.coef_.shape == (X.shape[1],)
    weights = reference[-1].coef_[0]
    np.testing.assert_allclose(model.coef_, weights, atol=1e-6 * np.abs(weights).max())
    assert model.intercept_ == pytest.approx(reference[-1].intercept_[0], abs=1e-6 * scale)
    assert model.coef_[-1] == 0.0


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_inner_cv_choice_equals_gridsearch_on_training_standardised_maps(kind):
    X, y = _maps(effect=0.5, seed=1)
    model = LinearBaseline(kind, inner_cv=4, random_state=3).fit(X, y)
    grid = np.asarray(baselines.DEFAULT_CS) / (X.shape[1] - 1)
    search = GridSearchCV(
        _sklearn_estimator(kind, 1.0),
        {"C": grid},
        cv=StratifiedKFold(4, shuffle=True, random_state=3),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # The scaler is fitted on the training subjects only, outside the inner CV.
        reference = make_pipeline(StandardScaler(), search).fit(X, y)
    np.testing.assert_allclose(
        model.cv_scores_.mean(axis=1), search.cv_results_["mean_test_score"]
    )
    assert np.isclose(model.C_, search.best_params_["C"], rtol=1e-12, atol=0)
    assert model.cv_scores_.std() > 0  # the choice was not a tie everywhere
    X_new = np.random.default_rng(9).normal(size=(12, X.shape[1])) * 3
    np.testing.assert_array_equal(model.predict(X_new), reference.predict(X_new))


def test_predict_proba():
    X, y = _maps(effect=0.6, seed=2)
    X_new = np.random.default_rng(1).normal(size=(15, X.shape[1])) * 3
    logistic = LinearBaseline("logistic").fit(X, y)
    probability = logistic.predict_proba(X_new)
    np.testing.assert_allclose(probability[:, 1], expit(logistic.decision_function(X_new)))
    np.testing.assert_allclose(probability.sum(axis=1), 1.0)
    svm = LinearBaseline("svm").fit(X, y)
    slope, _ = svm.platt_
    assert slope > 0
    order = np.argsort(svm.decision_function(X_new))
    assert np.all(np.diff(svm.predict_proba(X_new)[order, 1]) >= 0)


def test_invalid_input_is_refused_with_the_parameter_named():
    X, y = _maps(n_per_group=4)
    with pytest.raises(ValueError, match="kind must be one of"):
        LinearBaseline("ridge").fit(X, y)
    with pytest.raises(ValueError, match="Cs must be"):
        LinearBaseline(Cs=(1.0, -1.0)).fit(X, y)
    with pytest.raises(ValueError, match="inner_cv=5 needs at least 5"):
        LinearBaseline().fit(X, y)
    with pytest.raises(ValueError, match="exactly two classes"):
        LinearBaseline(inner_cv=2).fit(X, np.zeros(8))
    with pytest.raises(Exception, match="not fitted"):
        LinearBaseline().predict(X)


def test_inner_folds_shortcut_equals_stratified_kfold():
    rng = np.random.default_rng(0)
    for m, n_positive in ((27, 13), (54, 30), (31, 9)):
        base = np.where(np.arange(m) < n_positive, 1.0, -1.0)
        labels = np.stack([rng.permutation(base) for _ in range(40)])
        with mock.patch.object(
            baseline_solver, "_stratified_test_folds", wraps=baseline_solver._stratified_test_folds
        ) as splitter:
            folds = baseline_solver._inner_test_folds(labels, 5, 7)
        assert splitter.call_count == 3  # two canonical orders and the check, not 40
        for row, test_fold in zip(labels, folds, strict=True):
            splits = StratifiedKFold(5, shuffle=True, random_state=7).split(row, row)
            for k, (_, held_out) in enumerate(splits):
                np.testing.assert_array_equal(np.flatnonzero(test_fold == k), held_out)


def test_within_fold_permutations_keep_each_fold_class_counts():
    y = np.repeat([0, 1], 10)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(y, y))
    orders = within_fold_permutations(folds, 20, 30, seed=1)
    assert orders.shape == (31, 20)
    np.testing.assert_array_equal(orders[0], np.arange(20))
    assert len({tuple(order) for order in orders[1:]}) > 25
    for order in orders[1:]:
        for _, test in folds:
            assert set(order[test]) == set(test)  # subjects only trade places within a fold
            assert y[order[test]].sum() == y[test].sum()
    with pytest.raises(ValueError, match="in no test set"):
        within_fold_permutations(folds[:3], 20, 5)
    with pytest.raises(ValueError, match="more than one test set"):
        within_fold_permutations([*folds, folds[0]], 20, 5)


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_permutation_path_equals_refitting_the_estimator(kind):
    X, y = _maps(n_per_group=15, n_voxels=200, effect=0.6, seed=3)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    estimator = LinearBaseline(kind, inner_cv=3)
    result = permutation_scores(estimator, X, y, folds, n_permutations=9, seed=4)
    orders = within_fold_permutations(folds, y.size, 9, seed=4)
    for index in (0, 6):  # observed labels, then one permutation
        labels = y[orders[index]]
        decision = np.empty(y.size)
        for train, test in folds:
            fitted = clone(estimator).fit(X[train], labels[train])
            decision[test] = fitted.decision_function(X[test])
        accuracy = np.mean((decision > 0) == (labels == 1))
        if index == 0:
            np.testing.assert_allclose(result["decision"], decision, atol=1e-9)
            np.testing.assert_array_equal(result["prediction"], (decision > 0).astype(int))
            assert result["observed"]["accuracy"] == pytest.approx(accuracy)
        else:
            assert result["null"]["accuracy"][index - 1] == pytest.approx(accuracy)


def test_null_is_at_chance_on_noise_and_a_planted_effect_is_significant():
    estimator = LinearBaseline("svm", inner_cv=3)
    X, y = _maps(n_per_group=20, n_voxels=200, effect=0.0, seed=11)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    noise = permutation_scores(estimator, X, y, folds, n_permutations=49)
    assert abs(noise["null"]["accuracy"].mean() - 0.5) < 0.05
    assert abs(noise["null"]["balanced_accuracy"].mean() - 0.5) < 0.05
    assert noise["p_value"]["accuracy"] > 0.05
    X, y = _maps(n_per_group=20, n_voxels=200, effect=1.0, seed=11)
    signal = permutation_scores(estimator, X, y, folds, n_permutations=49, n_jobs=2)
    assert signal["observed"]["accuracy"] > 0.75
    assert 1 / 50 <= signal["p_value"]["accuracy"] < 0.05  # significant, never 0
    # The worker count changes nothing.
    again = permutation_scores(estimator, X, y, folds, n_permutations=49, n_jobs=1)
    np.testing.assert_array_equal(again["null"]["accuracy"], signal["null"]["accuracy"])


def test_per_fold_features_equal_refitting_on_each_folds_own_maps():
    X, y = _maps(n_per_group=15, n_voxels=120, effect=0.6, seed=5)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    rng = np.random.default_rng(0)
    # Each fold sees its own version of the maps (as after a per-fold group ICA).
    fold_X = [X + 0.3 * rng.normal(size=X.shape) for _ in folds]
    estimator = LinearBaseline("svm", inner_cv=3)
    result = permutation_scores(estimator, fold_X, y, folds, n_permutations=5, seed=1)
    decision = np.empty(y.size)
    for (train, test), maps in zip(folds, fold_X, strict=True):
        decision[test] = clone(estimator).fit(maps[train], y[train]).decision_function(maps[test])
    np.testing.assert_allclose(result["decision"], decision, atol=1e-9)
    with pytest.raises(ValueError, match="feature matrices"):
        permutation_scores(estimator, fold_X[:2], y, folds, n_permutations=5)
