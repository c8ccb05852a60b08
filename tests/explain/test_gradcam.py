"""Grad-CAM, Grad-CAM++ and the layer / hook handling, on tiny 3D networks with known answers."""

from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rsxai.explain import attribute, default_target_layer, resolve_layer
from rsxai.explain.attribution import gradcam_plus_plus
from rsxai.explain.gradcam import gradcam_plus_plus_weights

SHAPE = (8, 8, 8)


class GlobalAveragePool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


class Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


class BlockCNN(nn.Module):
    """Named like rsxai's MapCNN3D: blocks.{i}.conv/norm/act/pool, GAP, head.fc."""

    def __init__(self, n_blocks: int = 3, width: int = 2):
        super().__init__()
        channels = [1] + [width * 2**i for i in range(n_blocks)]
        self.blocks = nn.Sequential(*(Block(a, b) for a, b in itertools.pairwise(channels)))
        self.head = nn.Module()
        self.head.fc = nn.Linear(channels[-1], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.fc(self.blocks(x).mean(dim=(2, 3, 4)))


def features_and_head(pool: bool = False, linear_head: bool = False, seed: int = 0):
    """A CNN as ``features`` (ending in the CAM layer) then ``head``, so tests can split it."""
    torch.manual_seed(seed)
    features = [nn.Conv3d(1, 4, 3, padding=1), nn.ReLU()]
    if pool:
        features.append(nn.MaxPool3d(2))
    head = [] if linear_head else [nn.Conv3d(4, 3, 3, padding=1), nn.ReLU()]
    head += [GlobalAveragePool(), nn.Linear(4 if linear_head else 3, 2)]
    model = nn.Sequential()
    model.features = nn.Sequential(*features)
    model.head = nn.Sequential(*head)
    return model.double()


def inputs(n: int = 2, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, 1, *SHAPE), generator=generator, dtype=dtype)


def paper_gradcam_plus_plus(model: nn.Sequential, x: torch.Tensor, target: int) -> np.ndarray:
    """Chattopadhyay et al. (2018), eqs. 19 and 10, literally, with Y = exp(S), in NumPy.

    Activations and gradients come from splitting the model, not from hooks.
    For a ReLU network dkY/dA^k = exp(S) (dS/dA)^k (their eqs. 14-17).
    Returns maps at the layer's resolution, shape (n, x, y, z).
    """
    activations = model.features(x).detach().requires_grad_()
    logits = model.head(activations)
    (gradients,) = torch.autograd.grad(logits[:, target].sum(), activations)
    a = activations.detach().numpy()
    g = gradients.numpy()
    y = np.exp(logits[:, target].detach().numpy())[:, None, None, None, None]
    first, second, third = y * g, y * g**2, y * g**3
    sum_a = a.sum(axis=(2, 3, 4), keepdims=True)
    denominator = 2 * second + sum_a * third
    alpha = np.where(second != 0, second / np.where(denominator != 0, denominator, 1), 0.0)
    weights = (alpha * np.maximum(first, 0)).sum(axis=(2, 3, 4))
    return np.maximum((weights[:, :, None, None, None] * a).sum(axis=1), 0)


def logits_of(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    with torch.no_grad():
        return model(x)[:, target].numpy()


@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_plus_plus_equals_paper_formula(target):
    # The head after the CAM layer is a conv + ReLU, so gradients vary over voxels.
    model = features_and_head()
    x = inputs(3)
    reference = paper_gradcam_plus_plus(model, x, target)
    ours = gradcam_plus_plus(model, x, target, layer="features.1")
    scale = np.exp(logits_of(model, x, target))[:, None, None, None]
    assert np.abs(logits_of(model, x, target)).max() < 5  # small logits: exp is harmless
    assert reference.max() > 0
    np.testing.assert_allclose(ours * scale, reference, rtol=1e-5, atol=1e-7 * reference.max())


def test_gradcam_plus_plus_is_upsampled_trilinearly_from_the_layer_grid():
    model = features_and_head(pool=True)
    x = inputs(2)
    reference = paper_gradcam_plus_plus(model, x, 1)
    assert reference.shape == (2, 4, 4, 4)
    upsampled = F.interpolate(
        torch.as_tensor(reference)[:, None], size=SHAPE, mode="trilinear", align_corners=False
    )[:, 0].numpy()
    ours = gradcam_plus_plus(model, x, 1, layer="features.2")
    scale = np.exp(logits_of(model, x, 1))[:, None, None, None]
    assert ours.shape == (2, *SHAPE)
    np.testing.assert_allclose(ours * scale, upsampled, rtol=1e-5, atol=1e-7 * upsampled.max())


def test_gradcam_plus_plus_agrees_with_monai_where_both_formulas_coincide():
    # With global average pooling and a linear head the gradient is the same at
    # every voxel, where MONAI's denominator (sum of A g^3) equals the paper's
    # (g^3 sum of A). MONAI keeps the exp(S) factor; its normaliser is switched off.
    from monai.visualize import GradCAMpp

    # MONAI adds 1e-7 to a denominator of order g**2: gradients must be well above
    # 3e-4 for that not to matter, hence a 4x4x4 layer and weights of a few units.
    model = features_and_head(pool=True, linear_head=True).float()
    with torch.no_grad():
        model.head[-1].weight.copy_(torch.tensor([[2.0, -3.0, 2.5, 1.5], [-2.0, 3.0, -1.5, 2.0]]))
    x = inputs(1, dtype=torch.float32)
    for target in (0, 1):
        # MONAI leaves its hooks on the model it is given: give it a copy.
        monai_cam = GradCAMpp(
            nn_module=copy.deepcopy(model), target_layers="features.2", postprocessing=lambda m: m
        )
        theirs = monai_cam(x=x, class_idx=target).detach().numpy()[:, 0]
        ours = gradcam_plus_plus(model, x, target, layer="features.2")
        scale = np.exp(logits_of(model, x, target))[:, None, None, None]
        assert theirs.max() > 0
        np.testing.assert_allclose(ours * scale, theirs, rtol=1e-4, atol=1e-6 * theirs.max())


def test_gradcam_plus_plus_is_finite_for_large_logits():
    model = features_and_head()
    with torch.no_grad():
        model.head[-1].weight[1] = model.head[-1].weight[1].abs() * 100.0
        model.head[-1].bias[1] = 190.0
    x = inputs(2)
    logits = logits_of(model, x, 1)
    assert logits.min() > 150  # exp(S) overflows float32 beyond ~88
    ours = gradcam_plus_plus(model, x, 1, layer="features.1")
    assert np.isfinite(ours).all() and ours.max() > 0
    # exp(200) is still finite in float64, so the literal formula is available as a check.
    reference = paper_gradcam_plus_plus(model, x, 1) / np.exp(logits)[:, None, None, None]
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7 * reference.max())


