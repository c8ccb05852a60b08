"""The screened baseline: smoothing in the mask, t-test screening in the fold, logit on 2 means."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.utils.estimator_checks import check_get_params_invariance, check_set_params

from rsxai.classify import (
    LinearBaseline,
    ScreenedBaseline,
    cross_validate,
    make_splits,
    screened_permutation_scores,
    smooth_maps,
)
from rsxai.grid import Grid

GRID = Grid.mni(8)  # 3,666 voxels of 8 mm
COORDS = np.argwhere(GRID.mask)


def _planted(seed, effect=1.0, n_per_group=20):
    """White-noise maps with a local difference: a 31-voxel ball raised in group 1."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_group)
    X = rng.standard_normal((y.size, GRID.n_voxels))
    blob = np.linalg.norm(COORDS - COORDS.mean(axis=0) - [4, 0, 2], axis=1) <= 2.0
    X[np.ix_(y == 1, blob)] += effect
    return X, y, blob


def _screened(**params):
    return ScreenedBaseline(GRID.mask, GRID.voxel_size, **params)


class GivenMaps(BaseEstimator):
    """A feature step that returns the given maps (n_subjects, 1, n_voxels)."""

    def __init__(self, maps=None):
        self.maps = maps

    def fit(self, subjects):
        self.network_components_ = {"net": 0}
        return self

    def transform(self, subjects):
        return self.maps[np.asarray(subjects), None]


# ----------------------------------------------------------------------------- smoothing
def test_smoothing_is_the_mask_normalised_gaussian_in_mm():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, GRID.n_voxels))
    smoothed = smooth_maps(X, GRID.mask, GRID.voxel_size, 12.0)
    # sigma = FWHM / 2.3548 in voxels of 8 mm, over the whole volume (no bounding box).
    sigma = 12.0 / (2 * np.sqrt(2 * np.log(2))) / 8.0
    weight = gaussian_filter(GRID.mask.astype(float), sigma, mode="constant")
    for row, result in zip(X, smoothed, strict=True):
        volume = gaussian_filter(
            GRID.to_img(row[None]).get_fdata()[..., 0], sigma, mode="constant"
        )
        np.testing.assert_allclose(result, volume[GRID.mask] / weight[GRID.mask], atol=1e-6)
    # A constant map stays constant up to the mask's edge: outside voxels count as missing.
    flat = smooth_maps(np.full((1, GRID.n_voxels), 3.0), GRID.mask, GRID.voxel_size, 12.0)
    np.testing.assert_allclose(flat, 3.0)
    assert smooth_maps(X, GRID.mask, GRID.voxel_size, 12.0).std() < X.std() / 2


def test_each_map_is_smoothed_on_its_own():
    """No row of X enters another's smoothing, across batches too (bitwise)."""
    X = np.random.default_rng(1).standard_normal((40, GRID.n_voxels))
    together = smooth_maps(X, GRID.mask, GRID.voxel_size, 8.0)
    for i in (0, 17, 39):
        alone = smooth_maps(X[i : i + 1], GRID.mask, GRID.voxel_size, 8.0)
        np.testing.assert_array_equal(together[i], alone[0])


def test_smoothing_needs_the_mask_and_voxel_size():
    X, y, _ = _planted(0)
    with pytest.raises(
        ValueError, match=r"smoothing_fwhm=8\.0 needs the brain mask and the voxel"
    ):
        ScreenedBaseline().fit(X, y)
    with pytest.raises(ValueError, match="mask has 3666 voxels"):
        _screened().fit(X[:, :100], y)
    with pytest.raises(ValueError, match="n_voxels must be an integer >= 1; got 0"):
        _screened(n_voxels=0).fit(X, y)


# ----------------------------------------------------------------------------- planted effect
def test_finds_a_small_local_effect_that_the_whole_brain_baseline_misses():
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    screened, whole_brain = [], []
    for seed in range(3):
        X, y, blob = _planted(seed)
        screened.append(cross_val_score(_screened(), X, y, cv=cv).mean())
        whole_brain.append(
            cross_val_score(LinearBaseline("logistic", inner_cv=3), X, y, cv=cv).mean()
        )
        # The most positive voxels of the whole cohort lie in the ball (0.8 % of the brain).
        model = _screened(n_voxels=15).fit(X, y)
        assert blob[model.selected_[0]].mean() >= 0.8
        assert not blob[model.selected_[1]].any()
        assert model.t_[blob].mean() > 2 and model.t_.shape == (GRID.n_voxels,)
    # Measured: 0.88, 0.90, 0.82 against 0.57, 0.78, 0.65.
    assert min(screened) >= 0.75
    assert np.mean(screened) - np.mean(whole_brain) >= 0.1


