"""Can an explanation method be trusted: the randomisation sanity checks of Adebayo et al. (2018).

An explanation that describes what the model learned must change when what
was learned is destroyed. Two tests destroy it:

- model-parameter randomisation, cascading (:func:`cascading_randomisation`):
  the layers are re-initialised one after the other from the output head
  down, on a copy of the model, and the maps are recomputed after each step;
- label randomisation (:func:`label_randomisation_similarity`): the caller
  retrains the model on shuffled labels and explains the same inputs again.

The maps before and after are compared with :func:`similarity` and the method
is given a verdict by :func:`sanity_verdict`. A method whose maps stay similar
shows the input (an edge detector would too), not the model: it fails.

Reference: J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim,
"Sanity checks for saliency maps", NeurIPS 2018.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats
from skimage.metrics import structural_similarity

SANITY_METRICS = ("spearman", "ssim")

# A method fails when, after every weight has been re-drawn (or the labels
# shuffled), its maps still rank voxels with a Spearman correlation of at
# least this with the trained model's maps. Adebayo et al. judged by eye and
# gave no number; 0.5 is a convention: a map that keeps more than half of its
# rank order once nothing learned is left is explaining the input, not the
# model. The similarity itself is always reported, so a reader can apply a
# stricter bar.
DEFAULT_SANITY_THRESHOLD = 0.5


def similarity(a: np.ndarray, b: np.ndarray, *, mask: np.ndarray | None = None) -> dict:
    """Spearman correlation and SSIM of two relevance maps, on normalised absolute values.

    As Adebayo et al. did, each map is taken in absolute value and divided by
    its maximum (so it lies in [0, 1]) before comparison: the sign of a
    gradient and the scale of a map differ between models without the map
    meaning something else.

    Parameters
    ----------
    a, b : ndarray of shape (X, Y, Z) or (n_voxels,)
        Two maps of the same shape.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Voxels to compare (the brain); voxels outside are set to 0 before
        the SSIM is computed and ignored by the Spearman correlation.

    Returns
    -------
    dict with keys

    spearman : float
        Spearman correlation over the (masked) voxels; NaN if either map is
        constant there.
    ssim : float
        Structural similarity (scikit-image, 3D window of 7 voxels or the
        largest odd size that fits, data range 1), averaged over the mask, or
        over the volume with scikit-image's border crop when no mask is given.
        NaN for 1D maps, which have no neighbourhood, and for volumes thinner
        than 3 voxels.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim not in (1, 3):
        raise ValueError(
            "a and b must be maps of the same shape, (X, Y, Z) volumes or (n_voxels,) "
            f"masked arrays; got {a.shape} and {b.shape}."
        )
    if mask is None:
        inside = np.ones(a.shape, dtype=bool)
    else:
        inside = np.asarray(mask)
        if inside.shape != a.shape or inside.dtype != bool:
            raise ValueError(
                f"mask must be a bool array of the maps' shape {a.shape}; "
                f"got dtype {inside.dtype} and shape {inside.shape}."
            )
    a_unit = _unit_magnitude(a, inside)
    b_unit = _unit_magnitude(b, inside)

    values_a, values_b = a_unit[inside], b_unit[inside]
    if values_a.size < 2 or np.ptp(values_a) == 0 or np.ptp(values_b) == 0:
        spearman = float("nan")
    else:
        spearman = float(stats.spearmanr(values_a, values_b).statistic)

    # scikit-image needs an odd window no larger than the image: 7, or the
    # largest odd size that fits.
    thinnest = min(a.shape)
    window = min(7, thinnest if thinnest % 2 else thinnest - 1)
    if a.ndim != 3 or window < 3:
        ssim = float("nan")
    else:
        mean_ssim, ssim_map = structural_similarity(
            a_unit, b_unit, data_range=1.0, win_size=window, full=True
        )
        ssim = float(mean_ssim if mask is None else ssim_map[inside].mean())
    return {"spearman": spearman, "ssim": ssim}


def compare_maps(
    maps_before: np.ndarray, maps_after: np.ndarray, *, mask: np.ndarray | None = None
) -> dict:
    """:func:`similarity` of each subject's maps before and after, and their means.

    Parameters
    ----------
    maps_before, maps_after : ndarray of shape (n_subjects, X, Y, Z) or (n_subjects, n_voxels)
    mask : ndarray of bool, shape (X, Y, Z), optional

    Returns
    -------
    dict with keys

    spearman, ssim : float
        Means over subjects (subjects with a NaN value left out; NaN if all are).
    spearman_per_subject, ssim_per_subject : ndarray of shape (n_subjects,)
    """
    before = np.asarray(maps_before, dtype=float)
    after = np.asarray(maps_after, dtype=float)
    if before.shape != after.shape or before.ndim not in (2, 4) or before.shape[0] == 0:
        raise ValueError(
            "maps before and after must have the same shape, (n_subjects, X, Y, Z) or "
            f"(n_subjects, n_voxels); got {before.shape} and {after.shape}."
        )
    pairs = [similarity(x, y, mask=mask) for x, y in zip(before, after, strict=True)]
    result = {}
    for metric in SANITY_METRICS:
        values = np.array([pair[metric] for pair in pairs])
        finite = values[np.isfinite(values)]
        result[metric] = float(finite.mean()) if finite.size else float("nan")
        result[f"{metric}_per_subject"] = values
    return result


