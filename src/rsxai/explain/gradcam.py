"""Grad-CAM and Grad-CAM++ for 3D CNNs, and the choice of their layer.

Grad-CAM (Selvaraju et al. 2017) comes from Captum (``LayerGradCam``).
Grad-CAM++ (Chattopadhyay et al. 2018) is written here because no library
gets it right for a batch of 3D volumes: Captum has none, and MONAI's
``GradCAMpp`` works at batch size 1 only, multiplies by ``exp(score)`` (inf,
then NaN, once a logit passes ~88 in float32), sums ``A * g**3`` where the
paper has ``g**3 * sum(A)`` and, by default, inverts the map with its
normaliser. Maps are upsampled trilinearly to the input grid. The model
handling (evaluation mode, hooks) is in :mod:`rsxai.explain.model_hooks`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rsxai.explain.model_hooks import (
    frozen_model,
    model_device_and_dtype,
    recorded_output,
    resolve_layer,
)

#: Fewest voxels per spatial axis of the default Grad-CAM layer's feature maps.
DEFAULT_MIN_LAYER_SIZE = 10


def default_target_layer(
    model: nn.Module, input_shape: Sequence[int], min_size: int = DEFAULT_MIN_LAYER_SIZE
) -> str:
    """Name of the layer whose feature maps Grad-CAM and Grad-CAM++ use by default.

    A model may name it: ``model.default_target_layer`` is then either a
    string or a callable taking the spatial input shape ``(X, Y, Z)`` and
    returning one. Otherwise, after one forward pass on zeros, it is the
    last leaf module, in forward order, that runs once and returns a 5D
    feature map with at least ``min_size`` voxels along every spatial axis
    (the input's size along an axis where the input has fewer). Grad-CAM's
    usual layer is the last convolutional one; on a 4 mm grid (input ~40 x
    48 x 40) its 5 x 6 x 5 maps would be too coarse to localise anything,
    hence the deepest layer that is still fine enough.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier; not modified.
    input_shape : sequence of int
        ``(X, Y, Z)`` or ``(channels, X, Y, Z)``; one channel if not given.
    min_size : int, default=10
        Fewest voxels per spatial axis of the chosen layer's feature maps.

    Returns
    -------
    str
        A dotted submodule name, as in ``model.named_modules()``.
    """
    shape = tuple(int(size) for size in input_shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (X, Y, Z) or (channels, X, Y, Z); got {tuple(input_shape)}."
        )
    shape = shape if len(shape) == 4 else (1, *shape)
    named = getattr(model, "default_target_layer", None)
    if named is not None:
        name = named(shape[1:]) if callable(named) else named
        resolve_layer(model, name)
        return name

    threshold = min(int(min_size), *shape[1:])
    calls: dict[str, int] = {}
    spatial_shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            # Re-inserting moves the name to the end: the dict keeps the order of last calls.
            spatial_shapes.pop(name, None)
            if isinstance(output, torch.Tensor) and output.ndim == 5:
                spatial_shapes[name] = tuple(output.shape[2:])

        return hook

    device, dtype = model_device_and_dtype(model)
    with frozen_model(model), contextlib.ExitStack() as hooks, torch.no_grad():
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                hooks.callback(module.register_forward_hook(hook_for(name)).remove)
        model(torch.zeros((1, *shape), device=device, dtype=dtype))
    candidates = [
        name
        for name, spatial in spatial_shapes.items()
        if calls[name] == 1 and min(spatial) >= threshold
    ]
    if not candidates:
        raise ValueError(
            f"no layer of {type(model).__name__} returns feature maps with at least "
            f"{threshold} voxels per axis for inputs of shape {shape}; give layer= explicitly."
        )
    return candidates[-1]


def upsample_to(maps: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Trilinear upsampling (``align_corners=False``) of (n, 1, x, y, z) maps to (n, X, Y, Z).

    Each output value is a convex combination of input values, so
    non-negative maps stay non-negative and no value exceeds the maximum.
    """
    spatial_shape = tuple(int(size) for size in spatial_shape)
    if tuple(maps.shape[2:]) != spatial_shape:
        maps = F.interpolate(maps, size=spatial_shape, mode="trilinear", align_corners=False)
    return maps[:, 0]


def gradcam_maps(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, layer: str
) -> torch.Tensor:
    """Grad-CAM maps of one batch, on the input grid (Captum's ``LayerGradCam``).

    ``ReLU(sum_k mean_voxels(dS/dA_k) * A_k)``, with ``S`` the target logit
    and ``A_k`` channel ``k`` of ``layer``'s output, upsampled trilinearly.
    The model should be in :func:`frozen_model`.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : Tensor of shape (n, 1, X, Y, Z)
    target : Tensor of int64, shape (n,)
    layer : str

    Returns
    -------
    Tensor of shape (n, X, Y, Z)
    """
    # Lazy: Captum takes about 1 s to import.
    from captum.attr import LayerGradCam

    # Captum removes its forward hook in a `finally` block.
    maps = LayerGradCam(model, resolve_layer(model, layer)).attribute(
        inputs, target=target, relu_attributions=True
    )
    return upsample_to(maps.detach(), inputs.shape[2:])


def gradcam_plus_plus_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights in the closed form for ReLU networks.

    Chattopadhyay et al. (2018) explain ``Y = exp(S)``, ``S`` the logit. For a
    piecewise-linear network the higher derivatives of ``S`` vanish, so with
    ``g = dS/dA``: ``dY/dA = Y g``, ``d2Y/dA2 = Y g**2``, ``d3Y/dA3 = Y g**3``,
    and their per-voxel coefficient
    ``alpha = g**2 / (2 g**2 + g**3 sum_voxels(A_k)) = 1 / (2 + g sum_voxels(A_k))``
    (``alpha = 0`` where ``g = 0``). The weight of channel ``k`` is
    ``Y * sum_voxels(alpha * ReLU(g))``; the factor ``Y = exp(S)`` is common to
    all channels and voxels of one map and is left out (it only rescales the
    map, and overflows for large logits), which leaves
    ``w_k = sum over voxels with g > 0 of g / (2 + g sum_voxels(A_k))``.

    With non-negative activations (a ReLU's output) every denominator is at
    least 2. Elsewhere a denominator can be zero or negative; such voxels are
    given no weight and a warning is raised.

    Parameters
    ----------
    activations : Tensor of shape (n, channels, x, y, z)
    gradients : Tensor of shape (n, channels, x, y, z)
        Gradient of each input's target logit with respect to ``activations``.

    Returns
    -------
    Tensor of shape (n, channels)
    """
    spatial = tuple(range(2, activations.ndim))
    denominators = 2 + gradients * activations.sum(dim=spatial, keepdim=True)
    positive = gradients > 0
    usable = positive & (denominators > 0)
    if bool((positive & ~usable).any()):
        warnings.warn(
            "Grad-CAM++ assumes non-negative activations (the output of a ReLU); this layer "
            "has negative ones and some voxels were left out. Choose the activation after it.",
            RuntimeWarning,
            stacklevel=3,
        )
    safe = torch.where(usable, denominators, torch.ones_like(denominators))
    terms = torch.where(usable, gradients / safe, torch.zeros_like(gradients))
    return terms.sum(dim=spatial)


def gradcam_plus_plus_maps(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, layer: str
) -> torch.Tensor:
    """Grad-CAM++ maps of one batch, on the input grid.

    ``ReLU(sum_k w_k A_k)`` with the weights of :func:`gradcam_plus_plus_weights`,
    upsampled trilinearly. Equal to the paper's map divided by
    ``exp(logit)``, so finite for any logit. The model should be in
    :func:`frozen_model`.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : Tensor of shape (n, 1, X, Y, Z)
    target : Tensor of int64, shape (n,)
    layer : str

    Returns
    -------
    Tensor of shape (n, X, Y, Z)
    """
    with recorded_output(model, layer) as recording:
        logits = model(inputs)
    activations = recording.output
    # Inputs are independent in evaluation mode: the gradient of the sum is each one's own.
    score = logits.gather(1, target[:, None]).sum()
    (gradients,) = torch.autograd.grad(score, activations)
    activations = activations.detach()
    weights = gradcam_plus_plus_weights(activations, gradients)
    maps = F.relu((weights[:, :, None, None, None] * activations).sum(dim=1, keepdim=True))
    return upsample_to(maps, inputs.shape[2:])