def test_gradcam_equals_class_activation_map_for_gap_linear_head():
    # Grad-CAM at the last ReLU before global average pooling and a linear layer
    # is Zhou et al.'s CAM, ReLU(sum_k W[c, k] A_k), divided by the voxel count.
    model = features_and_head(linear_head=True)
    x = inputs(3)
    activations = model.features(x).detach().numpy()
    weights = model.head[-1].weight.detach().numpy()
    for target in (0, 1):
        cam = np.einsum("k,nkxyz->nxyz", weights[target], activations)
        expected = np.maximum(cam, 0) / np.prod(SHAPE)
        ours = attribute(model, x, method="gradcam", target=target, layer="features.1")
        assert expected.max() > 0
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7 * expected.max())


def test_gradcam_plus_plus_weights_closed_form_and_negative_activation_warning():
    activations = torch.tensor([[[[[1.0, 2.0]]], [[[0.0, 0.0]]]]]).reshape(1, 2, 1, 1, 2)
    gradients = torch.tensor([0.5, -1.0, 2.0, 0.0]).reshape(1, 2, 1, 1, 2)
    weights = gradcam_plus_plus_weights(activations, gradients)
    # Channel 0: sum A = 3; only g = 0.5 is positive -> 0.5 / (2 + 1.5). Channel 1: sum A = 0.
    np.testing.assert_allclose(weights.numpy(), [[0.5 / 3.5, 2.0 / 2.0]])
    with pytest.warns(RuntimeWarning, match="non-negative activations"):
        gradcam_plus_plus_weights(-activations, gradients.abs() * 2)


def test_default_target_layer_is_the_deepest_layer_fine_enough():
    model = BlockCNN(n_blocks=3)
    # 24^3: block 0 at 24, block 1 at 12, block 2 at 6 voxels per axis.
    assert default_target_layer(model, (24, 24, 24)) == "blocks.1.act"
    assert default_target_layer(model, (1, 24, 24, 24), min_size=13) == "blocks.0.act"
    assert default_target_layer(model, (40, 48, 40)) == "blocks.2.act"
    # Inputs smaller than min_size: the finest layers are the input's own size.
    assert default_target_layer(model, SHAPE) == "blocks.0.act"
    assert not any(module._forward_hooks for module in model.modules())


def test_default_target_layer_named_by_the_model():
    model = BlockCNN()
    model.default_target_layer = "blocks.0.conv"
    assert default_target_layer(model, SHAPE) == "blocks.0.conv"
    seen = []
    model.default_target_layer = lambda shape: seen.append(shape) or "blocks.1.norm"
    assert default_target_layer(model, (1, 16, 16, 16)) == "blocks.1.norm"
    assert seen == [(16, 16, 16)]
    model.default_target_layer = "blocks.9"
    with pytest.raises(ValueError, match=r"blocks\.9"):
        default_target_layer(model, SHAPE)


def test_default_target_layer_skips_a_module_called_twice():
    class SharedActivation(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv3d(1, 2, 3, padding=1)
            self.conv2 = nn.Conv3d(2, 2, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(self.act(self.conv2(self.act(self.conv1(x)))).mean(dim=(2, 3, 4)))

    model = SharedActivation()
    assert default_target_layer(model, SHAPE) == "conv2"
    with pytest.raises(ValueError, match="ran more than once"):
        attribute(model, inputs(1, dtype=torch.float32), method="gradcam", target=0, layer="act")


def test_non_volume_layer_and_unknown_layer_are_refused_clearly():
    model = BlockCNN()
    x = inputs(1, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"head.fc' returns a tensor of shape \(1, 2\)"):
        attribute(model, x, method="gradcam++", target=0, layer="head.fc")
    with pytest.raises(ValueError, match=r"Allowed: 'blocks', 'blocks.0', 'blocks.0.conv'"):
        resolve_layer(model, "blocks.0.convolution")
    assert not any(module._forward_hooks for module in model.modules())


def test_cam_maps_are_non_negative_and_batch_sized():
    model = BlockCNN(n_blocks=2)
    x = inputs(5, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("gradcam", "gradcam++"):
            maps = attribute(model, x, method=method, target=[0, 1, 0, 1, 1], batch_size=2)
            assert maps.shape == (5, *SHAPE) and maps.dtype == np.float32
            assert (maps >= 0).all() and np.isfinite(maps).all()
