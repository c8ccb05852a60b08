"""Attribution methods on tiny networks whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from rsxai.explain import METHODS, attribute
from rsxai.explain.attribution import normalise_maps

SHAPE = (8, 8, 8)
GRADIENT_METHODS = ("saliency", "smoothgrad", "integrated_gradients")


def volumes(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, 1, *SHAPE), generator=torch.Generator().manual_seed(seed))


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 2))


class RegionGate(nn.Module):
    """Zeroes every voxel outside a fixed region."""

    def __init__(self, region: np.ndarray):
        super().__init__()
        self.register_buffer("region", torch.as_tensor(region, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.region


class RegionNet(nn.Module):
    """conv -> ReLU -> region gate -> mean -> linear: class 1 depends on the region only."""

    def __init__(self, region: np.ndarray, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.gate = RegionGate(region)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight[1] = self.fc.weight[1].abs() + 0.1
            self.fc.weight[0] = -self.fc.weight[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gate(self.act(self.conv(x))).mean(dim=(2, 3, 4)))


class SmallCNN(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(1, 3, 3, padding=1)
        self.norm = nn.BatchNorm3d(3)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(2)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():  # running statistics that are not the defaults
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.norm(self.conv(x)))).mean(dim=(2, 3, 4)))


def hooks_left(model: nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    ]


def test_linear_model_saliency_and_smoothgrad_are_the_weight_magnitudes():
    model = linear_model()
    x = volumes(3)
    for target in (0, 1):
        expected = np.abs(model[1].weight[target].detach().numpy()).reshape(SHAPE)
        for method in ("saliency", "smoothgrad"):
            maps = attribute(model, x, method=method, target=target)
            np.testing.assert_allclose(maps, np.broadcast_to(expected, maps.shape), rtol=1e-6)


def test_linear_model_integrated_gradients_is_input_times_weight_and_complete():
    model = linear_model()
    x = volumes(3)
    baseline = 0.5
    weights = model[1].weight.detach().numpy()
    maps = attribute(model, x, method="integrated_gradients", target=[0, 1, 1], baseline=baseline)
    for i, target in enumerate((0, 1, 1)):
        expected = (x[i, 0].numpy() - baseline) * weights[target].reshape(SHAPE)
        np.testing.assert_allclose(maps[i], expected, rtol=1e-5, atol=1e-7)
        with torch.no_grad():
            difference = (
                model(x[i : i + 1])[0, target] - model(torch.full_like(x[:1], baseline))[0, target]
            )
        np.testing.assert_allclose(maps[i].sum(dtype=np.float64), float(difference), rtol=1e-4)


def test_integrated_gradients_is_complete_for_a_relu_network():
    model = SmallCNN()
    x = volumes(2)
    maps = attribute(model, x, method="integrated_gradients", target=1, n_steps=64)
    with torch.no_grad():
        difference = (model.eval()(x)[:, 1] - model(torch.zeros_like(x))[:, 1]).numpy()
    assert np.abs(difference).min() > 1e-3
    np.testing.assert_allclose(maps.sum(axis=(1, 2, 3)), difference, rtol=0.02)


def test_saliency_follows_each_inputs_own_target():
    model = SmallCNN()
    x = volumes(4)
    target = [0, 1, 1, 0]
    maps = attribute(model, x, method="saliency", target=target, batch_size=3)
    reference = x.clone().requires_grad_()
    logits = model.eval()(reference)
    (gradients,) = torch.autograd.grad(logits[torch.arange(4), target].sum(), reference)
    np.testing.assert_allclose(maps, gradients.abs()[:, 0].numpy(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("planted", ["front", "back"])
@pytest.mark.parametrize("method", METHODS)
def test_relevance_stays_in_the_only_region_the_score_depends_on(method, planted):
    regions = {"front": np.zeros(SHAPE, bool), "back": np.zeros(SHAPE, bool)}
    regions["front"][1:3, 2:5, 2:5] = True
    regions["back"][5:7, 3:6, 3:6] = True
    model = RegionNet(regions[planted])
    maps = attribute(model, volumes(3), method=method, target=1, layer=None)
    # Gradients reach one voxel beyond the region (3x3x3 convolution); the CAM
    # layer is the gate itself, at the input's resolution.
    support = regions[planted]
    if method in GRADIENT_METHODS:
        support = ndimage.binary_dilation(support, structure=np.ones((3, 3, 3)))
    other = next(region for name, region in regions.items() if name != planted)
    assert not (support & other).any()
    magnitude = np.abs(maps)
    assert (magnitude.sum(axis=(1, 2, 3)) > 0).all()
    assert (magnitude[:, ~support] == 0).all()
    assert (magnitude[:, other] == 0).all()


def test_default_layer_of_region_net_is_the_gate():
    # The last module with volume output: what the test above relies on.
    from rsxai.explain import default_target_layer

    assert default_target_layer(RegionNet(np.ones(SHAPE, bool)), SHAPE) == "gate"


@pytest.mark.parametrize("method", METHODS)
def test_model_is_left_as_it_was(method):
    model = SmallCNN().train()
    model.conv.bias.requires_grad_(False)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    x = volumes(2)
    maps = attribute(model, x, method=method, target=1, n_samples=2, n_steps=2)
    assert np.isfinite(maps).all()
    assert all(module.training for module in model.modules())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == requires_grad
    assert all(p.grad is None for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert not hooks_left(model)
    assert not x.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_hooks_and_flags_are_released_when_the_model_fails(method):
    class FailingHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fail = False

        def forward(self, x):
            if self.fail:
                raise RuntimeError("head failed")
            return x

    model = SmallCNN().train()
    model.fc = nn.Sequential(model.fc, FailingHead())
    x = volumes(2)
    attribute(model, x, method=method, target=0, layer="act" if "cam" in method else None)
    model.fc[1].fail = True
    with pytest.raises(RuntimeError, match="head failed"):
        attribute(model, x, method=method, target=0, layer="act" if "cam" in method else None)
    assert not hooks_left(model)
    assert all(module.training for module in model.modules())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_equals_single_calls(method):
    model = SmallCNN()
    x = volumes(3)
    target = [1, 0, 1]
    seeds = [11, 12, 13]
    options = {"method": method, "n_samples": 4, "n_steps": 4}
    together = attribute(model, x, target=target, batch_size=2, seed=seeds, **options)
    for i in range(3):
        alone = attribute(model, x[i : i + 1], target=target[i], seed=seeds[i], **options)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-5, atol=1e-6 * alone.max())


def test_smoothgrad_is_seeded_and_reduces_to_saliency_without_noise():
    model = SmallCNN()
    x = volumes(2)
    first = attribute(model, x, method="smoothgrad", target=1, n_samples=4, seed=3)
    again = attribute(model, x, method="smoothgrad", target=1, n_samples=4, seed=3)
    other = attribute(model, x, method="smoothgrad", target=1, n_samples=4, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    quiet = attribute(model, x, method="smoothgrad", target=1, n_samples=3, noise_level=0.0)
    saliency = attribute(model, x, method="saliency", target=1)
    np.testing.assert_allclose(quiet, saliency, rtol=1e-5, atol=1e-9)


class Quadratic(nn.Module):
    """Logits (S, -S) with S = sum of w * x**2: the gradient 2 w x grows with the noise."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.rand(SHAPE, generator=generator) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (self.w * x[:, 0] ** 2).sum(dim=(1, 2, 3))
        return torch.stack([score, -score], dim=1)


