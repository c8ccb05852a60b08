"""Faithfulness of relevance maps: deletion and insertion curves.

If a map ranks voxels by how much the model relies on them, removing the top
voxels first must lower the class probability faster than removing voxels in
random order (deletion), and restoring them first must raise it faster
(insertion). The curves follow the probability as a growing fraction of the
in-mask voxels is replaced; their areas summarise them (lower deletion area
and higher insertion area than the random order are what a faithful map
gives).

References: W. Samek et al., "Evaluating the visualization of what a deep
neural network has learned", IEEE TNNLS 2017 (most-relevant-first region
perturbation); V. Petsiuk, A. Das, K. Saenko, "RISE", BMVC 2018 (the deletion
and insertion names and areas).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import trapezoid

CURVES = ("deletion", "insertion", "deletion_random", "insertion_random")


def deletion_insertion(
    model: torch.nn.Module,
    inputs: np.ndarray | torch.Tensor,
    relevance: np.ndarray,
    mask: np.ndarray,
    *,
    target: int | np.ndarray,
    steps: int = 20,
    baseline: float | np.ndarray = 0.0,
    seed: int = 0,
    batch_size: int = 32,
) -> dict:
    """Deletion and insertion curves of each subject, by the map's order and by a random order.

    Only voxels inside ``mask`` are replaced; voxels outside keep their input
    value in every image. Voxels are ranked by ``relevance`` as given,
    highest first (pass ``abs(relevance)`` to rank by magnitude); voxels of
    equal relevance are ordered at random (seeded), so a flat map behaves as
    the random order. The random order is one seeded permutation per subject.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch (n, 1, X, Y, Z) to logits (n, n_classes) or, for a
        binary model with one output, (n,) or (n, 1). Run in eval mode without
        gradients; its mode is restored afterwards.
    inputs : ndarray or torch.Tensor of shape (n_subjects, 1, X, Y, Z)
    relevance : ndarray of shape (n_subjects, X, Y, Z)
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels that may be replaced (the brain).
    target : int or ndarray of int, shape (n_subjects,)
        Class whose probability is followed (softmax over the logits; for a
        single-output model sigmoid, and ``1 - sigmoid`` for class 0).
    steps : int, default=20
        Curve points after the start: fractions 0, 1/steps, ..., 1.
    baseline : float or ndarray of shape (X, Y, Z), default=0.0
        Value a removed voxel takes.
    seed : int, default=0
        Seed of the random order and of the tie-breaking.
    batch_size : int, default=32
        Images per forward pass.

    Returns
    -------
    dict with keys

    fractions : ndarray of shape (steps + 1,)
        Fraction of in-mask voxels removed (deletion) or inserted (insertion).
    deletion, insertion, deletion_random, insertion_random : ndarray
        Shape (n_subjects, steps + 1): probability of the target class along
        each curve.
    deletion_auc, insertion_auc, deletion_random_auc, insertion_random_auc : ndarray
        Shape (n_subjects,): area under each curve (trapezoid rule over the
        fractions, in [0, 1]).
    mean_deletion_auc, mean_insertion_auc, mean_deletion_random_auc, \
