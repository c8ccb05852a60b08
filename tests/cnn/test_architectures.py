"""Tests for rsxai.cnn.architectures: layer names and shapes, target-layer rule, FLOPs, errors."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
from torch import nn

from rsxai.cnn import MapCNN3D, build_model, count_parameters, flops_per_volume
from rsxai.exceptions import InputError

# MNI brain-mask bounding boxes at 4 and 2 mm (rsxai.grid.mni_brain_mask).
BOX_4MM = (36, 45, 39)
BOX_2MM = (73, 90, 78)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def recorded_shapes(model: nn.Module, in_shape) -> dict[str, tuple[int, ...]]:
    """Spatial output shape of every named submodule, from a real forward pass."""
    shapes = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[2:]))
        )
        for name, module in model.named_modules()
        if name
    ]
    model.eval()
    with torch.no_grad():
        logits = model(torch.zeros((2, 1, *in_shape)))
    for handle in handles:
        handle.remove()
    shapes["logits"] = tuple(logits.shape)
    return shapes


def test_layers_are_named_for_explanation_methods():
    model = build_model(in_shape=BOX_4MM)
    names = dict(model.named_modules())
    for block in range(3):
        for part, kind in (("conv", nn.Conv3d), ("norm", nn.BatchNorm3d), ("act", nn.ReLU)):
            assert isinstance(names[f"blocks.{block}.{part}"], kind)
        assert isinstance(names[f"blocks.{block}.pool"], nn.MaxPool3d)
    assert isinstance(names["head.dropout"], nn.Dropout)
    assert isinstance(names["head.fc"], nn.Linear)
    assert names["head.fc"].out_features == 2
    # Hooks must see each activation's own output, so no ReLU may work in place.
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert model.explanation_layers == ["stem.act", "blocks.0.act", "blocks.1.act", "blocks.2.act"]


@pytest.mark.parametrize("head", ["spatial", "global"])
@pytest.mark.parametrize(
    ("in_shape", "n_blocks", "width", "stem_stride"),
    [(BOX_4MM, 3, 8, 2), ((17, 20, 18), 2, 4, 1), ((12, 9, 30), 1, 3, 2)],
)
def test_activation_shapes_and_logits_match_a_forward_pass(
    in_shape, n_blocks, width, stem_stride, head
):
    model = build_model(
        in_shape=in_shape, n_blocks=n_blocks, width=width, stem_stride=stem_stride, head=head
    )
    recorded = recorded_shapes(model, in_shape)
    assert recorded["logits"] == (2, 2)
    expected = model.activation_shapes()
    assert [recorded[name] for name in model.explanation_layers] == expected
    # Independent reference: a stride-s 3x3x3 convolution with padding 1 gives
    # ceil(n / s); every block's pooling then halves (rounding up).
    shape = [-(-n // stem_stride) for n in in_shape]
    for block in range(n_blocks):
        assert recorded[f"blocks.{block}.act"] == tuple(shape)
        assert recorded[f"blocks.{block}.conv"][0] == shape[0]
        shape = [-(-n // 2) for n in shape]
    assert recorded[f"blocks.{n_blocks - 1}.pool"] == tuple(shape)
    channels = width * 2 ** (n_blocks - 1)
    n_features = channels if head == "global" else channels * shape[0] * shape[1] * shape[2]
    assert model.head.fc.in_features == n_features


def test_parameter_count_matches_the_layer_formula():
    width, n_blocks = 8, 3
    model = build_model(in_shape=BOX_4MM, n_blocks=n_blocks, width=width)
    channels = [1, width] + [width * 2**i for i in range(n_blocks)]
    # The stride-2 stem's kernel is 4 wide (uniform coverage), the others 3.
    kernels = [64] + [27] * n_blocks
    convs = sum(k * a * b for k, (a, b) in zip(kernels, itertools.pairwise(channels), strict=True))
    norms = 2 * sum(channels[1:])
    last = model.activation_shapes()[-1]
    pooled = [-(-n // 2) for n in last]
    fc = (channels[-1] * pooled[0] * pooled[1] * pooled[2] + 1) * 2
    assert count_parameters(model) == convs + norms + fc
    # Compact on purpose: tens of thousands of weights for ~60 subjects, not millions.
    assert 10_000 < count_parameters(model) < 100_000
    for parameter in model.head.parameters():
        parameter.requires_grad_(False)
    assert count_parameters(model) == convs + norms
    assert count_parameters(model, trainable_only=False) == convs + norms + fc


def test_default_target_layer_is_the_deepest_with_ten_voxels_per_axis():
    for in_shape, expected in ((BOX_4MM, "blocks.0.act"), (BOX_2MM, "blocks.2.act")):
        model = build_model(in_shape=in_shape)
        assert model.default_target_layer() == expected
        shapes = recorded_shapes(model, in_shape)
        layers = model.explanation_layers
        index = layers.index(expected)
        assert min(shapes[expected]) >= 10
        # The next deeper candidate, if any, is too coarse.
        assert index == len(layers) - 1 or min(shapes[layers[index + 1]]) < 10
    # The 4 mm model asked about 2 mm input, and a box too small for 10 voxels:
    assert build_model(in_shape=BOX_4MM).default_target_layer(BOX_2MM) == "blocks.2.act"
    # Below 10 voxels everywhere: the deepest layer at the finest resolution.
    assert build_model(in_shape=(10, 12, 10)).default_target_layer() == "blocks.0.act"
    assert (
        build_model(in_shape=(10, 12, 10), stem_stride=1).default_target_layer() == "blocks.0.act"
    )


def test_flops_match_a_hand_count():
    in_shape = (12, 10, 8)
    model = build_model(in_shape=in_shape, n_blocks=2, width=4)
    stem = (6, 5, 4)  # stride 2
    after_block0 = (3, 3, 2)
    after_block1 = (2, 2, 1)

    def voxels(shape):
        return shape[0] * shape[1] * shape[2]

    stem_flops = 2 * voxels(stem) * 4 * 1 * 64  # 4x4x4 kernel
    block0 = 2 * voxels(stem) * 4 * 4 * 27
    block1 = 2 * voxels(after_block0) * 8 * 4 * 27
    fc = 2 * 2 * 8 * voxels(after_block1)
    forward = stem_flops + block0 + block1 + fc
    assert flops_per_volume(model, in_shape) == forward
    # Backward: weight gradients everywhere, input gradients except for the
    # first layer, whose input (the data) needs none.
    assert flops_per_volume(model, in_shape, training=True) == 3 * forward - stem_flops
    assert model.training  # the count must not leave the model in eval mode


def test_counting_leaves_batch_norm_statistics_untouched():
    model = build_model(in_shape=(12, 10, 8), n_blocks=2, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flops_per_volume(model, (12, 10, 8), training=True)
    model.default_target_layer((20, 20, 20))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet"}, "model name must be one of 'cnn3d', 'monai_resnet10'"),
        ({"n_blocks": 0}, "n_blocks must be an integer from 1 to 6; got 0"),
        ({"n_blocks": 2.0}, "n_blocks must be an integer from 1 to 6; got 2.0"),
        ({"width": 0}, "width must be an integer from 1 to 256; got 0"),
        ({"dropout": 1.0}, "dropout must be a number in [0, 1); got 1.0"),
        ({"stem_stride": 3}, "stem_stride must be 1 or 2; got 3"),
        ({"head": "gap"}, "head must be one of 'spatial', 'global'; got 'gap'"),
        ({"n_classes": 1}, "n_classes must be an integer >= 2; got 1"),
        ({"in_shape": (10, 10)}, "in_shape must be 3 positive integers"),
        ({"in_shape": (10, 0, 10)}, "got (10, 0, 10)"),
        ({"in_shape": (6, 40, 40), "n_blocks": 3}, "in_shape (6, 40, 40) is too small"),
    ],
)
def test_bad_parameters_name_the_parameter_allowed_values_and_given_value(kwargs, message):
    arguments = {"in_shape": BOX_4MM, **kwargs}
    with pytest.raises(InputError) as raised:
        build_model(**arguments)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_all_problems_are_reported_at_once():
    with pytest.raises(InputError) as raised:
        MapCNN3D(BOX_4MM, n_blocks=9, width=-1, dropout=2)
    assert len(raised.value.problems) == 3


def test_monai_network_is_built_with_a_default_target_layer():
    pytest.importorskip("monai")
    in_shape = (24, 28, 24)
    model = build_model("monai_resnet10", in_shape=in_shape)
    assert count_parameters(model) > 1_000_000
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros((1, 1, *in_shape))).shape == (1, 2)
    name = model.default_target_layer(in_shape)
    assert name in model.explanation_layers
    shapes = recorded_shapes(model, in_shape)
    # 24 voxels: the stem and max pooling halve to 12, the next stage to 6.
    assert name == "layer1" and shapes["layer1"] == (12, 14, 12)


def test_missing_monai_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "monai", None)
    monkeypatch.setitem(sys.modules, "monai.networks", None)
    with pytest.raises(ImportError, match="pip install monai"):
        build_model("monai_densenet121", in_shape=BOX_4MM)


def test_input_gradients_have_no_checkerboard():
    # With a 3-wide stride-2 stem, alternate input voxels fed one and two stem
    # windows per axis, so |dS/dx| was ~30 % lower on every other voxel whatever
    # the weights, and weight-randomisation sanity checks could not tell
    # SmoothGrad from an edge detector. The 4-wide stem covers every voxel twice.
    torch.manual_seed(0)
    model = build_model(in_shape=(20, 24, 20), n_blocks=2).eval()
    inputs = torch.randn(16, 1, 20, 24, 20, requires_grad=True)
    model(inputs)[:, 1].sum().backward()
    magnitude = inputs.grad.abs().mean(dim=(0, 1))[2:-2, 2:-2, 2:-2]  # away from the padding
    for axis in range(3):
        index = torch.arange(magnitude.shape[axis]) % 2 == 0
        even = magnitude.index_select(axis, torch.nonzero(index).ravel()).mean()
        odd = magnitude.index_select(axis, torch.nonzero(~index).ravel()).mean()
        assert 0.9 < float(even / odd) < 1.1, (axis, float(even / odd))
