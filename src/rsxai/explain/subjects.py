"""Explanation maps of a cross-validated CNN's held-out subjects.

Every subject is explained by the fold model that did not see it, for the
class it was predicted to be and for the patient class
(:func:`explain_subjects`). The maps are raw (:func:`rsxai.explain.attribution.attribute`)
and in masked space, ``(n_subjects, n_voxels)`` with the :class:`rsxai.grid.Grid`
voxel order, so that :meth:`Grid.to_img` writes them back into MNI space;
normalisation is the separate step of :mod:`rsxai.explain.group_metrics`.

Group maps and their comparisons are in :mod:`rsxai.explain.group_comparison`, the
checks of their trust in :mod:`rsxai.explain.fold_checks`. Nothing here reads or
writes files (that is :mod:`rsxai.stages.explain_network`, called by
:mod:`rsxai.stages.explain`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rsxai.cnn import CNNClassifier, crop_box, torch_threads, volumes_to_maps
from rsxai.explain.attribution import CAM_METHODS, METHODS, attribute

TARGETS = ("predicted", "patient")

#: File-name labels of the methods (BIDS entity values hold letters and digits only).
METHOD_LABELS = {
    "saliency": "saliency",
    "smoothgrad": "smoothgrad",
    "integrated_gradients": "integratedgradients",
    "gradcam": "gradcam",
    "gradcam++": "gradcampp",
}


@dataclass(frozen=True)
class AttributionSettings:
    """How :func:`rsxai.explain.attribution.attribute` is called for every map of a run.

    Parameters
    ----------
    smoothgrad_samples : int, default=16
        SmoothGrad: noisy copies per input.
    smoothgrad_noise : float, default=0.15
        SmoothGrad: noise SD as a fraction of each input's range in the mask
        (the noise is added inside the mask only).
    ig_steps : int, default=16
        Integrated Gradients: quadrature points.
    target_layer : str, optional
        Grad-CAM and Grad-CAM++ layer; None: the model's default layer.
    batch_size : int, default=16
        Volumes per forward pass.
    """

    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    ig_steps: int = 16
    target_layer: str | None = None
    batch_size: int = 16

    def attribute(self, model, volumes, method: str, classes, seeds, mask=None) -> np.ndarray:
        """Raw maps, shape (n, x, y, z), of ``model`` for class indices ``classes``.

        ``mask`` (bool, (x, y, z)): the brain mask on the volumes' grid, where
        SmoothGrad adds its noise (see :func:`rsxai.explain.attribution.attribute`).
        """
        return attribute(
            model,
            volumes,
            method=method,
            target=np.asarray(classes, dtype=np.int64),
            layer=self.target_layer if method in CAM_METHODS else None,
            n_samples=self.smoothgrad_samples,
            noise_level=self.smoothgrad_noise,
            n_steps=self.ig_steps,
            batch_size=self.batch_size,
            seed=[int(s) for s in seeds],
            mask=mask,
        )


def subject_seeds(seed: int, subjects: Sequence[int]) -> np.ndarray:
    """One SmoothGrad seed per subject, from the run's seed and the subject's position.

    A subject's noise is then the same whatever fold, batch or target it is
    explained in, so maps computed twice (the predicted and the patient
    class are often the same class) are identical.
    """
    return np.array(
        [np.random.SeedSequence([int(seed), int(s)]).generate_state(1)[0] for s in subjects],
        dtype=np.int64,
    )


def heldout_predictions(
    fold_models: Mapping[int, CNNClassifier], maps: np.ndarray, fold_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each subject's class and class probabilities from the fold model that did not see it.

    Parameters
    ----------
    fold_models : mapping of int to CNNClassifier
        Fitted model of each fold.
    maps : ndarray of shape (n_subjects, n_voxels)
        The map each subject had when it was held out.
    fold_of : ndarray of int, shape (n_subjects,)
        The fold in which each subject was held out.

    Returns
    -------
    predicted : ndarray of shape (n_subjects,)
        Class labels (the models' ``classes_``).
    probabilities : ndarray of shape (n_subjects, n_classes)
    """
    fold_of = check_folds(fold_models, maps, fold_of)
    first = fold_models[int(fold_of[0])]
    predicted = np.empty(len(maps), dtype=first.classes_.dtype)
    probabilities = np.empty((len(maps), first.classes_.size))
    for fold, subjects in subjects_by_fold(fold_of):
        model = fold_models[fold]
        probabilities[subjects] = model.predict_proba(maps[subjects])
        predicted[subjects] = model.classes_[probabilities[subjects].argmax(axis=1)]
    return predicted, probabilities


def target_labels(
    targets: Sequence[str], predicted: np.ndarray, positive_label=1
) -> dict[str, np.ndarray]:
    """The class label explained for each subject under each target name.

    ``"predicted"``: the subject's predicted class; ``"patient"``: ``positive_label``.
    """
    labels = {}
    for target in targets:
        if target == "predicted":
            labels[target] = np.asarray(predicted)
        elif target == "patient":
            labels[target] = np.full(len(predicted), positive_label)
        else:
            raise ValueError(f"targets must be among {TARGETS}; got {target!r}.")
    return labels