def test_smoothgrad_noise_is_the_stated_fraction_of_the_input_range():
    # Where x = 0 the gradient is 2 w sigma eps, so mean |gradient| / (2 w) estimates
    # sigma E|eps| = sigma sqrt(2 / pi), with sigma = noise_level * (max - min).
    x = torch.zeros((1, 1, *SHAPE))
    x[0, 0, 0, 0, 0], x[0, 0, 7, 7, 7] = -1.0, 3.0  # range 4, standard deviation ~0.14
    model = Quadratic()
    maps = attribute(model, x, method="smoothgrad", target=0, n_samples=256, noise_level=0.1)
    at_zero = (x[0, 0] == 0).numpy()
    estimate = (maps[0] / (2 * model.w.detach().numpy()))[at_zero].mean()
    np.testing.assert_allclose(estimate, 0.1 * 4.0 * np.sqrt(2 / np.pi), rtol=0.02)


def test_smoothgrad_adds_noise_inside_the_mask_only():
    # The Quadratic model's gradient 2 w (x + noise) shows the noise voxel by voxel:
    # outside the mask, where x = 0, it must be exactly zero.
    x = torch.zeros((2, 1, *SHAPE))
    x[:, 0, 1, 1, 1], x[:, 0, 6, 6, 6] = -1.0, 3.0
    mask = np.zeros(SHAPE, dtype=bool)
    mask[1:7, 1:7, 1:7] = True
    model = Quadratic()
    options = {"method": "smoothgrad", "target": 0, "n_samples": 64, "noise_level": 0.1}
    masked = attribute(model, x, mask=mask, seed=[5, 6], **options)
    unmasked = attribute(model, x, seed=[5, 6], **options)
    assert np.all(masked[:, ~mask] == 0)
    assert np.all(unmasked[:, ~mask] > 0)
    # Inside, the noise is the draw it was without a mask (same stream, same
    # sigma: the range over the mask is the input's range).
    np.testing.assert_allclose(masked[:, mask], unmasked[:, mask], rtol=1e-6)
    everywhere = attribute(model, x, mask=np.ones(SHAPE, dtype=bool), seed=[5, 6], **options)
    np.testing.assert_array_equal(everywhere, unmasked)
    with pytest.raises(ValueError, match=r"mask must be a boolean array of shape \(8, 8, 8\)"):
        attribute(model, x, mask=mask[1:], **options)


