"""Temporary flags and hooks on the user's model, for one attribution call, always released.

:func:`frozen_model` puts the model in evaluation mode with frozen parameters
and restores every flag afterwards; :func:`recorded_output` records one
layer's output for Grad-CAM. Every hook is removed on exit, also when an
exception is raised; no parameter or buffer is ever written. (MONAI's CAM
classes, by contrast, leave their hooks on the model and switch its ReLUs'
``inplace`` off.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def model_device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer.

    A model with neither is taken to run on the CPU in float32.
    """
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def frozen_model(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode, no parameter gradients and autograd on, for the ``with`` block.

    Every module's ``training`` flag and every parameter's ``requires_grad``
    are put back on exit, also when an exception is raised. In evaluation
    mode batch normalisation reads its running statistics without updating
    them and dropout is off, so parameters and buffers are never written.
    Attributions differentiate with respect to inputs or activations only;
    frozen parameters spare autograd what their gradients would need.

    Inside the block, the gradient with respect to the input of a plain
    stride-1 ``Conv3d`` is computed as the forward convolution of the output
    gradient with the flipped kernel (see :class:`_ConvInputGradient`); the
    values are those of autograd's, to float rounding.
    """
    training = {module: module.training for module in model.modules()}
    requires_grad = {parameter: parameter.requires_grad for parameter in model.parameters()}
    with contextlib.ExitStack() as hooks:
        try:
            model.eval()
            for parameter in requires_grad:
                parameter.requires_grad_(False)
            for module in model.modules():
                if _has_fast_input_gradient(module):
                    hooks.callback(module.register_forward_hook(_conv_input_gradient_hook).remove)
            # The caller may be inside torch.no_grad(); gradients are the point here.
            with torch.enable_grad():
                yield model
        finally:
            for module, flag in training.items():
                module.training = flag
            for parameter, flag in requires_grad.items():
                parameter.requires_grad_(flag)


class _ConvInputGradient(torch.autograd.Function):
    """A frozen 3D convolution's output, with the gradient to its input done faster.

    For stride 1, dilation 1, one group and zero padding ``p`` with a kernel of
    size ``k``, the gradient with respect to the input is the convolution of
    the output gradient with the kernel flipped in space and its channel
    axes swapped, padded by ``k - 1 - p``. Autograd's own kernel for it
    (oneDNN's backward-data) takes about three times as long as this
    forward convolution when the input has one channel, as a CNN's first
    layer on single-channel maps does: measured 18 vs 5.6 ms per 1 x 40 x 48
    x 40 volume and 8 output channels on one CPU thread, which takes a whole
    forward and backward pass of a 3-block CNN from ~28 to ~18 ms. The
    output values are the module's own.
    """

    @staticmethod
    def forward(ctx, inputs, output, weight, padding):
        ctx.save_for_backward(weight)
        ctx.padding = padding
        # `output` is the module's result, detached: handed back as is, marked
        # as modified so that it may be modified in place downstream.
        ctx.mark_dirty(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        (weight,) = ctx.saved_tensors
        padding = [size - 1 - pad for size, pad in zip(weight.shape[2:], ctx.padding, strict=True)]
        # oneDNN is faster with channels-last gradients: 5.6 vs 9.1 ms, conversion included.
        grad_output = grad_output.contiguous(memory_format=torch.channels_last_3d)
        grad_input = F.conv3d(grad_output, weight.flip(2, 3, 4).transpose(0, 1), padding=padding)
        return grad_input, None, None, None


def _has_fast_input_gradient(module: nn.Module) -> bool:
    if not isinstance(module, nn.Conv3d) or type(module).forward is not nn.Conv3d.forward:
        return False
    padding = module.padding
    return (
        module.stride == (1, 1, 1)
        and module.dilation == (1, 1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(padding, str)
        and all(0 <= pad < size for pad, size in zip(padding, module.kernel_size, strict=True))
    )


def _conv_input_gradient_hook(module: nn.Conv3d, args: tuple, output: torch.Tensor):
    (inputs,) = args
    frozen = not module.weight.requires_grad and (
        module.bias is None or not module.bias.requires_grad
    )
    if not (frozen and inputs.requires_grad and inputs.ndim == 5):
        return None
    return _ConvInputGradient.apply(inputs, output.detach(), module.weight, module.padding)


class LayerRecording:
    """The output of one layer during one forward pass (see :func:`recorded_output`)."""

    def __init__(self, name: str):
        self.name = name
        self.output: torch.Tensor | None = None

    def hook(self, module: nn.Module, args: tuple, output: object) -> torch.Tensor:
        if self.output is not None:
            raise ValueError(
                f"layer {self.name!r} ran more than once in one forward pass, so its feature "
                "maps are ambiguous; choose a layer that the model calls once."
            )
        if not isinstance(output, torch.Tensor) or output.ndim != 5:
            described = (
                f"a tensor of shape {tuple(output.shape)}"
                if isinstance(output, torch.Tensor)
                else type(output).__name__
            )
            raise ValueError(
                f"layer {self.name!r} returns {described}; Grad-CAM needs a layer whose output "
                "is a 5D feature map (n, channels, x, y, z), e.g. a convolution or activation."
            )
        # With frozen parameters nothing upstream needs gradients: start the graph here.
        self.output = output if output.requires_grad else output.detach().requires_grad_()
        # The model goes on with a copy, so that an in-place operation downstream
        # (ReLU(inplace=True)) cannot overwrite the recorded activations.
        return self.output.clone()


@contextlib.contextmanager
def recorded_output(model: nn.Module, layer: str) -> Iterator[LayerRecording]:
    """Record the output of submodule ``layer`` during forward passes inside the block.

    The forward hook is removed on exit, also when an exception is raised.
    The model sees a copy of the output, equal in value; gradients with
    respect to ``recording.output`` are those of the model's score.
    """
    recording = LayerRecording(layer)
    handle = resolve_layer(model, layer).register_forward_hook(recording.hook)
    try:
        yield recording
    finally:
        handle.remove()


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule of ``model`` named ``layer`` (a dotted name, as in ``named_modules``)."""
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer == "" or layer not in modules:
        names = [name for name in modules if name]
        shown = ", ".join(repr(name) for name in names[:40])
        more = f", ... ({len(names) - 40} more)" if len(names) > 40 else ""
        raise ValueError(
            f"layer must name a submodule of {type(model).__name__}; got {layer!r}. "
            f"Allowed: {shown or '(the model has no submodules)'}{more}."
        )
    return modules[layer]
