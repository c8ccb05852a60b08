"""Cross-validation: folds, leak-free fold scope, transductive cohort scope, ensembles."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from rsxai.classify import (
    ENSEMBLE_RULE,
    LinearBaseline,
    cross_validate,
    ensemble_predictions,
    fold_random_state,
    make_splits,
    permutation_scores,
    refit_permutation_scores,
)
from rsxai.cnn import CNNClassifier
from rsxai.exceptions import InputError


class SpyFeatures(BaseEstimator):
    """A group feature step that records whom it was fitted on.

    ``fit`` learns the mean of the fitted subjects' time-averaged data, and
    ``transform`` returns each subject's time average minus that mean, so a
    subject's features depend on which subjects the step was fitted with.
    """

    fitted_on: list

    def __init__(self, networks=("net",)):
        self.networks = networks
        self.fitted_on = []

    def __sklearn_clone__(self):
        # cross_validate clones the step per fold; the clones share the record.
        twin = super().__sklearn_clone__()
        twin.fitted_on = self.fitted_on
        return twin

    def fit(self, subjects):
        self.fitted_on.append([id(s) for s in subjects])
        self.mean_ = np.mean([s.mean(axis=0) for s in subjects], axis=0)
        self.network_components_ = {name: k for k, name in enumerate(self.networks)}
        return self

    def transform(self, subjects):
        maps = np.stack([s.mean(axis=0) - self.mean_ for s in subjects])
        return np.repeat(maps[:, None, :], len(self.networks), axis=1)


def _cohort(n_per_group=20, n_voxels=30, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_group)
    pattern = np.zeros(n_voxels)
    pattern[:5] = signal
    subjects = [rng.normal(size=(8, n_voxels)) + label * pattern for label in y]
    return subjects, y


def test_make_splits_partition_each_repeat_and_stratify():
    y = np.repeat([0, 1], [12, 18])
    splits = make_splits(y, n_splits=6, n_repeats=2, random_state=3)
    assert len(splits) == 12
    for repeat in (0, 1):
        tests = np.concatenate([s.test for s in splits if s.repeat == repeat])
        assert np.array_equal(np.sort(tests), np.arange(30))
    for split in splits:
        assert np.intersect1d(split.train, split.test).size == 0
        assert np.bincount(y[split.test]).tolist() == [2, 3]
    first = [s.test.tolist() for s in splits if s.repeat == 0]
    second = [s.test.tolist() for s in splits if s.repeat == 1]
    assert first != second  # another shuffle per repeat
    loo = make_splits(y, scheme="loo")
    assert len(loo) == 30 and all(s.test.size == 1 for s in loo)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_splits": 13}, "cv_folds"), ({"scheme": "bootstrap"}, "cv_scheme")],
)
def test_make_splits_rejects_bad_options(kwargs, message):
    with pytest.raises(InputError, match=message):
        make_splits(np.repeat([0, 1], 12), **kwargs)


def test_fold_scope_never_fits_the_feature_step_on_held_out_subjects():
    subjects, y = _cohort()
    spy = SpyFeatures()
    record: list = []
    spy.fitted_on = record
    result = cross_validate(
        spy, subjects, y, {"logistic": LogisticRegression()}, n_splits=5, cv_scope="fold"
    )
    assert len(record) == 5
    for split, fitted in zip(result.splits, record, strict=True):
        held_out = {id(subjects[i]) for i in split.test}
        assert held_out.isdisjoint(fitted)
        assert set(fitted) == {id(subjects[i]) for i in split.train}


def test_cohort_scope_fits_once_on_everyone():
    subjects, y = _cohort()
    record: list = []
    spy = SpyFeatures()
    spy.fitted_on = record
    cross_validate(
        spy, subjects, y, {"logistic": LogisticRegression()}, n_splits=5, cv_scope="cohort"
    )
    assert len(record) == 1 and set(record[0]) == {id(s) for s in subjects}


@pytest.mark.parametrize("cv_scope", ["fold", "cohort"])
def test_held_out_subject_cannot_change_its_folds_model_in_fold_scope(cv_scope):
    """Leakage guard: replace one held-out subject by a wild artefact.

    In fold scope nothing of that subject reaches its fold's training, so the
    predictions of the other subjects tested in that fold are unchanged. In
    cohort scope the artefact moves the group step and so every feature.
    """
    subjects, y = _cohort(signal=0.7)
    models = {"logistic": LogisticRegression()}
    kwargs = {"n_splits": 5, "cv_scope": cv_scope, "random_state": 1}
    before = cross_validate(SpyFeatures(), subjects, y, models, **kwargs)
    split = before.splits[0]
    victim = int(split.test[0])
    altered = list(subjects)
    altered[victim] = subjects[victim] + 25.0 * np.sign(np.arange(30) - 14.5)
    after = cross_validate(SpyFeatures(), altered, y, models, **kwargs)

    def fold_probabilities(result):
        table = result.predictions.query("fold == 0 and network == 'net'")
        return table.set_index("subject")["probability"].drop(str(victim))

    same = np.allclose(fold_probabilities(before), fold_probabilities(after))
    assert same is (cv_scope == "fold")


def test_planted_signal_is_found_and_noise_is_not():
    subjects, y = _cohort(signal=1.0, seed=2)
    found = cross_validate(SpyFeatures(), subjects, y, {"logistic": LogisticRegression()})
    accuracy = (found.predictions["y_pred"] == found.predictions["y_true"]).mean()
    assert accuracy >= 0.85
    accuracies = []
    for seed in range(4):
        subjects, y = _cohort(signal=0.0, seed=10 + seed)
        null = cross_validate(SpyFeatures(), subjects, y, {"logistic": LogisticRegression()})
        accuracies.append((null.predictions["y_pred"] == null.predictions["y_true"]).mean())
    assert 0.3 <= np.mean(accuracies) <= 0.7


def test_outputs_are_complete_and_deterministic():
    subjects, y = _cohort()
    models = {"logistic": LogisticRegression()}
    kwargs = {"n_splits": 4, "n_repeats": 2, "subject_labels": [f"s{i}" for i in range(40)]}
    first = cross_validate(SpyFeatures(("a", "b")), subjects, y, models, **kwargs)
    second = cross_validate(SpyFeatures(("a", "b")), subjects, y, models, **kwargs)
    assert first.predictions.equals(second.predictions)
    table = first.predictions
    assert set(table["network"]) == {"a", "b", "ensemble"}
    # one prediction per subject, network and repeat
    counts = table.groupby(["network", "repeat"])["subject"].nunique()
    assert (counts == 40).all()
    assert set(first.heldout_maps) == {"a", "b"}
    assert first.heldout_maps["a"].shape == (40, 30)


def test_ensemble_is_the_mean_probability_over_networks():
    subjects, y = _cohort()
    result = cross_validate(
        SpyFeatures(("a", "b")), subjects, y, {"logistic": LogisticRegression()}, n_splits=4
    )
    table = result.predictions
    networks = table[table["network"] != "ensemble"]
    mean = networks.groupby("subject")["probability"].mean()
    ensemble = table[table["network"] == "ensemble"].set_index("subject")["probability"]
    np.testing.assert_allclose(ensemble.loc[mean.index], mean)
    assert ensemble_predictions(networks[networks["network"] == "a"]).empty


class GivenMaps(BaseEstimator):
    """A feature step that returns the given maps (n_subjects, n_networks, n_voxels)."""

    def __init__(self, maps=None):
        self.maps = maps

    def fit(self, subjects):
        self.network_components_ = {f"n{k}": k for k in range(self.maps.shape[1])}
        return self

    def transform(self, subjects):
        return self.maps[np.asarray(subjects)]


def _weak_maps(seed=2):
    """Two networks of 24 subjects with a weak effect: Platt and decision disagree there."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 12)
    maps = rng.normal(size=(y.size, 2, 80))
    maps[:, :, :10] += 0.4 * y[:, None, None]
    return maps, y


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_reported_predictions_are_the_labels_the_permutation_tests_score(kind):
    """y_pred is the model's predict (decision > 0), the rule of both permutation routes."""
    maps, y = _weak_maps()
    estimator = LinearBaseline(kind, inner_cv=3)
    result = cross_validate(
        GivenMaps(maps), list(range(y.size)), y, {kind: estimator}, n_splits=4, random_state=2
    )
    table = result.predictions
    rows = table[table["network"] == "n0"].set_index("subject").loc[[str(i) for i in range(24)]]
    says_patient = rows["y_pred"].to_numpy() == 1
    if kind == "svm":
        # The case that matters: Platt probability and decision value disagree here.
        assert np.any((rows["probability"].to_numpy() >= 0.5) != says_patient)
    folds = [(split.train, split.test) for split in result.splits]
    seeds = [fold_random_state(2, split) for split in result.splits]
    fast = permutation_scores(
        estimator, maps[:, 0], y, folds, n_permutations=3, fold_random_states=seeds
    )
    np.testing.assert_array_equal(fast["prediction"], rows["y_pred"].to_numpy())
    np.testing.assert_array_equal(fast["decision"] > 0, says_patient)
    reported = np.mean(rows["y_pred"].to_numpy() == y)
    assert fast["observed"]["accuracy"] == pytest.approx(reported, abs=1e-12)
    refit = refit_permutation_scores(
        estimator, [maps[:, 0]] * 4, y, folds, n_permutations=1, fold_random_states=seeds
    )
    np.testing.assert_array_equal(refit["prediction"], rows["y_pred"].to_numpy())
    assert refit["observed"]["accuracy"] == pytest.approx(reported, abs=1e-12)
    with pytest.raises(ValueError, match="fold_random_states must hold one"):
        permutation_scores(estimator, maps[:, 0], y, folds, fold_random_states=seeds[:2])


