"""Attribution maps of a 3D CNN's decisions: saliency, SmoothGrad, Integrated Gradients, CAMs.

:func:`attribute` gives one raw map per input volume, on the input grid, for
the class asked for (the predicted or the patient class, say). Raw means
unscaled: saliency and SmoothGrad are non-negative gradient magnitudes,
Integrated Gradients is signed and sums to the logit difference, Grad-CAM
and Grad-CAM++ are ReLU'd. Scaling for display or comparison is the
separate step :func:`normalise_maps`, which never flips a sign.

The gradient methods and Grad-CAM come from Captum; Grad-CAM++ is in
:mod:`rsxai.explain.gradcam`, the model handling in :mod:`rsxai.explain.model_hooks`. The
user's model is put in evaluation mode with frozen parameters for the call
and restored afterwards; hooks never outlive the call, even when it fails.

References
----------
Simonyan, Vedaldi & Zisserman (2014), Deep inside convolutional networks.
Smilkov et al. (2017), SmoothGrad: removing noise by adding noise.
Sundararajan, Taly & Yan (2017), Axiomatic attribution for deep networks.
Selvaraju et al. (2017), Grad-CAM.
Chattopadhyay et al. (2018), Grad-CAM++.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from rsxai.explain.gradcam import default_target_layer, gradcam_maps, gradcam_plus_plus_maps
from rsxai.explain.model_hooks import frozen_model, model_device_and_dtype, recorded_output

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcam++")
CAM_METHODS = ("gradcam", "gradcam++")
NORMALISATIONS = ("max_abs", "sum_abs", "rank")


def attribute(
    model: nn.Module,
    inputs: torch.Tensor | np.ndarray,
    *,
    method: str,
    target: int | Sequence[int] | np.ndarray,
    layer: str | None = None,
    n_samples: int = 16,
    noise_level: float = 0.15,
    n_steps: int = 16,
    baseline: float = 0.0,
    batch_size: int = 8,
    seed: int | Sequence[int] = 0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Raw attribution maps of ``model``'s logit for class ``target``, one per input.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits of shape (n, n_classes). It runs on the
        device of its parameters, in evaluation mode; its training flags and
        ``requires_grad`` flags are restored afterwards, its parameters and
        buffers are never written, and no hook is left on it.
    inputs : Tensor or ndarray of shape (n, 1, X, Y, Z)
        Input volumes, converted to the dtype and device of the model.
    method : {"saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcam++"}
        - ``"saliency"``: ``|dS/dx|``, S the target logit (Simonyan et al. 2014).
        - ``"smoothgrad"``: mean of ``|dS/dx|`` at ``n_samples`` noisy copies
          of the input (the absolute-value variant, as Captum's
          ``NoiseTunnel(Saliency)``; Smilkov et al. 2017), the noise added
          inside ``mask`` only.
        - ``"integrated_gradients"``: signed; ``(x - baseline)`` times the mean
          gradient along the straight path from the baseline, Gauss-Legendre
          quadrature with ``n_steps`` points; the map sums to
          ``S(x) - S(baseline)`` up to quadrature error (Sundararajan et al. 2017).
        - ``"gradcam"``: ReLU'd Grad-CAM at ``layer`` (Selvaraju et al. 2017).
        - ``"gradcam++"``: ReLU'd Grad-CAM++ at ``layer``, closed form for ReLU
          networks without the ``exp(S)`` factor (see
          :func:`rsxai.explain.gradcam.gradcam_plus_plus_weights`).

        CAM maps are upsampled trilinearly (``align_corners=False``) to the input grid.
    target : int or sequence of int
        Class whose logit is explained: one for all inputs or one per input.
    layer : str, optional
        CAM methods only: dotted name of the submodule whose output feature
        maps are used. None: :func:`rsxai.explain.gradcam.default_target_layer`.
    n_samples : int, default=16
        SmoothGrad: noisy copies per input.
    noise_level : float, default=0.15
        SmoothGrad: standard deviation of the Gaussian noise as a fraction
        of each input's range (max - min over ``mask``'s voxels), as in
        Smilkov et al. (who recommend 0.1-0.2).
    n_steps : int, default=16
        Integrated Gradients: quadrature points.
    baseline : float, default=0.0
        Integrated Gradients: the constant reference volume.
    batch_size : int, default=8
        Volumes sent through the model at once (noisy copies and path
        points count as volumes); bounds memory.
    seed : int or sequence of int, default=0
        SmoothGrad noise: one stream per input, ``SeedSequence(seed).spawn``'s
        child at the input's position. A sequence gives each input its own
        seed and the stream it would get alone, so that its map does not
        depend on the batch it came in. Other methods are deterministic.
    mask : ndarray of bool, shape (X, Y, Z), optional
        SmoothGrad: the voxels that hold signal (the brain mask on the input
        grid). Noise goes there only: the voxels outside are constant zero
        in every input the model was trained on, so noise there would probe
        the model where it never saw data. None: every voxel.

    Returns
    -------
    ndarray of float32, shape (n, X, Y, Z)
    """
    method = _check_choice("method", method, METHODS)
    counts = {"n_samples": n_samples, "n_steps": n_steps, "batch_size": batch_size}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if not np.isfinite(noise_level) or noise_level < 0:
        raise ValueError(f"noise_level must be a non-negative number; got {noise_level!r}.")
    if not np.isfinite(baseline):
        raise ValueError(f"baseline must be a finite number; got {baseline!r}.")
    if layer is not None and method not in CAM_METHODS:
        raise ValueError(
            f"layer is used by {' and '.join(CAM_METHODS)} only; got layer={layer!r} with "
            f"method={method!r}. Leave layer=None."
        )

    device, dtype = model_device_and_dtype(model)
    x = _as_inputs(inputs, device, dtype)
    inside = _as_noise_mask(mask, x)
    with frozen_model(model):
        if method in CAM_METHODS and layer is None:
            layer = default_target_layer(model, x.shape[1:])
        n_classes = _probe(model, x[:1], layer)
        targets = _as_targets(target, len(x), n_classes, device)
        if method == "saliency":
            maps = _saliency(model, x, targets, batch_size)
        elif method == "smoothgrad":
            seeds = _noise_seeds(seed, len(x))
            maps = _smoothgrad(
                model, x, inside, targets, seeds, n_samples, noise_level, batch_size
            )
        elif method == "integrated_gradients":
            maps = _integrated_gradients(model, x, targets, baseline, n_steps, batch_size)
        else:
            compute = gradcam_maps if method == "gradcam" else gradcam_plus_plus_maps
            maps = torch.cat(
                [
                    compute(model, x[i : i + batch_size], targets[i : i + batch_size], layer)
                    for i in range(0, len(x), batch_size)
                ]
            )
    return maps.detach().cpu().numpy().astype(np.float32, copy=False)


