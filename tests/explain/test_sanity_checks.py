"""Randomisation sanity checks (Adebayo et al. 2018): similarity, cascading, label, verdict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import structural_similarity

from rsxai.explain import cascading_randomisation, label_randomisation_similarity
from rsxai.explain.sanity_checks import (
    DEFAULT_SANITY_THRESHOLD,
    randomisable_layers,
    sanity_verdict,
    similarity,
)

SHAPE = (10, 10, 10)


def gradient_explain(model, inputs):
    x = inputs.clone().requires_grad_(True)
    model(x)[:, 1].sum().backward()
    return x.grad[:, 0].abs().numpy()


def input_explain(model, inputs):
    # Ignores the model entirely: the "edge detector" of Adebayo et al.
    return inputs[:, 0].numpy().copy()


def tiny_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1),
        torch.nn.BatchNorm3d(4),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool3d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 5 * 5 * 5, 2),
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    """A tiny CNN trained to tell volumes with a bright corner blob (class 1) from without."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 16
    volumes = rng.normal(size=(n, 1, *SHAPE)).astype(np.float32)
    labels = np.arange(n) % 2
    volumes[labels == 1, 0, 1:4, 1:4, 1:4] += 2.0
    x, y = torch.from_numpy(volumes), torch.from_numpy(labels)
    model = tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() == 1.0
    return model, x[:6]


def test_similarity_is_one_for_the_same_map_up_to_sign_and_scale():
    rng = np.random.default_rng(0)
    a = rng.normal(size=SHAPE)
    result = similarity(a, -7.5 * a)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["ssim"] == pytest.approx(1.0)


def test_similarity_matches_scipy_and_skimage_on_normalised_absolute_maps():
    rng = np.random.default_rng(1)
    a = rng.normal(size=SHAPE)
    b = a + rng.normal(scale=0.7, size=SHAPE)
    result = similarity(a, b)
    expected_r = stats.spearmanr(np.abs(a).ravel(), np.abs(b).ravel()).statistic
    expected_ssim = structural_similarity(
        np.abs(a) / np.abs(a).max(), np.abs(b) / np.abs(b).max(), data_range=1.0
    )
    assert result["spearman"] == pytest.approx(expected_r)
    assert result["ssim"] == pytest.approx(expected_ssim)
    assert 0.3 < result["spearman"] < 0.95


def test_similarity_of_unrelated_maps_is_low_and_mask_restricts_spearman():
    rng = np.random.default_rng(2)
    a, b = rng.random(SHAPE), rng.random(SHAPE)
    result = similarity(a, b)
    assert abs(result["spearman"]) < 0.1
    assert result["ssim"] < 0.2

    mask = np.zeros(SHAPE, bool)
    mask[2:8, 2:8, 2:8] = True
    masked = similarity(a, b, mask=mask)
    expected = stats.spearmanr(a[mask], b[mask]).statistic
    assert masked["spearman"] == pytest.approx(expected)


def test_similarity_edge_cases():
    rng = np.random.default_rng(3)
    flat = similarity(rng.random(50), rng.random(50))
    assert np.isfinite(flat["spearman"]) and np.isnan(flat["ssim"])  # no neighbourhood in 1D
    constant = similarity(np.ones(SHAPE), rng.random(SHAPE))
    assert np.isnan(constant["spearman"])
    small = similarity(rng.random((4, 5, 6)), rng.random((4, 5, 6)))
    assert np.isfinite(small["ssim"])  # window shrinks to 3
    thin = similarity(rng.random((2, 5, 6)), rng.random((2, 5, 6)))
    assert np.isnan(thin["ssim"])
    with pytest.raises(ValueError, match="same shape"):
        similarity(np.ones(SHAPE), np.ones((10, 10)))


def test_randomisable_layers_are_parameter_owners_from_the_head_down():
    model = tiny_cnn()
    layers = randomisable_layers(model)
    assert [name for name, _ in layers] == ["7", "3", "1", "0"]
    assert [type(m).__name__ for _, m in layers] == [
        "Linear",
        "Conv3d",
        "BatchNorm3d",
        "Conv3d",
    ]


