"""The classify stage of ``rsxai run``: cross-validation, significance, outputs.

Reads the preprocessed data (fold scope) or the dual-regression stacks
(cohort scope), runs :func:`rsxai.classify.cross_validate` with the CNN and
the linear baselines in the same folds, and writes per network and model the
out-of-fold predictions, the metrics with intervals and p-values, per-fold
results, the CNN's training curves and fold weights, and every subject's
held-out input map (what the explanations start from). :func:`classify_maps`
and :func:`write_classification` are shared with ``rsxai classify`` on a
user's own stack (:mod:`rsxai.pipeline.stack`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from rsxai.classify import (
    CrossValidation,
    aggregate_repeats,
    cross_validate,
    fold_metrics,
    permutation_scores,
    refit_permutation_scores,
)
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.outputs import output_path, read_json, write_json, write_nifti, write_tsv
from rsxai.stages.estimators import (
    baseline_estimator,
    cnn_estimator,
    configured_models,
    network_maps_estimator,
)
from rsxai.stages.preprocess import preprocessed_subjects

if TYPE_CHECKING:
    from rsxai.cohort import Cohort
    from rsxai.config import Config
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)

#: The scope reported with every metric of ``rsxai classify``.
EXTERNAL_SCOPE = "external maps"

SCOPE_DESCRIPTIONS = {
    "fold": (
        "fold: group ICA, network labelling and dual regression refitted on the training "
        "subjects of each fold; held-out subjects dual-regressed onto the training maps"
    ),
    "cohort": (
        "cohort (TRANSDUCTIVE): group ICA and network labelling fitted once on all subjects, "
        "held-out subjects included, as in the original study; accuracies may be optimistic"
    ),
    "external maps": (
        "external maps (POSSIBLY TRANSDUCTIVE): the subject maps were made outside rsxai "
        "(e.g. FSL dual_regression) and used as given in every fold; rsxai cannot know whether "
        "the group maps they were regressed onto were estimated with the test subjects "
        "included (a group ICA of the whole cohort makes this the cohort scope, and accuracies "
        "may be optimistic)"
    ),
}

#: Whether each scope lets held-out subjects shape the features (None: cannot be known).
SCOPE_TRANSDUCTIVE = {"fold": False, "cohort": True, "external maps": None}


class FixedMaps(BaseEstimator):
    """Already computed network maps behind the ``NetworkMaps`` interface.

    ``fit`` learns nothing and ``transform`` returns the rows of the given
    subject indices; used in cohort scope, where the dual-regression stage's
    maps are the features of every fold. A scikit-learn estimator, cloned
    like :class:`rsxai.networks.NetworkMaps`.

    Parameters
    ----------
    maps : ndarray of shape (n_subjects, n_networks, n_voxels)
    networks : sequence of str
        One name per map of a subject, in the order of ``maps``' second axis.

    Attributes
    ----------
    network_components_ : dict of str to int
        Position of each network in ``networks``.
    """

    def __init__(self, maps: np.ndarray, networks):
        self.maps = maps
        self.networks = networks

    def fit(self, subjects) -> FixedMaps:
        """Check the maps and name their networks; ``subjects`` is not used.

        Returns
        -------
        self
        """
        shape = np.shape(self.maps)
        networks = tuple(self.networks)
        if len(shape) != 3 or shape[1] != len(networks):
            raise InputError(
                "maps must have shape (n_subjects, n_networks, n_voxels) with n_networks = "
                f"len(networks) = {len(networks)}; got shape {shape}."
            )
        self.network_components_ = {name: k for k, name in enumerate(networks)}
        return self

    def transform(self, subjects) -> np.ndarray:
        """The maps of the subjects at indices ``subjects``; (n, n_networks, n_voxels)."""
        check_is_fitted(
            self,
            "network_components_",
            msg="This %(name)s instance is not fitted yet; call fit(subjects) first.",
        )
        return self.maps[np.asarray(subjects, dtype=int)]


def build_models(context: RunContext, mask: np.ndarray) -> dict:
    """The configured classifiers of a run, unfitted, keyed by model name."""
    return configured_models(context.config, context.cohort.y, mask)


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
    # Fewer restarts than the cohort's group ICA (one fit per fold), and no
    # progress bars from the folds.
    return network_maps_estimator(context, grid).set_params(
        n_restarts=context.config.classify.fold_ica_restarts, progress=False
    )


def _log_fold(split, network, model, seconds) -> None:
    logger.info(
        "classify: repeat %d fold %d %s %s in %.1f s",
        split.repeat,
        split.fold,
        network,
        model,
        seconds,
    )


def classify_maps(
    features, subjects, y: np.ndarray, labels, mask: np.ndarray, config: Config, *, cv_scope: str
) -> CrossValidation:
    """Cross-validate the configured models on the features of ``subjects``.

    Shared by the pipeline's classify stage and ``rsxai classify`` on a user's stack.

    Parameters
    ----------
    features : NetworkMaps or FixedMaps (unfitted)
        The group feature step (see :func:`rsxai.classify.cross_validate`).
    subjects : sequence
        What ``features`` transforms, in the order of ``y``.
    y : ndarray of shape (n_subjects,)
    labels : sequence of str
        Subject labels written to the predictions.
    mask : ndarray of bool, shape (X, Y, Z)
    config : Config
        Its ``[classify]`` and ``[run]`` options are used.
    cv_scope : {"fold", "cohort"}
    """
    options = config.classify
    return cross_validate(
        features,
        subjects,
        y,
        configured_models(config, y, mask),
        subject_labels=labels,
        cv_scope=cv_scope,
        scheme=options.cv_scheme,
        n_splits=options.cv_folds,
        n_repeats=options.cv_repeats,
        random_state=config.run.random_seed,
        keep_fold_maps=options.baseline_permutations > 0 or options.cnn_permutations > 0,
        on_fold=_log_fold,
        n_jobs=config.run.n_jobs,
    )


def run_classify(context: RunContext) -> list[Path]:
    """Cross-validate every model on every selected network; write the results."""
    labels = [s.label for s in context.cohort.subjects]
    scope = context.config.classify.cv_scope
    if context.fsl is not None:
        # No rs-fMRI to refit group ICA on in each fold: FSL's maps are used as given.
        if scope == "fold":
            logger.warning(
                "classify: cv_scope = fold needs the rs-fMRI series; with an FSL "
                "dual_regression folder as input the maps are used as given (scope: %s).",
                EXTERNAL_SCOPE,
            )
        scope = EXTERNAL_SCOPE
    if scope == "fold":
        grid, loaders = preprocessed_subjects(context)
        features, subjects = _fold_estimator(context, grid), loaders
    else:
        grid = Grid.from_img(output_path(context.out_dir, "mask"))
        features, subjects = _stage_maps(context, grid), list(range(len(labels)))
    result = classify_maps(
        features,
        subjects,
        context.cohort.y,
        labels,
        grid.mask,
        context.config,
        # Fixed maps are fitted on nothing, as in the cohort scope.
        cv_scope="fold" if scope == "fold" else "cohort",
    )
    written, entry = write_classification(
        context.out_dir, context.config, context.cohort, grid, result, cv_scope=scope
    )
    context.summary.update("classification", entry)
    return written


def _significance(
    config: Config,
    y: np.ndarray,
    result: CrossValidation,
    network: str,
    model: str,
    mask: np.ndarray,
):
    """Permutation null of a model's whole CV (first repeat), or None when not asked for."""
    n_permutations = (
        config.classify.cnn_permutations
        if model == "cnn"
        else config.classify.baseline_permutations
    )
    if n_permutations == 0 or network == "ensemble":
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
    if model == "cnn":
        return refit_permutation_scores(
            cnn_estimator(config, mask),
            fold_X,
            y,
            folds,
            n_permutations=n_permutations,
            seed=config.run.random_seed,
        )
    return permutation_scores(
        baseline_estimator(config, y, model),
        fold_X,
        y,
        folds,
        n_permutations=n_permutations,
        seed=config.run.random_seed,
        n_jobs=config.run.n_jobs,
    )


