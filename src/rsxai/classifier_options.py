"""The classifiers the ``[classify]`` options configure: the CNN and the linear baselines.

One place builds them, so that the classify stage, ``rsxai classify``, the
permutation tests and the explain stage (which rebuilds the CNN around the
saved fold weights) all use the very same settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rsxai.config import Config

__all__ = ["baseline_estimator", "cnn_estimator", "configured_models"]


def _inner_folds(y: np.ndarray, scheme: str, n_splits: int) -> int:
    """Inner-CV folds for the baselines' C: 5, or fewer when a training fold is small."""
    smallest = int(np.bincount(y).min())
    held_out = 1 if scheme == "loo" else int(np.ceil(smallest / n_splits))
    return int(max(2, min(5, smallest - held_out)))


def baseline_estimator(config: Config, y: np.ndarray, kind: str):
    """A linear baseline (``kind``: svm or logistic) configured by the ``[classify]`` options."""
    from rsxai.baselines import LinearBaseline

    options = config.classify
    inner_cv = _inner_folds(y, options.cv_scheme, options.cv_folds)
    return LinearBaseline(kind=kind, inner_cv=inner_cv, random_state=config.run.random_seed)


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


def configured_models(config: Config, y: np.ndarray, mask: np.ndarray) -> dict:
    """The classifiers of the ``[classify]`` options, unfitted, keyed by model name.

    Parameters
    ----------
    config : Config
    y : ndarray of shape (n_subjects,)
        The labels (the size of the smaller group sets the baselines' inner folds).
    mask : ndarray of bool, shape (X, Y, Z)
        The analysis mask (the CNN's input grid).
    """
    return {
        name: cnn_estimator(config, mask) if name == "cnn" else baseline_estimator(config, y, name)
        for name in config.classify.models
    }
