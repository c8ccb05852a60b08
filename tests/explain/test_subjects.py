"""Tests for rsxai.explain (subjects, fold checks): held-out maps, group maps and their checks.

A linear probe (a model whose saliency is exactly its weights) checks the
bookkeeping against ground truth: which fold model explains which subject,
which class is explained, where the map lands in world space. Small CNNs
trained on a planted effect check that the maps find it.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import stats

from rsxai.cnn import CNNClassifier, crop_box
from rsxai.explain import AttributionSettings, explain_subjects, group_results, heldout_predictions
from rsxai.explain.fold_checks import faithfulness_curves, randomisation_checks
from rsxai.explain.subjects import target_labels
from rsxai.grid import Grid
from tests.fixtures.explain import (
    CNN_PARAMS,
    LEFT_MM,
    RIGHT_MM,
    blob_at,
    ellipsoid_mask,
    fold_models,
    mni_like_affine,
    planted_cohort,
    probe_classifier,
)

FEW_SAMPLES = AttributionSettings(smoothgrad_samples=4, ig_steps=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def grid():
    return Grid(ellipsoid_mask(), mni_like_affine())


@pytest.fixture(scope="module")
def planted(grid):
    """A left-hemisphere effect learned by two fold CNNs."""
    X, y, blob = planted_cohort(grid, 64, 3.0, LEFT_MM, seed=0)
    fold_of = np.arange(len(y)) % 4 // 2
    models = fold_models(grid.mask, X, y, fold_of)
    return X, y, blob, fold_of, models


# ---------------------------------------------------------------- bookkeeping


@pytest.mark.parametrize("flip_x", [False, True])
def test_map_of_a_lateralised_model_lands_on_its_hemisphere(tmp_path, flip_x):
    grid = Grid(ellipsoid_mask(), mni_like_affine(flip_x=flip_x))
    weights = blob_at(grid, LEFT_MM, 6.0)
    models = {0: probe_classifier(grid.mask, weights), 1: probe_classifier(grid.mask, weights)}
    X = np.random.default_rng(0).normal(size=(6, grid.n_voxels))
    maps = explain_subjects(
        models, X, np.arange(6) % 2, methods=["saliency"], targets=["patient"]
    )["saliency"]["patient"]
    # The probe's saliency is |weights| (its inputs are z-scored maps, a linear
    # function of X, but the gradient is taken with respect to the volume).
    np.testing.assert_allclose(maps, np.tile(weights, (6, 1)), rtol=1e-5, atol=1e-7)

    path = tmp_path / "relevance.nii.gz"
    nib.save(grid.to_img(maps), path)
    img = nib.load(path)
    assert img.shape == (*grid.shape, 6)
    np.testing.assert_allclose(img.affine, grid.affine)
    data = np.asarray(img.dataobj)[..., 0]
    peak = nib.affines.apply_affine(img.affine, np.unravel_index(np.argmax(data), data.shape))
    assert np.linalg.norm(peak - LEFT_MM) <= 4.0  # within one voxel of the planted place
    x_mm = nib.affines.apply_affine(img.affine, np.argwhere(np.ones(data.shape, bool)))[:, 0]
    values = data.ravel()
    assert values[x_mm < 0].sum() > 20 * values[x_mm > 0].sum()


def test_each_subject_is_explained_by_the_model_of_its_fold(grid):
    left, right = blob_at(grid, LEFT_MM, 6.0), blob_at(grid, RIGHT_MM, 6.0)
    models = {3: probe_classifier(grid.mask, left), 7: probe_classifier(grid.mask, right)}
    fold_of = np.array([3, 7, 7, 3, 7])
    X = np.random.default_rng(1).normal(size=(5, grid.n_voxels))
    maps = explain_subjects(models, X, fold_of, methods=["saliency"], targets=["patient"])
    expected = np.where((fold_of == 3)[:, None], left, right)
    np.testing.assert_allclose(maps["saliency"]["patient"], expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="no fold model for fold"):
        explain_subjects(models, X, np.array([3, 7, 7, 3, 9]), methods=["saliency"])


def test_predicted_and_patient_targets_differ_only_for_predicted_controls(grid):
    # The probe's control logit is the constant 0: its saliency is 0 everywhere,
    # while the patient logit's saliency is |weights|.
    weights = blob_at(grid, LEFT_MM, 6.0) - 0.5 * blob_at(grid, RIGHT_MM, 6.0)
    models = {0: probe_classifier(grid.mask, weights)}
    X = np.random.default_rng(2).normal(size=(12, grid.n_voxels))
    fold_of = np.zeros(12, dtype=int)
    predicted, probabilities = heldout_predictions(models, X, fold_of)
    score = models[0].decision_function(X)
    np.testing.assert_array_equal(predicted, (score > 0).astype(int))
    np.testing.assert_allclose(probabilities[:, 1], 1 / (1 + np.exp(-score)), rtol=1e-6)
    assert 0 < predicted.sum() < 12  # both classes are predicted

    maps = explain_subjects(models, X, fold_of, methods=["saliency", "gradcam"])
    saliency = maps["saliency"]
    np.testing.assert_allclose(saliency["patient"], np.tile(np.abs(weights), (12, 1)), rtol=1e-5)
    patients = predicted == 1
    np.testing.assert_array_equal(saliency["predicted"][patients], saliency["patient"][patients])
    assert np.all(saliency["predicted"][~patients] == 0)
    labels = target_labels(["predicted", "patient"], predicted)
    np.testing.assert_array_equal(labels["predicted"], predicted)
    assert np.all(labels["patient"] == 1)


def test_smoothgrad_map_of_a_subject_does_not_depend_on_the_others(planted):
    X, _, _, fold_of, models = planted
    chosen = [5, 2, 9]
    settings = AttributionSettings(smoothgrad_samples=3)
    options = {"methods": ["smoothgrad"], "settings": settings}
    whole = explain_subjects(models, X[:10], fold_of[:10], **options)
    part = explain_subjects(models, X[chosen], fold_of[chosen], subjects=chosen, **options)
    for target in ("predicted", "patient"):
        np.testing.assert_allclose(part["smoothgrad"][target], whole["smoothgrad"][target][chosen])
    other_seed = explain_subjects(models, X[:10], fold_of[:10], seed=1, **options)
    assert not np.allclose(other_seed["smoothgrad"]["patient"], whole["smoothgrad"]["patient"])


@pytest.mark.parametrize("check", ["explain_subjects", "randomisation_checks"])
def test_smoothgrad_noise_stays_inside_the_brain_mask(grid, check):
    # The inputs the model sees are recorded: SmoothGrad's noisy copies must be
    # zero outside the mask, as every map the CNN was trained on is.
    weights = blob_at(grid, LEFT_MM, 6.0)
    model = probe_classifier(grid.mask, weights)
    seen = []
    hook = model.model_.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    X = np.random.default_rng(0).normal(size=(3, grid.n_voxels))
    settings = AttributionSettings(smoothgrad_samples=4)
    try:
        if check == "explain_subjects":
            explain_subjects(
                {0: model}, X, np.zeros(3, int), methods=["smoothgrad"], settings=settings
            )
        else:
            randomisation_checks(
                model, X, ["smoothgrad"], label=1, subjects=[0, 1, 2], settings=settings
            )
    finally:
        hook.remove()
    outside = ~grid.mask[crop_box(grid.mask)]
    noisy = torch.cat(seen)[:, 0]
    assert len(noisy) >= 3 * 4 and outside.any()
    assert torch.all(noisy[:, torch.as_tensor(outside)] == 0)
    assert torch.all(noisy.std(dim=0)[torch.as_tensor(~outside)] > 0)  # noise inside


# ---------------------------------------------------------------- group level


def test_group_results_of_a_known_map_against_independent_formulas(grid):
    weights = blob_at(grid, LEFT_MM, 6.0)
    maps = np.tile(weights, (4, 1)) * np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    region = weights >= 0.5
    abs_t = weights + 0.01 * np.random.default_rng(3).random(grid.n_voxels)
    results = group_results(
        maps,
        np.array([True, True, False, True]),
        grid,
        abs_t=abs_t,
        significant=region,
        effect_region=region,
        top_fraction=0.05,
    )
    share = weights / weights.sum()
    np.testing.assert_allclose(results["group"]["meanall"], share, rtol=1e-6)
    by_map = {row["map"]: row for row in results["agreement"]}
    assert by_map["meanall"]["spearman"] == pytest.approx(stats.spearmanr(share, abs_t)[0])
    n_top = round(0.05 * grid.n_voxels)
    top = np.zeros(grid.n_voxels, bool)
    top[np.argsort(-share, kind="stable")[:n_top]] = True
    dice = 2 * (top & region).sum() / (n_top + region.sum())
    assert by_map["meancorrect"]["dice"] == pytest.approx(dice)
    levels = {row["level"]: row for row in results["localisation"]}
    inside = share[region].sum()
    for level in ("subjects", "meanall", "meancorrect"):
        assert levels[level]["mass_inside"] == pytest.approx(inside)
        assert levels[level]["mass_ratio"] == pytest.approx(inside / region.mean())
        assert levels[level]["pointing_game"] == 1.0
    regions = results["regions"]
    assert list(regions["rank"]) == list(range(1, len(regions) + 1))
    assert (np.diff(regions["mean_relative"]) <= 0).all()
    assert regions["relevance_share"].sum() <= 1 + 1e-9
    assert set(regions["map"]) == {"meancorrect"}
    assert regions["region"].str.startswith("Left").any()


def test_group_maps_put_relevance_on_the_planted_effect(planted, grid):
    X, y, blob, fold_of, models = planted
    predicted, _ = heldout_predictions(models, X, fold_of)
    assert np.mean(predicted == y) >= 0.75  # the CNNs learned the effect
    maps = explain_subjects(models, X, fold_of, targets=["patient"], settings=FEW_SAMPLES)
    region = blob >= 0.5
    ratios = {}
    for method, by_target in maps.items():
        results = group_results(by_target["patient"], predicted == y, grid, effect_region=region)
        levels = {row["level"]: row for row in results["localisation"]}
        ratios[method] = levels["meancorrect"]["mass_ratio"]
    # 1 is relevance spread without regard to the effect (measured: 1.76, 1.73, 2.98).
    assert ratios["saliency"] > 1.4 and ratios["smoothgrad"] > 1.4, ratios
    assert ratios["integrated_gradients"] > 2, ratios
    x_mm = grid.world_coordinates()[:, 0]
    for method in ("saliency", "smoothgrad", "integrated_gradients"):
        mean = np.abs(maps[method]["patient"]).mean(axis=0)
        assert mean[x_mm < -8].mean() > mean[x_mm > 8].mean(), method


# ---------------------------------------------------------------- sanity checks


def test_a_map_that_ignores_the_learned_weights_fails_the_cascading_check(grid):
    # The probe's learned weights are a buffer: re-initialising its one
    # convolution only rescales the saliency map, which keeps its ranks.
    weights = blob_at(grid, LEFT_MM, 6.0)
    probe = probe_classifier(grid.mask, weights)
    X = np.random.default_rng(4).normal(size=(3, grid.n_voxels))
    checks = randomisation_checks(probe, X, ["saliency"], label=1, subjects=[0, 1, 2])
    assert list(checks["check"]) == ["cascading"]
    assert checks["layer"].iloc[0] == "conv"
    assert checks["spearman"].iloc[0] == pytest.approx(1.0)
    assert checks["verdict"].iloc[0] == "fail"


def test_saliency_of_a_trained_cnn_passes_both_randomisation_checks(planted, grid):
    X, y, _, fold_of, models = planted
    model = models[0]
    before = {k: v.clone() for k, v in model.model_.state_dict().items()}
    test = np.flatnonzero(fold_of == 0)[:3]
    trained = explain_subjects(models, X[test], fold_of[test], methods=["saliency"],
                               targets=["patient"], subjects=test)  # fmt: skip
    checks = randomisation_checks(
        model,
        X[test],
        ["saliency"],
        trained_maps={"saliency": trained["saliency"]["patient"]},
        label=1,
        subjects=test,
        estimator=CNNClassifier(grid.mask, **CNN_PARAMS | {"max_epochs": 10}),
        train_maps=X[fold_of != 0],
        train_labels=y[fold_of != 0],
    )
    cascade = checks[checks["check"] == "cascading"]
    assert list(cascade["step"]) == list(range(1, len(cascade) + 1))
    assert cascade["layer"].iloc[0] == "head.fc"  # the output head goes first
    assert list(cascade["verdict"].iloc[:-1]) == [""] * (len(cascade) - 1)
    assert cascade["verdict"].iloc[-1] == "pass"
    label = checks[checks["check"] == "label"].iloc[0]
    assert label["spearman"] < 0.5 and label["verdict"] == "pass"
    for name, value in model.model_.state_dict().items():  # the fold model is untouched
        assert torch.equal(value, before[name]), name


# ---------------------------------------------------------------- faithfulness


def test_deleting_the_relevant_voxels_first_lowers_the_probability_faster(grid):
    weights = blob_at(grid, LEFT_MM, 6.0)
    # Small weights: the patient logit stays about 3, short of saturation.
    models = {0: probe_classifier(grid.mask, 0.05 * weights)}
    rng = np.random.default_rng(5)
    # Patients: the probe's region raised, so that the patient class is predicted.
    X = rng.normal(size=(6, grid.n_voxels)) + 3 * weights
    fold_of = np.zeros(6, dtype=int)
    predicted, _ = heldout_predictions(models, X, fold_of)
    assert predicted.all()
    relevance = {"saliency": {"predicted": np.tile(weights, (6, 1))}}
    curves = faithfulness_curves(
        models, X, fold_of, relevance, {"predicted": predicted}, steps=5, seed=0
    )
    assert set(curves["method"]) == {"saliency", "random"}
    assert set(curves["curve"]) == {"deletion", "insertion"}
    assert (curves["n_subjects"] == 6).all()
    areas = curves.drop_duplicates(["method", "curve"]).set_index(["method", "curve"])
    deletion, insertion = areas.loc[("saliency", "deletion")], areas.loc[("saliency", "insertion")]
    assert deletion["auc"] < deletion["auc_random"] - 0.1
    assert insertion["auc"] > insertion["auc_random"] + 0.1
    assert areas.loc[("random", "deletion"), "auc"] == pytest.approx(deletion["auc_random"])
    start = curves[(curves["method"] == "saliency") & (curves["fraction"] == 0)]
    first = start.set_index("curve")["probability"]
    assert 0.8 < first["deletion"] < 0.99 and first["insertion"] == pytest.approx(0.5)
