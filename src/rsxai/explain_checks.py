"""Can the explanations be trusted: sanity checks and faithfulness on the fold models.

:func:`randomisation_checks` runs the two randomisation tests of Adebayo et
al. (2018) on one fold model (:mod:`rsxai.sanity_checks`);
:func:`faithfulness_curves` the deletion and insertion curves of every method
(:mod:`rsxai.faithfulness`) over held-out subjects, each with the model of its
fold. Maps and models come as :func:`rsxai.explain.explain_subjects` uses them;
nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone

from rsxai.cnn_classifier import CNNClassifier, crop_box
from rsxai.explain import (
    AttributionSettings,
    box_volumes,
    check_folds,
    class_indices,
    subject_seeds,
    subjects_by_fold,
)
from rsxai.faithfulness import deletion_insertion
from rsxai.sanity_checks import (
    cascading_randomisation,
    label_randomisation_similarity,
    sanity_verdict,
)


def randomisation_checks(
    fold_model: CNNClassifier,
    test_maps: np.ndarray,
    trained_maps: Mapping[str, np.ndarray],
    *,
    label,
    subjects: Sequence[int],
    settings: AttributionSettings | None = None,
    seed: int = 0,
    estimator: CNNClassifier | None = None,
    train_maps: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Adebayo et al.'s cascading weight randomisation and label randomisation, per method.

    The class explained is fixed (``label``, the patient class in the
    explain stage): the predicted class would change as weights are
    randomised, and the maps would differ for that reason alone.

    Parameters
    ----------
    fold_model : CNNClassifier
        A fitted fold model (not modified: the cascade works on a copy).
    test_maps : ndarray of shape (n, n_voxels)
        Held-out maps of some of the fold's test subjects.
    trained_maps : mapping of str to ndarray of shape (n, n_voxels)
        Each method's raw maps of those subjects by ``fold_model`` for
        ``label`` (from :func:`explain_subjects`); its keys are the methods checked.
    label
        Class explained (one of ``fold_model.classes_``).
    subjects : sequence of int
        The subjects' positions in the cohort (their SmoothGrad seeds, as
        in :func:`explain_subjects`).
    settings : AttributionSettings, optional
    seed : int, default=0
        Seed of the run: SmoothGrad noise, the re-initialisation and the shuffle.
    estimator : CNNClassifier, optional
        Unfitted classifier configured as the fold models were trained
        (same parameters and ``random_state``). Given, with ``train_maps``
        and ``train_labels``, a clone is fitted on the fold's training data
        with the labels shuffled (seeded), and each method's maps of the test
        subjects by it are compared with ``trained_maps`` (check ``"label"``).
    train_maps : ndarray of shape (n_train, n_voxels), optional
    train_labels : ndarray of shape (n_train,), optional

    Returns
    -------
    DataFrame
        One row per method and step: ``method``, ``check`` ("cascading" or
        "label"), ``step`` (layers re-initialised so far; 0 for "label"),
        ``layer``, ``spearman``, ``ssim``, ``verdict`` (:func:`sanity_verdict`,
        on the fully randomised model and on the shuffled-label model; empty
        on the intermediate steps of the cascade).
    """
    settings = settings or AttributionSettings()
    mask = np.asarray(fold_model.mask, dtype=bool)
    box_mask = mask[crop_box(mask)]
    volumes = fold_model.to_volumes(test_maps)
    classes = class_indices(fold_model, np.full(len(test_maps), label))
    seeds = subject_seeds(seed, subjects)
    shuffled = None
    if estimator is not None:
        if train_maps is None or train_labels is None:
            raise ValueError(
                "estimator needs train_maps and train_labels (the fold's training data)."
            )
        order = np.random.default_rng([int(seed), 1]).permutation(len(train_labels))
        shuffled = clone(estimator).fit(train_maps, np.asarray(train_labels)[order])
    rows = []
    for method, maps in trained_maps.items():

        def explain(model, inputs, method=method):
            return settings.attribute(model, inputs, method, classes, seeds)

        original = box_volumes(maps, mask)
        steps = cascading_randomisation(
            fold_model.model_, volumes, explain, seed=seed, mask=box_mask, original_maps=original
        )
        for step in steps:
            last = step is steps[-1]
            rows.append(
                {
                    "method": method,
                    "check": "cascading",
                    "step": step["step"],
                    "layer": step["layer"],
                    "spearman": step["spearman"],
                    "ssim": step["ssim"],
                    "verdict": sanity_verdict(steps) if last else "",
                }
            )
        if shuffled is not None:
            similarity = label_randomisation_similarity(
                original, explain(shuffled.model_, volumes), mask=box_mask
            )
            rows.append(
                {
                    "method": method,
                    "check": "label",
                    "step": 0,
                    "layer": "all (retrained on shuffled labels)",
                    "spearman": similarity["spearman"],
                    "ssim": similarity["ssim"],
                    "verdict": sanity_verdict(similarity),
                }
            )
    return pd.DataFrame(
        rows, columns=["method", "check", "step", "layer", "spearman", "ssim", "verdict"]
    )