def gradcam_plus_plus(
    model: nn.Module,
    inputs: torch.Tensor | np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    layer: str | None = None,
    *,
    batch_size: int = 8,
) -> np.ndarray:
    """Grad-CAM++ maps, shape (n, X, Y, Z): ``attribute(..., method="gradcam++")``."""
    return attribute(
        model, inputs, method="gradcam++", target=target, layer=layer, batch_size=batch_size
    )


def normalise_maps(
    maps: np.ndarray, mask: np.ndarray | None = None, how: str = "max_abs"
) -> np.ndarray:
    """Scale each map for display or comparison, never changing a voxel's sign.

    Parameters
    ----------
    maps : ndarray of shape (n, X, Y, Z)
        Raw maps from :func:`attribute`.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Voxels that count (the brain); values outside are set to 0. None: all voxels.
    how : {"max_abs", "sum_abs", "rank"}, default="max_abs"
        - ``"max_abs"``: divided by the map's largest ``|value|`` in the mask (range [-1, 1]).
        - ``"sum_abs"``: divided by the sum of ``|value|`` in the mask, so that
          ``|values|`` sum to 1: the share of relevance of each voxel.
        - ``"rank"``: ``sign(value)`` times the rank of ``|value|`` among the
          mask's voxels divided by their number (ties share their mean
          rank; zeros stay 0): comparable across methods whatever their scale.

        An all-zero map stays all zero.

    Returns
    -------
    ndarray of float32, shape (n, X, Y, Z)
    """
    how = _check_choice("how", how, NORMALISATIONS)
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4:
        raise ValueError(f"maps must have shape (n, X, Y, Z); got shape {maps.shape}.")
    if mask is None:
        mask = np.ones(maps.shape[1:], dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != maps.shape[1:] or mask.dtype != bool:
        raise ValueError(
            f"mask must be a boolean array of shape {maps.shape[1:]} (the maps' grid); "
            f"got {mask.dtype} of shape {mask.shape}."
        )
    values = maps[:, mask]
    magnitudes = np.abs(values)
    if how == "rank":
        ranks = rankdata(magnitudes, axis=1) / max(values.shape[1], 1)
        scaled = np.sign(values) * ranks
    else:
        scale = magnitudes.max(axis=1) if how == "max_abs" else magnitudes.sum(axis=1)
        scaled = values / np.where(scale > 0, scale, 1.0)[:, None]
    normalised = np.zeros(maps.shape, dtype=np.float32)
    normalised[:, mask] = scaled
    return normalised


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
    return value


def _as_inputs(inputs: torch.Tensor | np.ndarray, device, dtype) -> torch.Tensor:
    if isinstance(inputs, torch.Tensor):
        x = inputs.detach()
    else:
        x = torch.as_tensor(np.asarray(inputs))
    if x.ndim != 5 or x.shape[0] < 1 or x.shape[1] != 1:
        raise ValueError(
            f"inputs must have shape (n_inputs, 1, X, Y, Z) with n_inputs >= 1; got shape "
            f"{tuple(x.shape)}. Add the channel axis with inputs[:, None] if it is missing."
        )
    if x.is_complex():
        raise ValueError(f"inputs must be real numbers; got dtype {x.dtype}.")
    # A copy, so that nothing done to it (requires_grad) reaches the caller's tensor.
    x = x.to(device=device, dtype=dtype, copy=True)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("inputs contain NaN or infinite values; attributions need finite inputs.")
    return x


def _as_noise_mask(mask: np.ndarray | None, x: torch.Tensor) -> torch.Tensor:
    """``mask`` as a boolean tensor on ``x``'s device, shape (X, Y, Z); None: all True."""
    if mask is None:
        return torch.ones(x.shape[2:], dtype=torch.bool, device=x.device)
    mask = np.asarray(mask)
    if mask.shape != tuple(x.shape[2:]) or mask.dtype != bool or not mask.any():
        raise ValueError(
            f"mask must be a boolean array of shape {tuple(x.shape[2:])} (the inputs' grid) "
            f"with at least one True voxel; got {mask.dtype} of shape {mask.shape}."
        )
    return torch.as_tensor(mask, device=x.device)


def _probe(model: nn.Module, first: torch.Tensor, layer: str | None) -> int:
    """Number of classes, after checking the logits' shape and the CAM layer on one input."""
    with torch.no_grad():
        if layer is None:
            logits = model(first)
        else:
            with recorded_output(model, layer):
                logits = model(first)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the model must return logits of shape (n_inputs, n_classes); it returned {shape}."
        )
    return int(logits.shape[1])


