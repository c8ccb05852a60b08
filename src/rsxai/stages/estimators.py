"""Every object built from the configuration: classifiers, network-maps estimator, confounds.

One place builds the classifiers, so that the classify stage, ``rsxai classify``, the
permutation tests and the explain stage (which rebuilds the CNN around the
saved fold weights) all use the very same settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rsxai.classify import LinearBaseline, ScreenedBaseline
from rsxai.cnn import CNNClassifier
from rsxai.exceptions import InputError
from rsxai.networks import NetworkMaps

if TYPE_CHECKING:
    from rsxai.config import Config
    from rsxai.grid import Grid
    from rsxai.stages.context import RunContext


def _inner_folds(y: np.ndarray, scheme: str, n_splits: int) -> int:
    """Inner-CV folds for the baselines' C: 5, or fewer when a training fold is small."""
    smallest = int(np.bincount(y).min())
    held_out = 1 if scheme == "loo" else int(np.ceil(smallest / n_splits))
    return int(max(2, min(5, smallest - held_out)))


def baseline_estimator(config: Config, y: np.ndarray, kind: str):
    """A linear baseline (``kind``: svm or logistic) configured by the ``[classify]`` options."""
    options = config.classify
    inner_cv = _inner_folds(y, options.cv_scheme, options.cv_folds)
    return LinearBaseline(kind=kind, inner_cv=inner_cv, random_state=config.run.random_seed)


def screened_estimator(config: Config, mask: np.ndarray, voxel_size):
    """The screened baseline configured by the ``[classify]`` options (unfitted).

    Parameters
    ----------
    config : Config
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size : float or sequence of 3 float
        The grid's voxel edges in mm: the smoothing FWHM is in mm.
    """
    options = config.classify
    return ScreenedBaseline(
        mask,
        voxel_size,
        smoothing_fwhm=options.screened_fwhm,
        n_voxels=options.screened_voxels,
    )


def cnn_estimator(config: Config, mask: np.ndarray):
    """The CNN classifier configured by the run's ``[classify]`` options (unfitted)."""
    options = config.classify
    return CNNClassifier(
        mask,
        n_blocks=options.cnn_blocks,
        width=options.cnn_width,
        dropout=options.cnn_dropout,
        max_epochs=options.cnn_epochs,
        patience=options.cnn_patience,
        start_from_epoch=options.cnn_start_from_epoch,
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


def configured_models(config: Config, y: np.ndarray, mask: np.ndarray, voxel_size=None) -> dict:
    """The classifiers of the ``[classify]`` options, unfitted, keyed by model name.

    Parameters
    ----------
    config : Config
    y : ndarray of shape (n_subjects,)
        The labels (the size of the smaller group sets the baselines' inner folds).
    mask : ndarray of bool, shape (X, Y, Z)
        The analysis mask (the CNN's input grid).
    voxel_size : float or sequence of 3 float, optional
        The grid's voxel edges in mm; needed by the screened baseline.
    """
    models = {}
    for name in config.classify.models:
        if name == "cnn":
            models[name] = cnn_estimator(config, mask)
        elif name == "screened":
            if voxel_size is None:
                raise ValueError(
                    "configured_models: the screened model smooths in mm; give voxel_size "
                    "(the grid's voxel edges) or leave 'screened' out of classify.models."
                )
            models[name] = screened_estimator(config, mask, voxel_size)
        else:
            models[name] = baseline_estimator(config, y, name)
    return models


# ----------------------------------------------------------------------------- preprocess
def confounds_strategy(config: Config) -> dict:
    """The confound regressors the ``[preprocess]`` options ask for (``load_confounds`` keys)."""
    options = config.preprocess
    return {
        "motion": options.motion,
        "wm_csf": options.wm_csf,
        "global_signal": options.global_signal,
        "scrub_fd": options.scrub_fd,
    }


# ----------------------------------------------------------------------------- ica
def forced_components(values: list[str]) -> dict[str, int]:
    """``--force-component NETWORK=INDEX`` values as {network: index}; InputError if malformed."""
    forced = {}
    for item in values:
        name, _, index = item.partition("=")
        if not name or not index.strip().lstrip("-").isdigit():
            raise InputError(
                f"--force-component: {item!r} is not NETWORK=INDEX; give e.g. visual=3."
            )
        forced[name.strip()] = int(index)
    return forced


def network_maps_estimator(context: RunContext, grid: Grid):
    """A :class:`NetworkMaps` configured from the run's options (unfitted)."""
    config = context.config
    return NetworkMaps(
        grid,
        n_components=config.ica.n_components,
        networks=tuple(config.networks.networks),
        templates=config.networks.templates,
        force=forced_components(config.networks.force_component),
        min_r=config.networks.min_r,
        group_maps=config.ica.group_maps,
        n_restarts=config.ica.n_restarts,
        migp_dim=config.ica.migp_dim,
        des_norm=config.dual_regression.des_norm,
        variance_normalise=config.dual_regression.variance_normalise,
        random_state=config.run.random_seed,
        n_jobs=config.run.n_jobs,
        progress=context.progress,
    )
