"""The classify stage of ``rsxai run``: cross-validation, significance, outputs.

Reads the preprocessed data (fold scope) or the dual-regression stacks
(cohort scope), runs :func:`rsxai.classify.cross_validate` with the CNN and
the linear baselines in the same folds, and writes per network and model the
out-of-fold predictions, the metrics with intervals and p-values, per-fold
results, the CNN's training curves and fold weights, and every subject's
held-out input map (what the explanations start from).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai.classify import CrossValidation, cross_validate
from rsxai.grid import Grid
from rsxai.outputs import output_path, read_json, write_json, write_nifti, write_tsv

if TYPE_CHECKING:
    from rsxai.config import Config
    from rsxai.pipeline import RunContext

logger = logging.getLogger("rsxai")

SCOPE_DESCRIPTIONS = {
    "fold": (
        "fold: group ICA, network labelling and dual regression refitted on the training "
        "subjects of each fold; held-out subjects dual-regressed onto the training maps"
    ),
    "cohort": (
        "cohort (TRANSDUCTIVE): group ICA and network labelling fitted once on all subjects, "
        "held-out subjects included, as in the original study; accuracies may be optimistic"
    ),
}


class FixedMaps:
    """Already computed network maps behind the ``NetworkMaps`` interface.

    ``fit`` learns nothing and ``transform`` returns the rows of the given
    subject indices; used in cohort scope, where the dual-regression stage's
    maps are the features of every fold.

    Parameters
    ----------
    maps : ndarray of shape (n_subjects, n_networks, n_voxels)
    networks : sequence of str
    """

    def __init__(self, maps: np.ndarray, networks):
        self.maps = maps
        self.networks = tuple(networks)

    def fit(self, subjects) -> FixedMaps:
        self.network_components_ = {name: k for k, name in enumerate(self.networks)}
        return self

    def transform(self, subjects) -> np.ndarray:
        return self.maps[np.asarray(subjects, dtype=int)]


def _inner_folds(y: np.ndarray, scheme: str, n_splits: int) -> int:
    """Inner-CV folds for the baselines' C: 5, or fewer when a training fold is small."""
    smallest = int(np.bincount(y).min())
    held_out = 1 if scheme == "loo" else int(np.ceil(smallest / n_splits))
    return int(max(2, min(5, smallest - held_out)))


def _baseline(context: RunContext, kind: str):
    from rsxai.baselines import LinearBaseline

    options = context.config.classify
    inner_cv = _inner_folds(context.cohort.y, options.cv_scheme, options.cv_folds)
    return LinearBaseline(
        kind=kind, inner_cv=inner_cv, random_state=context.config.run.random_seed
    )


def cnn_estimator(config: Config, mask: np.ndarray):
    """The CNN classifier configured by the run's ``[classify]`` options (unfitted)."""
    from rsxai.cnn_classifier import CNNClassifier

    options = config.classify
    return CNNClassifier(
        mask,
        n_blocks=options.cnn_blocks,
        width=options.cnn_width,
        dropout=options.cnn_dropout,
        max_epochs=options.cnn_epochs,
        patience=options.cnn_patience,
        batch_size=options.cnn_batch_size,
        learning_rate=options.cnn_learning_rate,
        weight_decay=options.cnn_weight_decay,
        shift_voxels=options.cnn_shift_voxels,
        noise_sd=options.cnn_noise_sd,
        random_state=config.run.random_seed,
        device=config.run.device,
        # One thread: results are bitwise identical only at a fixed thread count
        # (so any machine repeats them), and on 2 shared cores torch's default
        # threads were measured 15x slower (benchmarks/cnn_training.py).
        n_threads=1,
    )


def build_models(context: RunContext, mask: np.ndarray) -> dict:
    """The configured classifiers, unfitted, keyed by model name."""
    return {
        name: cnn_estimator(context.config, mask) if name == "cnn" else _baseline(context, name)
        for name in context.config.classify.models
    }


def _stage_maps(context: RunContext, grid: Grid) -> FixedMaps:
    summary = read_json(output_path(context.out_dir, "summary"))
    networks = list(summary["networks"])
    stacks = [
        grid.from_img_data(
            np.asarray(
                nib.load(context.out_dir / summary["networks"][name]["subject_maps"]).dataobj
            )
        )
        for name in networks
    ]
    return FixedMaps(np.stack(stacks, axis=1).astype(np.float32), networks)


def _fold_estimator(context: RunContext, grid: Grid):
    from rsxai.stage_runners import network_maps_estimator

    estimator = network_maps_estimator(context, grid)
    estimator.n_restarts = context.config.classify.fold_ica_restarts
    estimator.progress = False
    return estimator