def test_null_accuracy_is_at_chance_and_p_values_are_not_small():
    accuracies, p_values = [], []
    for seed in range(8):
        X, y, _ = _planted(100 + seed, effect=0.0)
        folds = [(s.train, s.test) for s in make_splits(y, n_splits=5, random_state=seed)]
        result = screened_permutation_scores(
            _screened(), [X] * len(folds), y, folds, n_permutations=19, seed=seed
        )
        accuracies.append(result["observed"]["accuracy"])
        p_values.append(result["p_value"]["accuracy"])
        assert result["null"]["accuracy"].shape == (19,)
    assert abs(np.mean(accuracies) - 0.5) < 0.1
    # p <= 0.05 is 1 of 20 possible values here: expected in 0.4 of 8 nulls.
    assert sum(p <= 0.05 for p in p_values) <= 2
    assert np.mean(p_values) > 0.3


def test_permutation_p_is_small_on_the_planted_effect():
    X, y, _ = _planted(0)
    folds = [(s.train, s.test) for s in make_splits(y, n_splits=5, random_state=0)]
    result = screened_permutation_scores(
        _screened(), [X] * len(folds), y, folds, n_permutations=19, seed=0
    )
    assert result["observed"]["accuracy"] >= 0.75
    assert result["p_value"]["accuracy"] == pytest.approx(1 / 20)


# ----------------------------------------------------------------------------- no leak
def test_screening_reads_the_training_rows_only():
    """Held-out rows with a huge planted difference change no fold's model."""
    X, y, blob = _planted(2, effect=0.0)
    splits = make_splits(y, n_splits=4, random_state=0)
    kwargs = {"n_splits": 4, "cv_scope": "cohort", "keep_models": ("screened",)}
    models = {"screened": _screened()}
    clean = cross_validate(GivenMaps(X), list(range(y.size)), y, models, **kwargs)
    for split in splits:
        poisoned = X.copy()
        # This fold's test rows carry a huge label-aligned difference outside the ball.
        poisoned[np.ix_(split.test, ~blob)] += 50.0 * y[split.test, None]
        result = cross_validate(GivenMaps(poisoned), list(range(y.size)), y, models, **kwargs)
        before = clean.fold_models[("net", "screened", 0, split.fold)]
        after = result.fold_models[("net", "screened", 0, split.fold)]
        np.testing.assert_array_equal(before.t_, after.t_)
        np.testing.assert_array_equal(before.selected_, after.selected_)
        np.testing.assert_array_equal(before.classifier_[-1].coef_, after.classifier_[-1].coef_)
        # Every other fold trains on those rows, and its screening sees them.
        other = (split.fold + 1) % 4
        assert not np.array_equal(
            clean.fold_models[("net", "screened", 0, other)].t_,
            result.fold_models[("net", "screened", 0, other)].t_,
        )


def test_smoothing_once_before_the_folds_gives_the_fits_of_smoothing_inside():
    """The permutation test's shortcut: its observed row is the reported cross-validation."""
    X, y, _ = _planted(1, effect=0.7)
    cv = cross_validate(
        GivenMaps(X), list(range(y.size)), y, {"screened": _screened()}, n_splits=5
    )
    splits = [s for s in cv.splits if s.repeat == 0]
    folds = [(s.train, s.test) for s in splits]
    result = screened_permutation_scores(
        _screened(), [X] * len(folds), y, folds, n_permutations=3, seed=0
    )
    reported = cv.predictions.query("network == 'net'").set_index("subject")["y_pred"]
    np.testing.assert_array_equal(
        result["prediction"], reported.loc[[str(i) for i in range(y.size)]]
    )
    direct = np.empty_like(y)
    for train, test in folds:
        direct[test] = _screened().fit(X[train], y[train]).predict(X[test])
    np.testing.assert_array_equal(result["prediction"], direct)


# ----------------------------------------------------------------------------- API
def test_clone_and_params_round_trip():
    model = _screened(smoothing_fwhm=10.0, n_voxels=20, C=0.5)
    params = model.get_params()
    assert params["smoothing_fwhm"] == 10.0 and params["n_voxels"] == 20 and params["C"] == 0.5
    twin = clone(model)
    assert twin.mask is not model.mask
    np.testing.assert_array_equal(twin.mask, model.mask)
    check_get_params_invariance("ScreenedBaseline", model)
    check_set_params("ScreenedBaseline", model)
    X, y, _ = _planted(0)
    a, b = model.fit(X, y), twin.fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_predictions_follow_the_decision_and_probabilities():
    X, y, _ = _planted(0, effect=0.5)
    model = _screened().fit(X[::2], y[::2])
    decision = model.decision_function(X[1::2])
    probability = model.predict_proba(X[1::2])
    np.testing.assert_allclose(probability.sum(axis=1), 1.0)
    np.testing.assert_array_equal(
        model.predict(X[1::2]), model.classes_[(decision > 0).astype(int)]
    )
    np.testing.assert_array_equal(probability[:, 1] > 0.5, decision > 0)
    assert model.selected_.shape == (2, 50) and model.voxel_mean_.shape == (2, 50)