def write_classification(
    out_dir: Path,
    config: Config,
    cohort: Cohort,
    grid: Grid,
    result: CrossValidation,
    *,
    cv_scope: str | None = None,
) -> tuple[list[Path], dict]:
    """Write predictions, metrics, folds, nulls, curves, weights and held-out maps.

    Parameters
    ----------
    out_dir : Path
    config : Config
        Its ``[classify]`` and ``[run]`` options are used.
    cohort : Cohort
        The subjects, in the order of the cross-validation (labels, groups, ``y``).
    grid : Grid
    result : CrossValidation
    cv_scope : str, optional
        A key of :data:`SCOPE_DESCRIPTIONS` reported with every metric
        (default: the ``cv_scope`` option).

    Returns
    -------
    written : list of Path
    entry : dict
        The ``classification`` entry of ``summary.json``.
    """
    options, y = config.classify, cohort.y
    scope = cv_scope or options.cv_scope
    written: list[Path] = []
    summary: dict = {
        "cv": {
            "scheme": options.cv_scheme,
            "n_splits": options.cv_folds if options.cv_scheme == "kfold" else len(y),
            "n_repeats": options.cv_repeats if options.cv_scheme == "kfold" else 1,
            "cv_scope": scope,
            "transductive": SCOPE_TRANSDUCTIVE[scope],
            "description": SCOPE_DESCRIPTIONS[scope],
        },
        "feature_seconds": [round(s, 2) for s in result.feature_seconds],
        "networks": {},
    }
    order = pd.DataFrame(
        {
            "participant_id": [f"sub-{s.label}" for s in cohort.subjects],
            "group": cohort.groups,
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
        permutation = _significance(config, y, result, network, model, grid.mask)
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
    return written, summary