def _as_targets(target, n_inputs: int, n_classes: int, device) -> torch.Tensor:
    values = np.asarray(target)
    if values.ndim == 0:
        values = np.full(n_inputs, values)
    if values.ndim != 1 or len(values) != n_inputs or values.dtype.kind not in "iu":
        raise ValueError(
            f"target must be a class index or one class index per input ({n_inputs}); "
            f"got {target!r}."
        )
    if values.min() < 0 or values.max() >= n_classes:
        raise ValueError(
            f"target must be class indices in 0..{n_classes - 1} (the model has {n_classes} "
            f"outputs); got {sorted(set(values.tolist()))}."
        )
    return torch.as_tensor(values, dtype=torch.int64, device=device)


def _noise_seeds(seed: int | Sequence[int], n_inputs: int) -> list[int]:
    """One torch seed per input: position i of an int seed, or position 0 of its own seed."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        entropy = [(int(seed), position) for position in range(n_inputs)]
    else:
        entropy = [(int(value), 0) for value in seed]
        if len(entropy) != n_inputs:
            raise ValueError(
                f"seed must be an int or one int per input ({n_inputs}); got {len(entropy)} seeds."
            )
    return [
        int(
            np.random.SeedSequence(value, spawn_key=(position,)).generate_state(1, np.uint64)[0]
            >> 1
        )
        for value, position in entropy
    ]


def _saliency(model, x, targets, batch_size) -> torch.Tensor:
    # Lazy: Captum takes about 1 s to import.
    from captum.attr import Saliency

    saliency = Saliency(model)
    return torch.cat(
        [
            saliency.attribute(
                x[i : i + batch_size].detach().requires_grad_(), target=targets[i : i + batch_size]
            ).detach()[:, 0]
            for i in range(0, len(x), batch_size)
        ]
    )


def _smoothgrad(
    model, x, inside, targets, seeds, n_samples, noise_level, batch_size
) -> torch.Tensor:
    # Captum's NoiseTunnel draws from torch's global generator with one standard
    # deviation for the whole batch, over every voxel; here each input has its
    # own seeded stream, noise inside the mask only and a noise level relative
    # to its own range there.
    from captum.attr import Saliency

    saliency = Saliency(model)
    maps = []
    for volume, target, seed in zip(x, targets, seeds, strict=True):
        generator = torch.Generator().manual_seed(seed)
        # Drawn over the whole grid and then masked, so that the noise of a voxel
        # inside the mask does not depend on the mask.
        noise = torch.randn((n_samples, *volume.shape), generator=generator)
        noise = noise.to(device=x.device, dtype=x.dtype) * inside
        values = volume[0][inside]
        sigma = noise_level * (values.max() - values.min())
        noisy = volume + sigma * noise
        total = torch.zeros(volume.shape[1:], device=x.device, dtype=x.dtype)
        for i in range(0, n_samples, batch_size):
            chunk = noisy[i : i + batch_size].detach().requires_grad_()
            gradients = saliency.attribute(chunk, target=target.expand(len(chunk)))
            total += gradients.detach()[:, 0].sum(dim=0)
        maps.append(total / n_samples)
    return torch.stack(maps)


def _integrated_gradients(model, x, targets, baseline, n_steps, batch_size) -> torch.Tensor:
    # Lazy: Captum takes about 1 s to import.
    from captum.attr import IntegratedGradients

    integrated_gradients = IntegratedGradients(model)
    # Captum runs n_steps path points per input, internal_batch_size volumes at a time.
    per_call = max(1, batch_size // n_steps)
    maps = []
    for i in range(0, len(x), per_call):
        chunk = x[i : i + per_call]
        attributions = integrated_gradients.attribute(
            chunk,
            baselines=float(baseline),
            target=targets[i : i + per_call],
            n_steps=n_steps,
            method="gausslegendre",
            internal_batch_size=max(batch_size, len(chunk)),
        )
        maps.append(attributions.detach()[:, 0])
    return torch.cat(maps)