mean_insertion_random_auc : float
        Means over subjects.
    """
    volumes = _as_volumes(inputs)
    n_subjects, spatial = volumes.shape[0], volumes.shape[2:]
    relevance = np.asarray(relevance, dtype=float)
    mask = np.asarray(mask)
    targets = _targets(target, n_subjects)
    _check(relevance, mask, volumes.shape, steps, batch_size)
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), spatial)
    if not np.isfinite(base).all():
        raise ValueError("baseline must be finite.")

    in_mask = np.flatnonzero(mask)
    counts = np.rint(np.linspace(0, 1, steps + 1) * in_mask.size).astype(int)
    rng = np.random.default_rng(seed)
    curves = {name: np.empty((n_subjects, steps + 1)) for name in CURVES}

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for subject in range(n_subjects):
                scores = relevance[subject].ravel()[in_mask]
                shuffled = rng.permutation(in_mask.size)
                # Stable sort of a shuffled list: ties end up in random order.
                by_relevance = in_mask[shuffled[np.argsort(-scores[shuffled], kind="stable")]]
                at_random = in_mask[rng.permutation(in_mask.size)]
                image = volumes[subject, 0].ravel()
                for order, suffix in ((by_relevance, ""), (at_random, "_random")):
                    # One curve at a time bounds memory to (steps + 1) images.
                    for kind, build in (
                        ("deletion", _deletion_images),
                        ("insertion", _insertion_images),
                    ):
                        images = build(image, base.ravel(), order, counts)
                        curves[kind + suffix][subject] = _probabilities(
                            model, images.reshape(-1, 1, *spatial), targets[subject], batch_size
                        )
    finally:
        model.train(was_training)

    fractions = counts / in_mask.size
    result = {"fractions": fractions, **curves}
    for name in CURVES:
        areas = trapezoid(curves[name], fractions, axis=1)
        result[f"{name}_auc"] = areas
        result[f"mean_{name}_auc"] = float(areas.mean())
    return result


def _deletion_images(
    image: np.ndarray, base: np.ndarray, order: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    # Each image removes the voxels of the previous one and a few more, so
    # they are built by extending one running copy.
    images = np.empty((counts.size, image.size), dtype=np.float32)
    current = image.astype(np.float32, copy=True)
    done = 0
    for row, count in enumerate(counts):
        current[order[done:count]] = base[order[done:count]]
        done = count
        images[row] = current
    return images


def _insertion_images(
    image: np.ndarray, base: np.ndarray, order: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    images = np.empty((counts.size, image.size), dtype=np.float32)
    current = image.astype(np.float32, copy=True)
    current[order] = base[order]
    done = 0
    for row, count in enumerate(counts):
        current[order[done:count]] = image[order[done:count]]
        done = count
        images[row] = current
    return images


def _probabilities(
    model: torch.nn.Module, images: np.ndarray, target: int, batch_size: int
) -> np.ndarray:
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    probabilities = []
    for start in range(0, images.shape[0], batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device, dtype)
        logits = model(batch)
        n_outputs = 1 if logits.ndim == 1 else logits.shape[1]
        if target >= max(n_outputs, 2):
            raise ValueError(
                f"target {target} is not a class of a model with {n_outputs} output(s)."
            )
        if n_outputs == 1:
            positive = torch.sigmoid(logits.reshape(-1))
            chosen = positive if target == 1 else 1 - positive
        else:
            chosen = torch.softmax(logits, dim=1)[:, target]
        probabilities.append(chosen.double().cpu().numpy())
    return np.concatenate(probabilities)


def _as_volumes(inputs: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    volumes = np.asarray(inputs, dtype=np.float32)
    if volumes.ndim != 5 or volumes.shape[1] != 1 or volumes.shape[0] == 0:
        raise ValueError(f"inputs must have shape (n_subjects, 1, X, Y, Z); got {volumes.shape}.")
    return volumes


def _targets(target: int | np.ndarray, n_subjects: int) -> np.ndarray:
    targets = np.broadcast_to(np.asarray(target), (n_subjects,))
    if not np.issubdtype(targets.dtype, np.integer) or (targets < 0).any():
        raise ValueError(
            f"target must be a class index (int >= 0) or one per subject, shape ({n_subjects},); "
            f"got {target!r}."
        )
    return targets.astype(int)


def _check(
    relevance: np.ndarray,
    mask: np.ndarray,
    input_shape: tuple[int, ...],
    steps: int,
    batch_size: int,
) -> None:
    expected = (input_shape[0], *input_shape[2:])
    if relevance.shape != expected:
        raise ValueError(
            f"relevance must have shape {expected}, one map per input; got {relevance.shape}."
        )
    if not np.isfinite(relevance).all():
        raise ValueError("relevance holds NaN or infinite values; maps must be finite.")
    if mask.shape != input_shape[2:] or mask.dtype != bool or not mask.any():
        raise ValueError(
            f"mask must be a bool array of shape {input_shape[2:]} with at least one voxel set; "
            f"got dtype {mask.dtype} and shape {mask.shape}."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1; got {steps!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}.")