def test_ensemble_labels_by_mean_probability_not_by_the_networks_labels():
    maps, y = _weak_maps()
    result = cross_validate(
        GivenMaps(maps), list(range(y.size)), y, {"svm": LinearBaseline(inner_cv=3)}, n_splits=4
    )
    table = result.predictions
    ensemble = table[table["network"] == "ensemble"].set_index("subject")
    np.testing.assert_array_equal(ensemble["y_pred"], (ensemble["probability"] >= 0.5))
    assert "mean patient probability" in ENSEMBLE_RULE and ">= 0.5" in ENSEMBLE_RULE
    # Both networks say one thing by their decision values, the mean Platt probability
    # the other: the ensemble follows the probability (its documented rule).
    votes = table[table["network"] != "ensemble"].groupby("subject")["y_pred"].mean()
    unanimous = votes.loc[ensemble.index].isin([0.0, 1.0])
    overruled = unanimous & (votes.loc[ensemble.index] != ensemble["y_pred"])
    assert overruled.any()


def test_refit_permutation_null_is_at_chance_on_noise_and_rejects_a_planted_signal():
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 15)
    folds = [(s.train, s.test) for s in make_splits(y, n_splits=5, random_state=0)]
    noise = rng.normal(size=(30, 20))
    null = refit_permutation_scores(
        LogisticRegression(), [noise] * 5, y, folds, n_permutations=39, seed=1
    )
    assert abs(null["null"]["accuracy"].mean() - 0.5) < 0.1
    assert null["p_value"]["accuracy"] > 0.05
    planted = noise.copy()
    planted[:, :4] += 2.0 * y[:, None]
    found = refit_permutation_scores(
        LogisticRegression(), [planted] * 5, y, folds, n_permutations=39, seed=1
    )
    assert found["observed"]["accuracy"] > 0.8
    assert found["p_value"]["accuracy"] == pytest.approx(1 / 40)  # never 0
    # The observed labels are row 0: the observed score equals a plain CV.
    predicted = np.empty_like(y)
    for train, test in folds:
        predicted[test] = LogisticRegression().fit(planted[train], y[train]).predict(planted[test])
    assert found["observed"]["accuracy"] == pytest.approx(np.mean(predicted == y))


