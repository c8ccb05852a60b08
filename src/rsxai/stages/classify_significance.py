"""The classify stage's permutation tests: each model's null of its whole cross-validation.

Every model is tested on the first repeat's folds with the labels permuted within
the outer test folds, refitting (or, for the linear baselines, re-solving) every
fold, with the seeds the cross-validation gave each fold's model, so that the
unpermuted row reproduces the reported predictions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rsxai.classify import (
    CrossValidation,
    fold_random_state,
    permutation_scores,
    refit_permutation_scores,
    screened_permutation_scores,
)
from rsxai.grid import Grid
from rsxai.stages.estimators import baseline_estimator, cnn_estimator, screened_estimator

if TYPE_CHECKING:
    from rsxai.config import Config


def permutation_count(config: Config, model: str) -> int:
    """The configured label permutations of ``model``'s whole cross-validation."""
    options = config.classify
    return {"cnn": options.cnn_permutations, "screened": options.screened_permutations}.get(
        model, options.baseline_permutations
    )


def significance(
    config: Config,
    y: np.ndarray,
    result: CrossValidation,
    network: str,
    model: str,
    grid: Grid,
):
    """Permutation null of a model's whole CV (first repeat), or None when not asked for."""
    n_permutations = permutation_count(config, model)
    if n_permutations == 0 or network == "ensemble":
        return None
    splits = [s for s in result.splits if s.repeat == 0]
    # The seeds cross_validate gave each fold's model: the unpermuted row then refits the
    # reported predictions, and the observed accuracy is the one the null is of.
    seeds = [fold_random_state(config.run.random_seed, split) for split in splits]
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
            cnn_estimator(config, grid.mask),
            fold_X,
            y,
            folds,
            n_permutations=n_permutations,
            seed=config.run.random_seed,
            fold_random_states=seeds,
        )
    if model == "screened":
        return screened_permutation_scores(
            screened_estimator(config, grid.mask, grid.voxel_size),
            fold_X,
            y,
            folds,
            n_permutations=n_permutations,
            seed=config.run.random_seed,
            fold_random_states=seeds,
        )
    return permutation_scores(
        baseline_estimator(config, y, model),
        fold_X,
        y,
        folds,
        n_permutations=n_permutations,
        seed=config.run.random_seed,
        n_jobs=config.run.n_jobs,
        fold_random_states=seeds,
    )
