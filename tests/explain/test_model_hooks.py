"""Model handling shared by every attribution: flags restored, hooks released, fast gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsxai.explain.model_hooks import frozen_model, recorded_output


def hooks_left(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if module._forward_hooks]


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.conv = nn.Conv3d(1, 3, 3, padding=1)
    model.norm = nn.BatchNorm3d(3)
    model.act = nn.ReLU(inplace=True)
    model.pool = nn.AdaptiveAvgPool3d(1)
    model.flatten = nn.Flatten()
    model.fc = nn.Linear(3, 2)
    return model


def test_frozen_model_restores_every_flag_after_an_exception():
    model = small_cnn().train()
    model.norm.eval()
    model.conv.weight.requires_grad_(False)
    training = {name: module.training for name, module in model.named_modules()}
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), frozen_model(model):
        assert not any(module.training for module in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        assert torch.is_grad_enabled()
        assert hooks_left(model) == ["conv"]  # the fast input gradient
        raise RuntimeError("boom")
    assert {name: module.training for name, module in model.named_modules()} == training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == requires_grad
    assert not hooks_left(model)


def test_recorded_output_survives_in_place_relu_and_releases_its_hook():
    model = small_cnn().eval()
    x = torch.randn(2, 1, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    with recorded_output(model, "norm") as recording:
        model(x)
    # `act` is ReLU(inplace=True): without the copy it would have zeroed these.
    assert (recording.output < 0).any()
    assert recording.output.shape == (2, 3, 6, 6, 6)
    assert not hooks_left(model)
    with pytest.raises(RuntimeError, match="boom"), recorded_output(model, "conv"):
        raise RuntimeError("boom")
    assert not hooks_left(model)


CONVOLUTIONS = {
    "one channel, 3x3x3": dict(in_channels=1, out_channels=4, kernel_size=3, padding=1),
    "three channels, no bias": dict(
        in_channels=3, out_channels=2, kernel_size=3, padding=1, bias=False
    ),
    "5x5x5, padding 1": dict(in_channels=1, out_channels=2, kernel_size=5, padding=1),
    "anisotropic": dict(in_channels=2, out_channels=3, kernel_size=(3, 5, 1), padding=(0, 2, 0)),
    "stride 2 (autograd's own)": dict(
        in_channels=1, out_channels=2, kernel_size=3, padding=1, stride=2
    ),
}


@pytest.mark.parametrize("options", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
def test_input_gradient_through_frozen_convolutions_equals_autograd(options):
    torch.manual_seed(1)
    conv = nn.Conv3d(**options)
    # ReLU(inplace=True) straight after the convolution modifies its output in place.
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Conv3d(options["out_channels"], 2, 3))
    model = model.double()
    x = torch.randn(2, options["in_channels"], 7, 8, 9, dtype=torch.float64)
    weights = torch.randn(2, dtype=torch.float64)

    def input_gradient():
        inputs = x.clone().requires_grad_()
        score = (model(inputs).sum(dim=(2, 3, 4)) * weights).sum()
        return torch.autograd.grad(score, inputs)[0], model[0](inputs).grad_fn

    expected, plain = input_gradient()
    with frozen_model(model):
        fast, rerouted = input_gradient()
    assert ("ConvInputGradient" in type(rerouted).__name__) == (conv.stride == (1, 1, 1))
    assert "ConvInputGradient" not in type(plain).__name__
    assert expected.abs().max() > 0
    torch.testing.assert_close(fast, expected, rtol=1e-10, atol=1e-12)
    assert not hooks_left(model)
