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
    ENSEMBLE_RULE,
    CrossValidation,
    aggregate_repeats,
    cross_validate,
    fold_metrics,
)
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.networks import canonical_network_name
from rsxai.outputs import output_path, read_json, write_json, write_nifti, write_tsv
from rsxai.stages.classify_scope import (
    PERMUTATION_OF,
    SCOPE_DESCRIPTIONS,
    SCOPE_TRANSDUCTIVE,
    headline_description,
    reported_scope,
)
from rsxai.stages.classify_significance import permutation_count, significance
from rsxai.stages.estimators import (
    configured_models,
    network_maps_estimator,
)
from rsxai.stages.preprocess import preprocessed_subjects

if TYPE_CHECKING:
    from rsxai.cohort import Cohort
    from rsxai.config import Config
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)


#: How each model's ``y_pred`` is made (its own ``predict``), as written to its metrics; the
#: permutation test scores the same labels. The probability serves the ROC AUC only.
DECISION_RULES = {
    "cnn": "the class of the larger softmax output (CNNClassifier.predict)",
    "svm": "decision value > 0 (LinearBaseline.predict), not the Platt probability",
    "logistic": "decision value > 0 (LinearBaseline.predict), i.e. probability > 0.5",
    "screened": "decision value > 0 (ScreenedBaseline.predict), i.e. probability > 0.5",
}


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


def build_models(context: RunContext, mask: np.ndarray, voxel_size=None) -> dict:
    """The configured classifiers of a run, unfitted, keyed by model name."""
    return configured_models(context.config, context.cohort.y, mask, voxel_size)


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
    estimator = network_maps_estimator(context, grid).set_params(
        n_restarts=context.config.classify.fold_ica_restarts, progress=False
    )
    if estimator.force:
        # A forced index names a component of the all-subject ICA only: every fold
        # refits ICA and orders its components anew, so each fold takes the component
        # that best matches the forced all-subject map instead (logged per fold).
        force_maps = {}
        for name in estimator.force:
            network = canonical_network_name(name) or name
            image = nib.load(output_path(context.out_dir, "network_map", network=network))
            force_maps[network] = grid.from_img_data(np.asarray(image.dataobj))
        estimator.set_params(force=None, force_maps=force_maps)
    return estimator


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
    features,
    subjects,
    y: np.ndarray,
    labels,
    mask: np.ndarray,
    config: Config,
    *,
    cv_scope: str,
    voxel_size=None,
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
    voxel_size : float or sequence of 3 float, optional
        The grid's voxel edges in mm (the screened baseline smooths in mm).
    """
    options = config.classify
    return cross_validate(
        features,
        subjects,
        y,
        configured_models(config, y, mask, voxel_size),
        subject_labels=labels,
        cv_scope=cv_scope,
        scheme=options.cv_scheme,
        n_splits=options.cv_folds,
        n_repeats=options.cv_repeats,
        random_state=config.run.random_seed,
        # Only a permutation test reads the fold maps afterwards.
        keep_fold_maps=any(permutation_count(config, name) > 0 for name in options.models),
        on_fold=_log_fold,
        n_jobs=config.run.n_jobs,
    )


def run_classify(context: RunContext) -> list[Path]:
    """Cross-validate every model on every selected network; write the results."""
    labels = [s.label for s in context.cohort.subjects]
    # No rs-fMRI to refit group ICA on with an FSL folder: its maps are used as given.
    # Imported group maps are refitted in no fold either: each fold dual-regresses onto them.
    scope = reported_scope(context)
    if context.fsl is None and context.config.classify.cv_scope == "fold":
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
        cv_scope="cohort" if isinstance(features, FixedMaps) else "fold",
        voxel_size=grid.voxel_size,
    )
    written, entry = write_classification(
        context.out_dir, context.config, context.cohort, grid, result, cv_scope=scope
    )
    context.summary.update("classification", entry)
    context.timing["feature_seconds"] = [round(s, 2) for s in result.feature_seconds]
    return written


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
    n_repeats = options.cv_repeats if options.cv_scheme == "kfold" else 1
    summary: dict = {
        "cv": {
            "scheme": options.cv_scheme,
            "n_splits": options.cv_folds if options.cv_scheme == "kfold" else len(y),
            "n_repeats": n_repeats,
            "cv_scope": scope,
            "transductive": SCOPE_TRANSDUCTIVE[scope],
            "description": SCOPE_DESCRIPTIONS[scope],
            "headline": headline_description(n_repeats),
        },
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
        permutation = significance(config, y, result, network, model, grid)
        entry = {
            "network": network,
            "model": model,
            "cv": summary["cv"],
            # The first repeat: the quantity its permutation p is of (classify_scope).
            **metrics["first"],
            "repeats": {k: metrics[k] for k in ("n_repeats", "mean", "std", "min", "max")},
            "decision_rule": ENSEMBLE_RULE
            if network == "ensemble"
            else DECISION_RULES.get(model, f"{model}'s predict"),
            "permutation": None,
        }
        if network == "ensemble":
            entry["permutation_note"] = "no permutation test is run for the network ensemble"
        if permutation is not None:
            entry["permutation"] = {
                "p_value": permutation["p_value"]["accuracy"],
                "p_value_balanced_accuracy": permutation["p_value"]["balanced_accuracy"],
                # What the null is of: the first repeat's accuracy, by the decision rule.
                "observed_accuracy": permutation["observed"]["accuracy"],
                "observed_balanced_accuracy": permutation["observed"]["balanced_accuracy"],
                "n_permutations": permutation["n_permutations"],
                "scheme": "labels permuted within outer test folds (first repeat)",
                "of": PERMUTATION_OF,
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