class FitProcess(LogisticRegression):
    """Logistic regression that records the process it was fitted in."""

    def fit(self, X, y):
        self.pid_ = os.getpid()
        return super().fit(X, y)


def test_parallel_folds_give_exactly_the_results_of_sequential_folds():
    """Folds in worker processes: the same predictions, maps, curves and progress calls."""
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[2:10, 2:10, 2:10] = True
    subjects, y = _cohort(n_per_group=8, n_voxels=int(mask.sum()), signal=0.8, seed=5)
    models = {
        "logistic": FitProcess(),
        "cnn": CNNClassifier(
            mask, n_blocks=1, width=4, max_epochs=2, batch_size=4, device="cpu", n_threads=1
        ),
    }
    kwargs = {"n_splits": 4, "n_repeats": 2, "keep_fold_maps": True, "random_state": 2}
    results, calls = {}, {}
    for n_jobs in (1, 2):
        calls[n_jobs] = []

        def log(split, network, model, seconds, record=calls[n_jobs]):
            record.append((split.repeat, split.fold, network, model))

        results[n_jobs] = cross_validate(
            SpyFeatures(("a", "b")),
            subjects,
            y,
            models,
            keep_models=("cnn", "logistic"),
            on_fold=log,
            n_jobs=n_jobs,
            **kwargs,
        )
    sequential, parallel = results[1], results[2]
    pd.testing.assert_frame_equal(sequential.predictions, parallel.predictions, check_exact=True)
    assert set(parallel.predictions["model"]) == {"logistic", "cnn"}
    pd.testing.assert_frame_equal(sequential.training, parallel.training, check_exact=True)
    assert not parallel.training.empty  # the CNN's curves came back from the workers
    for network in ("a", "b"):
        assert np.array_equal(sequential.heldout_maps[network], parallel.heldout_maps[network])
    assert sequential.fold_maps.keys() == parallel.fold_maps.keys()
    for key, maps in sequential.fold_maps.items():
        assert np.array_equal(maps, parallel.fold_maps[key])
    assert calls[1] == calls[2] and len(calls[1]) == 8 * 2 * 2
    # The work did run elsewhere, and sequentially it did not.
    pids = {m.pid_ for (_, name, _, _), m in parallel.fold_models.items() if name == "logistic"}
    assert os.getpid() not in pids
    assert {m.pid_ for m in sequential.fold_models.values() if hasattr(m, "pid_")} == {os.getpid()}
    # Kept CNNs trained in workers predict here exactly as those trained here.
    key = ("a", "cnn", 1, 3)
    X = sequential.fold_maps[(1, 3)][:, 0]
    assert np.array_equal(
        sequential.fold_models[key].predict_proba(X), parallel.fold_models[key].predict_proba(X)
    )