def randomisable_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Modules that own parameters, from the last registered (the output head) to the first.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of (name, module)
        Names as in ``model.named_modules()``. Registration order is taken
        for the order of the forward pass, which holds for sequential
        architectures such as rsxai's CNNs.
    """
    owners = [
        (name, module)
        for name, module in model.named_modules()
        if next(module.parameters(recurse=False), None) is not None
    ]
    return owners[::-1]


def cascading_randomisation(
    model: torch.nn.Module,
    inputs: Any,
    explain: Callable[[torch.nn.Module, Any], np.ndarray],
    *,
    seed: int = 0,
    mask: np.ndarray | None = None,
    original_maps: np.ndarray | None = None,
) -> list[dict]:
    """Cascading model-parameter randomisation: similarity to the trained maps, layer by layer.

    The model is deep-copied (the caller's model, its parameters, mode and
    the global torch random state are left untouched), set to eval mode, and
    its layers (:func:`randomisable_layers`) re-initialised one at a time from
    the output head down, each staying re-initialised for the next steps.
    After each step ``explain`` is called on the copy.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model.
    inputs : torch.Tensor of shape (n_subjects, 1, X, Y, Z)
        Passed unchanged to ``explain``.
    explain : callable
        ``explain(model, inputs) -> ndarray of shape (n_subjects, X, Y, Z)``.
    seed : int, default=0
        Seed of the re-initialisation.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Voxels compared (see :func:`similarity`).
    original_maps : ndarray of shape (n_subjects, X, Y, Z), optional
        The trained model's maps, if already computed; else computed here.

    Returns
    -------
    list of dict, one per step
        ``step`` (1 = output head re-initialised), ``layer`` (module name),
        ``kind`` (module class), and the keys of :func:`compare_maps`
        (``spearman``, ``ssim``: means over subjects, and per-subject
        arrays). The last step is the fully randomised model.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    randomised = copy.deepcopy(model).eval()
    layers = randomisable_layers(randomised)
    if not layers:
        raise ValueError("model has no parameters: there is nothing to randomise.")
    if original_maps is None:
        original_maps = _explained(explain, randomised, inputs)
    devices = sorted({p.device.index or 0 for p in randomised.parameters() if p.is_cuda})

    steps = []
    for step, (name, layer) in enumerate(layers, start=1):
        step_seed = int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
        # fork_rng keeps the caller's global random state as it was.
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(step_seed)
            _reinitialise(layer)
        maps = _explained(explain, randomised, inputs)
        steps.append(
            {
                "step": step,
                "layer": name,
                "kind": type(layer).__name__,
                **compare_maps(original_maps, maps, mask=mask),
            }
        )
    return steps


def label_randomisation_similarity(
    maps_trained: np.ndarray, maps_shuffled: np.ndarray, *, mask: np.ndarray | None = None
) -> dict:
    """Similarity of the maps of a model trained on true labels and one trained on shuffled ones.

    Parameters
    ----------
    maps_trained : ndarray of shape (n_subjects, X, Y, Z)
        Maps of the model trained on the true labels.
    maps_shuffled : ndarray of shape (n_subjects, X, Y, Z)
        Maps of the same subjects from the same architecture trained the
        same way on shuffled labels (the caller retrains).
    mask : ndarray of bool, shape (X, Y, Z), optional

    Returns
    -------
    dict
        As :func:`compare_maps`.
    """
    return compare_maps(maps_trained, maps_shuffled, mask=mask)


def sanity_verdict(
    similarities: dict | Sequence[dict],
    *,
    threshold: float = DEFAULT_SANITY_THRESHOLD,
    metric: str = "spearman",
) -> str:
    """ "pass", "fail" or "undetermined" for one method and one randomisation test.

    Parameters
    ----------
    similarities : dict or sequence of dict
        The result of :func:`label_randomisation_similarity`, or the list
        returned by :func:`cascading_randomisation`, of which the last step
        (every layer re-initialised) is judged.
    threshold : float, default=DEFAULT_SANITY_THRESHOLD (0.5)
        The method fails when the mean similarity is at least this.
    metric : {"spearman", "ssim"}, default="spearman"

    Returns
    -------
    str
        "fail" when the maps stayed similar, "pass" when they changed,
        "undetermined" when the similarity is NaN (maps constant).
    """
    if metric not in SANITY_METRICS:
        raise ValueError(f"metric must be one of {SANITY_METRICS}; got {metric!r}.")
    if not isinstance(similarities, dict):
        if len(similarities) == 0:
            raise ValueError("similarities is an empty list: no randomisation step to judge.")
        similarities = similarities[-1]
    value = similarities[metric]
    if not np.isfinite(value):
        return "undetermined"
    return "fail" if value >= threshold else "pass"


def _reinitialise(layer: torch.nn.Module) -> None:
    if hasattr(layer, "reset_parameters"):
        # The layer's own initialiser, as when the model was built; for batch
        # norm this also resets the running statistics.
        layer.reset_parameters()
        return
    # A module without an initialiser: draw from a normal distribution with
    # the trained parameter's mean and spread, which keeps its scale but
    # destroys what was learned.
    for parameter in layer.parameters(recurse=False):
        spread = parameter.std().item() if parameter.numel() > 1 else 0.0
        scale = spread if spread > 0 else max(abs(parameter.mean().item()), 1.0)
        parameter.normal_(mean=parameter.mean().item(), std=scale)


def _explained(explain: Callable, model: torch.nn.Module, inputs: Any) -> np.ndarray:
    maps = explain(model, inputs)
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    return np.asarray(maps, dtype=float)


def _unit_magnitude(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    magnitude = np.where(inside, np.abs(values), 0.0)
    peak = magnitude.max()
    return magnitude / peak if peak > 0 else magnitude