def run_classify(context: RunContext) -> list[Path]:
    """Cross-validate every model on every selected network; write the results."""
    from rsxai.stage_runners import preprocessed_subjects

    options = context.config.classify
    grid, loaders = preprocessed_subjects(context)
    y = context.cohort.y
    labels = [s.label for s in context.cohort.subjects]
    if options.cv_scope == "fold":
        features, subjects = _fold_estimator(context, grid), loaders
    else:
        features, subjects = _stage_maps(context, grid), list(range(len(labels)))

    def progress(split, network, model, seconds):
        logger.info(
            "classify: repeat %d fold %d %s %s in %.1f s",
            split.repeat,
            split.fold,
            network,
            model,
            seconds,
        )

    result = cross_validate(
        features,
        subjects,
        y,
        build_models(context, grid.mask),
        subject_labels=labels,
        cv_scope=options.cv_scope,
        scheme=options.cv_scheme,
        n_splits=options.cv_folds,
        n_repeats=options.cv_repeats,
        random_state=context.config.run.random_seed,
        keep_fold_maps=options.baseline_permutations > 0,
        on_fold=progress,
    )
    return write_classification(context, grid, result)


def _significance(context: RunContext, result: CrossValidation, network: str, model: str):
    """Permutation null of a linear baseline's whole CV (first repeat), or None."""
    from rsxai.baselines import permutation_scores

    n_permutations = context.config.classify.baseline_permutations
    if model not in ("svm", "logistic") or n_permutations == 0 or network == "ensemble":
        return None
    splits = [s for s in result.splits if s.repeat == 0]
    j = None
    folds, fold_X = [], []
    for split in splits:
        maps = result.fold_maps[(split.repeat, split.fold)]
        networks = result.fold_networks[(split.repeat, split.fold)]
        j = networks.index(network)
        folds.append((split.train, split.test))
        fold_X.append(maps[:, j])
    return permutation_scores(
        _baseline(context, model),
        fold_X,
        context.cohort.y,
        folds,
        n_permutations=n_permutations,
        seed=context.config.run.random_seed,
        n_jobs=context.config.run.n_jobs,
    )


def write_classification(context: RunContext, grid: Grid, result: CrossValidation) -> list[Path]:
    """Write predictions, metrics, folds, nulls, curves, weights and held-out maps."""
    from rsxai.classification_metrics import aggregate_repeats, fold_metrics

    out_dir, options = context.out_dir, context.config.classify
    written: list[Path] = []
    summary: dict = {
        "cv": {
            "scheme": options.cv_scheme,
            "n_splits": options.cv_folds
            if options.cv_scheme == "kfold"
            else len(context.cohort.y),
            "n_repeats": options.cv_repeats if options.cv_scheme == "kfold" else 1,
            "cv_scope": options.cv_scope,
            "transductive": options.cv_scope == "cohort",
            "description": SCOPE_DESCRIPTIONS[options.cv_scope],
        },
        "feature_seconds": [round(s, 2) for s in result.feature_seconds],
        "networks": {},
    }
    order = pd.DataFrame(
        {
            "participant_id": [f"sub-{s.label}" for s in context.cohort.subjects],
            "group": context.cohort.groups,
        }
    )
    for network, maps in result.heldout_maps.items():
        path = write_nifti(
            output_path(out_dir, "cls_heldout_maps", network=network), grid.to_img(maps)
        )
        written += [
            path,
            write_tsv(output_path(out_dir, "cls_heldout_order", network=network), order),
        ]
    for (network, model), table in result.predictions.groupby(["network", "model"], sort=False):
        table = table.drop(columns=["network", "model"]).reset_index(drop=True)
        written.append(
            write_tsv(output_path(out_dir, "cls_predictions", network=network, model=model), table)
        )
        folds = fold_metrics(table)
        written.append(
            write_tsv(output_path(out_dir, "cls_folds", network=network, model=model), folds)
        )
        metrics = aggregate_repeats(table)
        permutation = _significance(context, result, network, model)
        entry = {
            "network": network,
            "model": model,
            "cv": summary["cv"],
            **metrics["consensus"],
            "repeats": {k: metrics[k] for k in ("n_repeats", "mean", "std", "min", "max")},
            "permutation": None,
        }
        if permutation is not None:
            entry["permutation"] = {
                "p_value": permutation["p_value"]["accuracy"],
                "p_value_balanced_accuracy": permutation["p_value"]["balanced_accuracy"],
                "n_permutations": permutation["n_permutations"],
                "scheme": "labels permuted within outer test folds (first repeat)",
            }
            null = pd.DataFrame(permutation["null"])
            written.append(
                write_tsv(output_path(out_dir, "cls_null", network=network, model=model), null)
            )
        written.append(
            write_json(output_path(out_dir, "cls_metrics", network=network, model=model), entry)
        )
        summary["networks"].setdefault(network, {})[model] = {
            key: entry[key]
            for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")
        } | {
            "binomial_p_value": entry.get("binomial_p_value"),
            "permutation_p_value": (entry["permutation"] or {}).get("p_value"),
            "metrics": str(
                output_path(out_dir, "cls_metrics", network=network, model=model).relative_to(
                    out_dir
                )
            ),
        }
    if not result.training.empty:
        for network, table in result.training.groupby("network", sort=False):
            written.append(
                write_tsv(
                    output_path(out_dir, "cls_training", network=network),
                    table.drop(columns=["network", "model"]),
                )
            )
    for (network, _model, repeat, fold), model in result.fold_models.items():
        written.append(
            model.save_weights(
                output_path(out_dir, "cls_weights", network=network, repeat=repeat, fold=fold)
            )
        )
    context.summary.update("classification", summary)
    return written