def test_smoothgrad_noise_level_is_relative_to_the_range_inside_the_mask():
    x = torch.zeros((1, 1, *SHAPE))
    x[0, 0, 0, 0, 0], x[0, 0, 7, 7, 7], x[0, 0, 4, 4, 4] = 50.0, 3.0, -1.0
    mask = np.ones(SHAPE, dtype=bool)
    mask[0, 0, 0] = False  # the 50 is outside: the range is 4, not 51
    model = Quadratic()
    maps = attribute(
        model, x, method="smoothgrad", target=0, n_samples=256, noise_level=0.1, mask=mask
    )
    at_zero = (x[0, 0] == 0).numpy() & mask
    estimate = (maps[0] / (2 * model.w.detach().numpy()))[at_zero].mean()
    np.testing.assert_allclose(estimate, 0.1 * 4.0 * np.sqrt(2 / np.pi), rtol=0.02)


def test_numpy_float64_and_no_grad_callers():
    model = SmallCNN().double()
    x = volumes(2).double().numpy()
    with torch.no_grad():
        maps = attribute(model, x, method="saliency", target=1)
    assert maps.dtype == np.float32 and maps.shape == (2, *SHAPE) and maps.max() > 0


def test_bad_arguments_are_refused_with_the_allowed_values():
    model = SmallCNN()
    x = volumes(2)
    with pytest.raises(ValueError, match=r"method must be one of 'saliency', 'smoothgrad'.*'lrp'"):
        attribute(model, x, method="lrp", target=0)
    with pytest.raises(ValueError, match=r"Allowed: 'conv', 'norm', 'act', 'pool', 'fc'"):
        attribute(model, x, method="gradcam", target=0, layer="blocks.2.act")
    with pytest.raises(ValueError, match=r"layer is used by gradcam and gradcam\+\+ only"):
        attribute(model, x, method="saliency", target=0, layer="act")
    with pytest.raises(ValueError, match=r"class indices in 0..1 .* got \[0, 2\]"):
        attribute(model, x, method="saliency", target=[0, 2])
    with pytest.raises(ValueError, match=r"one class index per input \(2\)"):
        attribute(model, x, method="saliency", target=[0, 1, 1])
    with pytest.raises(ValueError, match=r"\(n_inputs, 1, X, Y, Z\).*got shape \(2, 8, 8, 8\)"):
        attribute(model, x[:, 0], method="saliency", target=0)
    with pytest.raises(ValueError, match="n_samples must be a positive integer; got 0"):
        attribute(model, x, method="smoothgrad", target=0, n_samples=0)
    with pytest.raises(ValueError, match="NaN"):
        attribute(model, torch.full_like(x, float("nan")), method="saliency", target=0)
    assert not hooks_left(model)


def test_normalise_maps_scales_without_flipping_signs():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, *SHAPE))
    maps[2] = 0.0
    mask = np.zeros(SHAPE, bool)
    mask[1:7, 1:7, 1:7] = True
    for how in ("max_abs", "sum_abs", "rank"):
        normalised = normalise_maps(maps, mask, how=how)
        assert normalised.dtype == np.float32 and normalised.shape == maps.shape
        assert (normalised[:, ~mask] == 0).all()
        assert (np.sign(normalised[:2][:, mask]) == np.sign(maps[:2][:, mask])).all()
        assert (normalised[2] == 0).all()
    inside = maps[:2][:, mask]
    max_abs = normalise_maps(maps, mask, "max_abs")[:2][:, mask]
    np.testing.assert_allclose(max_abs, inside / np.abs(inside).max(axis=1)[:, None], rtol=1e-6)
    sum_abs = normalise_maps(maps, mask, "sum_abs")[:2][:, mask]
    np.testing.assert_allclose(np.abs(sum_abs).sum(axis=1), 1.0, rtol=1e-5)
    rank = normalise_maps(maps, mask, "rank")[:2][:, mask]
    # The largest |value| gets rank 1; order of |value| is kept.
    np.testing.assert_allclose(np.abs(rank).max(axis=1), 1.0)
    order = np.argsort(np.abs(inside[0]))
    assert (np.diff(np.abs(rank[0])[order]) > 0).all()
    whole = normalise_maps(maps[:1])  # no mask: every voxel
    np.testing.assert_allclose(np.abs(whole).max(), 1.0)
    with pytest.raises(ValueError, match="how must be one of 'max_abs', 'sum_abs', 'rank'"):
        normalise_maps(maps, mask, how="zscore")
    with pytest.raises(ValueError, match=r"mask must be a boolean array of shape \(8, 8, 8\)"):
        normalise_maps(maps, mask[:4])