def test_cascading_randomisation_changes_gradient_maps_and_passes(trained):
    model, inputs = trained
    steps = cascading_randomisation(model, inputs, gradient_explain, seed=0)
    assert [s["layer"] for s in steps] == ["7", "3", "1", "0"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    spearman = np.array([s["spearman"] for s in steps])
    assert (spearman < DEFAULT_SANITY_THRESHOLD).all()  # already after the head alone
    assert spearman[-1] < spearman[0]  # less and less is left of the trained model
    assert steps[-1]["spearman_per_subject"].shape == (inputs.shape[0],)
    assert sanity_verdict(steps) == "pass"


def test_cascading_randomisation_flags_an_explanation_that_ignores_the_model(trained):
    model, inputs = trained
    steps = cascading_randomisation(model, inputs, input_explain, seed=0)
    for step in steps:
        assert step["spearman"] == pytest.approx(1.0)
        assert step["ssim"] == pytest.approx(1.0)
    assert sanity_verdict(steps) == "fail"
    assert sanity_verdict(steps, metric="ssim") == "fail"


def test_cascading_randomisation_leaves_the_model_and_random_state_alone(trained):
    model, inputs = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    rng_state = torch.get_rng_state()
    try:
        cascading_randomisation(model, inputs, gradient_explain, seed=1)
        assert model.training
        assert torch.equal(torch.get_rng_state(), rng_state)
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_cascading_randomisation_is_deterministic_given_the_seed(trained):
    model, inputs = trained
    first = cascading_randomisation(model, inputs[:3], gradient_explain, seed=4)
    again = cascading_randomisation(model, inputs[:3], gradient_explain, seed=4)
    other = cascading_randomisation(model, inputs[:3], gradient_explain, seed=5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["spearman_per_subject"], b["spearman_per_subject"])
    assert not np.array_equal(first[0]["spearman_per_subject"], other[0]["spearman_per_subject"])


def test_cascading_randomisation_reuses_given_original_maps(trained):
    model, inputs = trained
    original = gradient_explain(model, inputs)
    calls = []

    def counting_explain(m, x):
        calls.append(1)
        return gradient_explain(m, x)

    steps = cascading_randomisation(
        model, inputs, counting_explain, seed=0, original_maps=original
    )
    assert len(calls) == len(steps)


def test_label_randomisation_similarity_and_verdicts():
    rng = np.random.default_rng(6)
    trained_maps = rng.random((5, *SHAPE))
    same = label_randomisation_similarity(trained_maps, 3.0 * trained_maps)
    assert same["spearman"] == pytest.approx(1.0)
    assert sanity_verdict(same) == "fail"

    unrelated = label_randomisation_similarity(trained_maps, rng.random((5, *SHAPE)))
    assert abs(unrelated["spearman"]) < 0.1
    assert unrelated["ssim_per_subject"].shape == (5,)
    assert sanity_verdict(unrelated) == "pass"
    with pytest.raises(ValueError, match="same shape"):
        label_randomisation_similarity(trained_maps, trained_maps[:4])


def test_sanity_verdict_threshold_and_undetermined():
    assert sanity_verdict({"spearman": 0.49, "ssim": 0.9}) == "pass"
    assert sanity_verdict({"spearman": 0.5, "ssim": 0.1}) == "fail"
    assert sanity_verdict({"spearman": 0.3, "ssim": 0.1}, threshold=0.2) == "fail"
    assert sanity_verdict({"spearman": 0.3, "ssim": 0.1}, metric="ssim") == "pass"
    assert sanity_verdict({"spearman": np.nan, "ssim": 0.1}) == "undetermined"
    with pytest.raises(ValueError, match="metric must be one of"):
        sanity_verdict({"spearman": 0.1}, metric="pearson")
    with pytest.raises(ValueError, match="empty"):
        sanity_verdict([])