def explain_subjects(
    fold_models: Mapping[int, CNNClassifier],
    maps: np.ndarray,
    fold_of: np.ndarray,
    *,
    methods: Sequence[str] = METHODS,
    targets: Sequence[str] = TARGETS,
    positive_label=1,
    settings: AttributionSettings | None = None,
    seed: int = 0,
    subjects: Sequence[int] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Raw attribution maps of every held-out subject, by the fold model that did not see it.

    Subjects are grouped by fold and explained in batches by their fold's
    model, on its ``n_threads`` PyTorch threads (see
    :func:`rsxai.cnn.training.torch_threads`). A subject whose predicted class
    is the patient class gets one map for both targets (computed once).

    Parameters
    ----------
    fold_models : mapping of int to CNNClassifier
        Fitted model of each fold.
    maps : ndarray of shape (n_subjects, n_voxels)
        The map each subject had when it was held out.
    fold_of : ndarray of int, shape (n_subjects,)
        The fold in which each subject was held out.
    methods : sequence of str, default=all of :data:`rsxai.explain.attribution.METHODS`
    targets : sequence of {"predicted", "patient"}, default=both
    positive_label : default=1
        The patient class among the models' ``classes_``.
    settings : AttributionSettings, optional
    seed : int, default=0
        SmoothGrad noise (see :func:`subject_seeds`).
    subjects : sequence of int, optional
        Each row's position in the cohort, which with ``seed`` fixes its
        SmoothGrad noise; None: ``0 .. n_subjects - 1``. Give it when
        explaining part of a cohort to get the maps of the whole-cohort call.

    Returns
    -------
    dict
        ``maps[method][target]``: ndarray of float32, shape (n_subjects,
        n_voxels), raw relevance in the mask's voxel order.
    """
    settings = settings or AttributionSettings()
    fold_of = check_folds(fold_models, maps, fold_of)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods must be among {METHODS}; got {unknown}.")
    predicted, _ = heldout_predictions(fold_models, maps, fold_of)
    labels = target_labels(targets, predicted, positive_label)
    seeds = subject_seeds(seed, range(len(maps)) if subjects is None else subjects)
    if len(seeds) != len(maps):
        raise ValueError(
            f"subjects must give one position per row of maps ({len(maps)}); got {len(seeds)}."
        )
    result = {m: {t: np.zeros(maps.shape, dtype=np.float32) for t in targets} for m in methods}
    for fold, members in subjects_by_fold(fold_of):
        model = fold_models[fold]
        with torch_threads(getattr(model, "n_threads", None)):
            _explain_fold(model, maps[members], members, labels, seeds, methods, settings, result)
    return result


def _explain_fold(
    model: CNNClassifier,
    maps: np.ndarray,
    members: np.ndarray,
    labels: Mapping[str, np.ndarray],
    seeds: np.ndarray,
    methods: Sequence[str],
    settings: AttributionSettings,
    result: dict,
) -> None:
    """Fill ``result[method][target][members]`` with one fold model's maps of its subjects."""
    mask = np.asarray(model.mask, dtype=bool)
    box_mask = mask[crop_box(mask)]
    volumes = model.to_volumes(maps)
    classes = {t: class_indices(model, label[members]) for t, label in labels.items()}
    # Unique (subject, class) pairs: the predicted and the patient class often coincide.
    pairs = np.unique(
        np.concatenate([np.stack([np.arange(len(members)), c], axis=1) for c in classes.values()]),
        axis=0,
    )
    for method in methods:
        relevance = settings.attribute(
            model.model_,
            volumes[pairs[:, 0]],
            method,
            pairs[:, 1],
            seeds[members][pairs[:, 0]],
            mask=box_mask,
        )
        masked = volumes_to_maps(relevance, mask)
        for target, indices in classes.items():
            rows = [_pair_row(pairs, i, k) for i, k in enumerate(indices)]
            result[method][target][members] = masked[rows]


def box_volumes(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked maps placed in the mask's bounding box, zero outside the mask.

    The inverse of :func:`rsxai.cnn.classifier.volumes_to_maps`.

    Parameters
    ----------
    maps : ndarray of shape (n, n_voxels)
    mask : ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    ndarray of float32, shape (n, x, y, z)
    """
    box_mask = mask[crop_box(mask)]
    volumes = np.zeros((len(maps), *box_mask.shape), dtype=np.float32)
    volumes[:, box_mask] = maps
    return volumes


def check_folds(fold_models, maps: np.ndarray, fold_of) -> np.ndarray:
    """``fold_of`` as an array, after checking shapes and that every fold has a model."""
    fold_of = np.asarray(fold_of)
    if maps.ndim != 2 or fold_of.shape != (maps.shape[0],):
        raise ValueError(
            f"maps must be (n_subjects, n_voxels) and fold_of (n_subjects,); got shapes "
            f"{maps.shape} and {fold_of.shape}."
        )
    missing = sorted(set(fold_of.tolist()) - set(fold_models))
    if missing:
        raise ValueError(
            f"no fold model for fold(s) {missing}; folds given: {sorted(fold_models)}."
        )
    return fold_of


def subjects_by_fold(fold_of: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(fold, positions of its subjects)`` for each fold, in increasing fold order."""
    for fold in np.unique(fold_of):
        yield int(fold), np.flatnonzero(fold_of == fold)


def class_indices(model: CNNClassifier, labels: np.ndarray) -> np.ndarray:
    """Output index of each class label in ``model.classes_`` (raises for an unknown label)."""
    positions = {label: k for k, label in enumerate(model.classes_.tolist())}
    unknown = sorted({label for label in np.asarray(labels).tolist() if label not in positions})
    if unknown:
        raise ValueError(
            f"class(es) {unknown} are not among the model's classes {model.classes_.tolist()}."
        )
    return np.array([positions[label] for label in np.asarray(labels).tolist()], dtype=np.int64)


def _pair_row(pairs: np.ndarray, subject: int, class_index: int) -> int:
    return int(np.flatnonzero((pairs[:, 0] == subject) & (pairs[:, 1] == class_index))[0])
