"""Can the explanations be trusted: sanity checks and faithfulness on the fold models.

:func:`randomisation_checks` runs the two randomisation tests of Adebayo et
al. (2018) on one fold model (:mod:`rsxai.explain.sanity_checks`);
:func:`faithfulness_curves` the deletion and insertion curves of every method
(:mod:`rsxai.explain.faithfulness`) over held-out subjects, each with the model of its
fold. Maps and models come as :func:`rsxai.explain.explain_subjects` uses them;
nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone

from rsxai.cnn import CNNClassifier, crop_box, torch_threads
from rsxai.explain.faithfulness import deletion_insertion
from rsxai.explain.sanity_checks import (
    cascading_randomisation,
    label_randomisation_similarity,
    sanity_verdict,
)
from rsxai.explain.subjects import (
    AttributionSettings,
    box_volumes,
    check_folds,
    class_indices,
    subject_seeds,
    subjects_by_fold,
)


def randomisation_checks(
    fold_model: CNNClassifier,
    test_maps: np.ndarray,
    methods: Sequence[str],
    *,
    trained_maps: Mapping[str, np.ndarray] | None = None,
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
    methods : sequence of str
        Methods checked (of :data:`rsxai.explain.attribution.METHODS`).
    trained_maps : mapping of str to ndarray of shape (n, n_voxels), optional
        Each method's raw maps of those subjects by ``fold_model`` for
        ``label``, if already computed (:func:`explain_subjects`); else
        computed here.
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
    with torch_threads(getattr(fold_model, "n_threads", None)):
        return _randomisation_rows(
            fold_model, volumes, classes, seeds, methods, trained_maps, settings, seed, shuffled
        )


def _randomisation_rows(
    fold_model, volumes, classes, seeds, methods, trained_maps, settings, seed, shuffled
) -> pd.DataFrame:
    """The rows of :func:`randomisation_checks`."""
    mask = np.asarray(fold_model.mask, dtype=bool)
    box_mask = mask[crop_box(mask)]
    rows = []
    for method in methods:

        def explain(model, inputs, method=method):
            return settings.attribute(model, inputs, method, classes, seeds, mask=box_mask)

        if trained_maps is not None:
            original = box_volumes(trained_maps[method], mask)
        else:
            original = explain(fold_model.model_, volumes)
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
                    "layer": "all (shuffled labels)",
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
            for fold, members in subjects_by_fold(fold_of):
                model = fold_models[fold]
                mask = np.asarray(model.mask, dtype=bool)
                with torch_threads(getattr(model, "n_threads", None)):
                    result = deletion_insertion(
                        model.model_,
                        model.to_volumes(maps[members]),
                        box_volumes(by_target[target][members], mask),
                        mask[crop_box(mask)],
                        target=class_indices(model, target_label[members]),
                        steps=steps,
                        # One stream per fold, the same for every method: the random
                        # order of a subject does not depend on the method.
                        seed=int(np.random.SeedSequence([seed, fold]).generate_state(1)[0]),
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


def first_fold_checks(
    fold_models: Mapping[int, CNNClassifier],
    maps: np.ndarray,
    fold_of: np.ndarray,
    y: np.ndarray,
    methods: Sequence[str],
    *,
    trained_maps: Mapping[str, np.ndarray] | None = None,
    label=1,
    n_subjects: int = 4,
    settings: AttributionSettings | None = None,
    seed: int = 0,
    estimator: CNNClassifier | None = None,
) -> tuple[pd.DataFrame, dict]:
    """:func:`randomisation_checks` on the first fold's model and its first held-out subjects.

    The sanity checks are costly (the cascade explains again after each
    layer; label randomisation trains a CNN), so they run on one fold: its
    model, its first ``n_subjects`` held-out subjects (cohort order) and, for
    label randomisation, its training subjects (every other fold).

    Parameters
    ----------
    fold_models, maps, fold_of
        As :func:`rsxai.explain.explain_subjects`.
    y : ndarray of shape (n_subjects,)
        True labels (for the training set of label randomisation).
    methods : sequence of str
    trained_maps : mapping of str to ndarray of shape (n_subjects, n_voxels), optional
        Each method's maps of every subject for ``label``, if computed.
    label, settings, seed, estimator
        As :func:`randomisation_checks`.
    n_subjects : int, default=4

    Returns
    -------
    table : DataFrame
        As :func:`randomisation_checks`.
    checked : dict
        ``fold``, ``subjects`` (positions), ``label_randomisation`` (bool).
    """
    fold_of = check_folds(fold_models, maps, fold_of)
    fold = int(min(fold_of))
    subjects = np.flatnonzero(fold_of == fold)[:n_subjects]
    training = fold_of != fold
    table = randomisation_checks(
        fold_models[fold],
        maps[subjects],
        methods,
        trained_maps=None
        if trained_maps is None
        else {m: trained_maps[m][subjects] for m in methods},
        label=label,
        subjects=subjects,
        settings=settings,
        seed=seed,
        estimator=estimator,
        train_maps=maps[training],
        train_labels=np.asarray(y)[training],
    )
    checked = {
        "fold": fold,
        "subjects": subjects.tolist(),
        "label": label,
        "label_randomisation": estimator is not None,
    }
    return table, checked


def sampled_faithfulness(
    fold_models: Mapping[int, CNNClassifier],
    maps: np.ndarray,
    fold_of: np.ndarray,
    relevance: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    target: str = "predicted",
    n_subjects: int = 12,
    steps: int = 10,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """:func:`faithfulness_curves` of one target on a seeded random sample of subjects.

    Parameters
    ----------
    fold_models, maps, fold_of
        As :func:`rsxai.explain.explain_subjects`.
    relevance : mapping of str to ndarray of shape (n_subjects, n_voxels)
        Each method's maps of every subject for ``target``.
    labels : ndarray of shape (n_subjects,)
        The class explained for each subject.
    target : str, default="predicted"
        The target's name in the table.
    n_subjects : int, default=12
        Subjects drawn (all when fewer).
    steps, seed
        As :func:`faithfulness_curves`; ``seed`` also draws the subjects.

    Returns
    -------
    curves : DataFrame
        As :func:`faithfulness_curves`.
    measured : dict
        ``target``, ``subjects`` (positions), ``steps``, ``removed_value``.
    """
    n = len(maps)
    rng = np.random.default_rng([int(seed), 2])
    chosen = np.sort(rng.choice(n, min(int(n_subjects), n), replace=False))
    curves = faithfulness_curves(
        fold_models,
        maps[chosen],
        np.asarray(fold_of)[chosen],
        {method: {target: values[chosen]} for method, values in relevance.items()},
        {target: np.asarray(labels)[chosen]},
        steps=steps,
        seed=seed,
    )
    measured = {
        "target": target,
        "subjects": chosen.tolist(),
        "steps": steps,
        "removed_value": "0 (the mean of each standardised input map)",
    }
    return curves, measured