def faithfulness_curves(
    fold_models: Mapping[int, CNNClassifier],
    maps: np.ndarray,
    fold_of: np.ndarray,
    relevance: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    *,
    steps: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Deletion and insertion curves of each method and target, means over the subjects given.

    Voxels are removed (set to 0, the mean of the standardised input) or
    restored in the order of the raw relevance, highest first: for the
    signed Integrated Gradients, evidence for the class comes first, as the
    curves follow that class's probability. The random order is the same for
    every method (same seed, same subjects) and is given once, as method
    ``"random"``.

    Parameters
    ----------
    fold_models, maps, fold_of
        As :func:`explain_subjects` (only the subjects to be measured).
    relevance : mapping
        ``relevance[method][target]``, ndarray of shape (n_subjects, n_voxels).
    labels : mapping of str to ndarray of shape (n_subjects,)
        The class explained under each target (:func:`target_labels`).
    steps : int, default=10
    seed : int, default=0

    Returns
    -------
    DataFrame
        Long format: ``method``, ``target``, ``curve`` ("deletion",
        "insertion"), ``fraction``, ``probability`` (mean over subjects),
        ``auc`` (mean area of that curve), ``auc_random`` (the same with the
        random order), ``n_subjects``.
    """
    fold_of = check_folds(fold_models, maps, fold_of)
    rows = []
    for target, target_label in labels.items():
        random_done = False
        for method, by_target in relevance.items():
            sums: dict[str, np.ndarray] = {}
            fractions = None
            for fold, subjects in subjects_by_fold(fold_of):
                model = fold_models[fold]
                mask = np.asarray(model.mask, dtype=bool)
                result = deletion_insertion(
                    model.model_,
                    model.to_volumes(maps[subjects]),
                    box_volumes(by_target[target][subjects], mask),
                    mask[crop_box(mask)],
                    target=class_indices(model, target_label[subjects]),
                    steps=steps,
                    seed=seed,
                )
                fractions = result["fractions"]
                for name in ("deletion", "insertion", "deletion_random", "insertion_random"):
                    sums[name] = sums.get(name, 0) + result[name].sum(axis=0)
                    sums[name + "_auc"] = sums.get(name + "_auc", 0) + result[name + "_auc"].sum()
            n = len(maps)
            orders = [(method, "")] + ([] if random_done else [("random", "_random")])
            for shown, suffix in orders:
                for curve in ("deletion", "insertion"):
                    for fraction, probability in zip(
                        fractions, sums[curve + suffix] / n, strict=True
                    ):
                        rows.append(
                            {
                                "method": shown,
                                "target": target,
                                "curve": curve,
                                "fraction": float(fraction),
                                "probability": float(probability),
                                "auc": float(sums[curve + suffix + "_auc"] / n),
                                "auc_random": float(sums[curve + "_random_auc"] / n),
                                "n_subjects": n,
                            }
                        )
            random_done = True
    return pd.DataFrame(rows)
