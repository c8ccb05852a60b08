"""Deletion and insertion curves against a model whose decision depends on one known region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsxai.explain import deletion_insertion

SHAPE = (8, 8, 8)


class RegionModel(torch.nn.Module):
    """Logit of class 1 rises with the mean input in ``region``; class 0 has logit 0."""

    def __init__(self, region: np.ndarray, single_output: bool = False):
        super().__init__()
        self.register_buffer("region", torch.from_numpy(region.astype(np.float32)))
        self.scale = torch.nn.Parameter(torch.tensor(4.0))
        # Random in train mode: curves must be computed in eval mode.
        self.dropout = torch.nn.Dropout(0.5)
        self.single_output = single_output

    def forward(self, x):
        inside = (x[:, 0] * self.region).sum(dim=(1, 2, 3)) / self.region.sum()
        logit = self.dropout(self.scale * (inside - 0.5))
        if self.single_output:
            return logit[:, None]
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setting():
    rng = np.random.default_rng(0)
    mask = np.zeros(SHAPE, bool)
    mask[1:7, 1:7, 1:7] = True  # 216 voxels
    region = np.zeros(SHAPE, bool)
    region[2:4, 2:4, 2:4] = True  # 8 voxels, inside the mask
    n = 6
    inputs = rng.uniform(0.0, 0.2, size=(n, 1, *SHAPE)).astype(np.float32)
    inputs[:, 0][:, region] = 1.0
    region_first = rng.random((n, *SHAPE)) * 0.1 + region  # region ranked first, no ties
    return RegionModel(region), inputs, region_first, mask, region


def class_one_probability(model, images):
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(images)), dim=1)[:, 1].double().numpy()


def test_region_first_map_deletes_faster_and_inserts_faster_than_random(setting):
    model, inputs, relevance, mask, _ = setting
    result = deletion_insertion(model, inputs, relevance, mask, target=1, steps=20)
    assert result["fractions"][0] == 0.0 and result["fractions"][-1] == 1.0
    assert result["deletion"].shape == (6, 21)
    assert (result["deletion_auc"] < result["deletion_random_auc"]).all()
    assert (result["insertion_auc"] > result["insertion_random_auc"]).all()
    assert result["mean_deletion_auc"] < 0.25 < 0.4 < result["mean_deletion_random_auc"]
    assert result["mean_insertion_auc"] > 0.75


def test_curve_end_points_and_a_middle_point_match_the_model_directly(setting):
    model, inputs, relevance, mask, _ = setting
    result = deletion_insertion(model, inputs, relevance, mask, target=1, steps=4)
    model.eval()
    original = class_one_probability(model, inputs)
    emptied = inputs.copy()
    emptied[:, 0][:, mask] = 0.0
    at_baseline = class_one_probability(model, emptied)
    for curve in ("deletion", "deletion_random"):
        np.testing.assert_allclose(result[curve][:, 0], original, rtol=1e-6)
        np.testing.assert_allclose(result[curve][:, -1], at_baseline, rtol=1e-6)
    for curve in ("insertion", "insertion_random"):
        np.testing.assert_allclose(result[curve][:, 0], at_baseline, rtol=1e-6)
        np.testing.assert_allclose(result[curve][:, -1], original, rtol=1e-6)

    # Quarter of the in-mask voxels removed, highest relevance first, by hand.
    in_mask = np.flatnonzero(mask)
    removed = inputs.copy()
    for subject in range(inputs.shape[0]):
        order = in_mask[np.argsort(-relevance[subject].ravel()[in_mask])]
        flat = removed[subject, 0].reshape(-1)
        flat[order[: round(0.25 * in_mask.size)]] = 0.0
    np.testing.assert_allclose(result["deletion"][:, 1], class_one_probability(model, removed))
    curve = result["deletion"]
    trapezoid_area = ((curve[:, :-1] + curve[:, 1:]) / 2 * 0.25).sum(axis=1)
    np.testing.assert_allclose(result["deletion_auc"], trapezoid_area)


def test_unrelated_map_does_no_better_than_random_order(setting):
    model, _, _, mask, region = setting
    rng = np.random.default_rng(1)
    n = 30
    inputs = rng.uniform(0.0, 0.2, size=(n, 1, *SHAPE)).astype(np.float32)
    inputs[:, 0][:, region] = 1.0
    unrelated = rng.random((n, *SHAPE))
    result = deletion_insertion(model, inputs, unrelated, mask, target=1, steps=10)
    assert result["mean_deletion_auc"] == pytest.approx(
        result["mean_deletion_random_auc"], abs=0.05
    )
    assert result["mean_insertion_auc"] == pytest.approx(
        result["mean_insertion_random_auc"], abs=0.05
    )


def test_only_in_mask_voxels_are_replaced(setting):
    model, inputs, relevance, _, region = setting
    outside_region = np.zeros(SHAPE, bool)
    outside_region[5:7, 5:7, 5:7] = True
    assert not (outside_region & region).any()
    result = deletion_insertion(model, inputs, relevance, outside_region, target=1, steps=5)
    for curve in ("deletion", "insertion", "deletion_random", "insertion_random"):
        assert np.ptp(result[curve], axis=1).max() < 1e-6


def test_baseline_volume_equal_to_the_region_value_leaves_the_probability_unchanged(setting):
    model, inputs, relevance, mask, _ = setting
    inputs = inputs.copy()
    inputs[:, 0][:, mask] = 1.0
    result = deletion_insertion(
        model, inputs, relevance, mask, target=1, steps=5, baseline=np.ones(SHAPE)
    )
    assert np.ptp(result["deletion"], axis=1).max() < 1e-6


def test_model_mode_and_parameters_restored_and_runs_deterministic(setting):
    model, inputs, relevance, mask, _ = setting
    model.train()
    first = deletion_insertion(model, inputs, relevance, mask, target=1, steps=6, batch_size=64)
    assert model.training
    assert model.scale.item() == 4.0
    again = deletion_insertion(model, inputs, relevance, mask, target=1, steps=6, batch_size=5)
    for key in ("deletion", "insertion", "deletion_random", "insertion_random"):
        np.testing.assert_allclose(first[key], again[key], rtol=1e-6)
    other_seed = deletion_insertion(model, inputs, relevance, mask, target=1, steps=6, seed=9)
    assert not np.allclose(first["deletion_random"], other_seed["deletion_random"])


def test_single_output_model_and_per_subject_targets(setting):
    _, inputs, relevance, mask, region = setting
    model = RegionModel(region, single_output=True)
    positive = deletion_insertion(model, inputs, relevance, mask, target=1, steps=5)
    negative = deletion_insertion(model, inputs, relevance, mask, target=0, steps=5)
    np.testing.assert_allclose(positive["deletion"] + negative["deletion"], 1.0, rtol=1e-6)

    targets = np.array([0, 1, 0, 1, 0, 1])
    mixed = deletion_insertion(model, inputs, relevance, mask, target=targets, steps=5)
    np.testing.assert_allclose(mixed["deletion"][1], positive["deletion"][1])
    np.testing.assert_allclose(mixed["deletion"][0], negative["deletion"][0])


def test_bad_arguments_are_named(setting):
    model, inputs, relevance, mask, _ = setting
    with pytest.raises(ValueError, match="inputs must have shape"):
        deletion_insertion(model, inputs[:, 0], relevance, mask, target=1)
    with pytest.raises(ValueError, match="relevance must have shape"):
        deletion_insertion(model, inputs, relevance[:3], mask, target=1)
    with pytest.raises(ValueError, match="mask must be a bool"):
        deletion_insertion(model, inputs, relevance, mask.astype(int), target=1)
    with pytest.raises(ValueError, match="target"):
        deletion_insertion(model, inputs, relevance, mask, target=1.5)
    with pytest.raises(ValueError, match="not a class"):
        deletion_insertion(model, inputs, relevance, mask, target=2)
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(model, inputs, relevance, mask, target=1, steps=0)
