"""What a model costs: its number of weights and the arithmetic of one volume.

Used by the CNN training benchmark to put the measured throughput against the
arithmetic limit of the machine (FLOP/s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["count_parameters", "flops_per_volume"]


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of weights of ``model`` (only those that require gradients by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_volume(
    model: nn.Module, in_shape: Sequence[int], *, training: bool = False
) -> float:
    """Floating-point operations to process one volume, counted from the layers' shapes.

    Counts the multiply-adds of every convolution and linear layer, two
    operations each (bias additions, normalisation, activations and pooling
    are left out: they are memory-bound and small next to the convolutions).
    With ``training=True`` the backward pass is added: for each such layer
    the weight gradient (as many operations as the forward pass) and, unless
    its input needs no gradient (the first layer, fed the data), the input
    gradient (as many again): about three times the forward count.

    Parameters
    ----------
    model : torch.nn.Module
    in_shape : tuple of 3 int
        Spatial shape (x, y, z) of the input volumes.
    training : bool, default=False
        Count forward + backward instead of forward only.

    Returns
    -------
    flops : float
    """
    counts: list[float] = []

    def count(module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.modules.conv._ConvNd):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            forward = 2.0 * output[0].numel() * per_output
        else:  # nn.Linear
            forward = 2.0 * output[0].numel() * module.in_features
        if not training:
            counts.append(forward)
            return
        needs_input_gradient = inputs[0].requires_grad
        counts.append(forward * (3.0 if needs_input_gradient else 2.0))

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.enable_grad():  # so that requires_grad tells which inputs need gradients
            model(torch.zeros((1, 1, *in_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return float(sum(counts))
