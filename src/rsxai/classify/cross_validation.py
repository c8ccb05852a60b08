"""Cross-validated classification of network maps, leak-free by construction.

The group-level feature step (group ICA, network labelling, dual regression)
is one estimator, :class:`rsxai.networks.network_maps.NetworkMaps`, that
:func:`cross_validate` receives the way scikit-learn's ``cross_validate``
receives a ``Pipeline``. In ``fold`` scope a fresh copy is fitted on the
training subjects of every fold and the held-out subjects are dual-regressed
onto those training maps: nothing of a held-out subject is seen before it is
predicted. In ``cohort`` scope (the study's protocol) it is fitted once on
every subject, which is transductive and labelled so in every output.

The classifiers (the CNN and the linear baselines) are scikit-learn
estimators of masked maps, cloned for every fold and network; whatever they
learn (scaling, C, early stopping) they learn from the training subjects.
This module never imports ``ica``, ``networks`` or ``dual_regression``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone

from rsxai.classify.ensembles import ensemble_predictions
from rsxai.classify.splits import Split, make_splits
from rsxai.exceptions import InputError
from rsxai.parallel import with_aligned_arrays

logger = logging.getLogger(__name__)

CV_SCOPES = ("fold", "cohort")


@dataclass
class FoldFeatures:
    """Network maps of every subject as one fold's classifiers see them.

    Attributes
    ----------
    split : Split or None
        None in cohort scope (the same features serve every fold).
    maps : ndarray of shape (n_subjects, n_networks, n_voxels)
        Stage-2 maps; in fold scope the held-out rows were dual-regressed onto
        group maps learned from the training rows only.
    networks : tuple of str
    seconds : float
        Time to fit the feature step and transform every subject.
    """

    split: Split | None
    maps: np.ndarray
    networks: tuple[str, ...]
    seconds: float


def fit_features(
    network_maps: Any, subjects: Sequence[Any], split: Split | None = None
) -> FoldFeatures:
    """Fit a fresh copy of the feature step and transform every subject.

    Parameters
    ----------
    network_maps : NetworkMaps (unfitted)
        Any scikit-learn estimator (``sklearn.base.clone`` must work on it)
        with ``fit(subjects)``, ``transform(subjects)`` returning
        (n_subjects, n_networks, n_voxels) and ``network_components_``.
    subjects : sequence
        Preprocessed data of every subject (arrays or loaders), in the order of ``y``.
    split : Split or None
        Fit on ``split.train`` only (fold scope), or on every subject (None,
        cohort scope).

    Returns
    -------
    FoldFeatures
    """
    start = time.perf_counter()
    # A fresh, unfitted copy with the same parameters: in fold scope the
    # training subjects alone shape the group maps and the choice of each
    # network's component.
    fitted = clone(network_maps)
    fitted.fit(list(subjects) if split is None else [subjects[i] for i in split.train])
    maps = fitted.transform(list(subjects))
    return FoldFeatures(
        split, maps, tuple(fitted.network_components_), time.perf_counter() - start
    )


@dataclass
class CrossValidation:
    """Out-of-fold results of every model on every network.

    Attributes
    ----------
    predictions : DataFrame
        One row per subject, repeat, network and model: ``subject``,
        ``network``, ``model``, ``repeat``, ``fold``, ``y_true``, ``y_pred``
        (the fold model's own ``predict``: for the linear baselines decision
        value > 0, the rule their permutation test scores), ``probability``
        (of the patient class, for the ROC AUC and the ensemble; a Platt-scaled
        SVM's may fall on the other side of 0.5 than ``y_pred``). Ensembles
        have ``network == "ensemble"`` (rule: :func:`ensemble_predictions`).
    heldout_maps : dict of str to ndarray of shape (n_subjects, n_voxels)
        Per network, each subject's map as its fold's models saw it when it
        was held out (first repeat) — the input the explanations start from.
    fold_models : dict of (network, model, repeat, fold) to fitted estimator
        Kept for the models named in ``keep_models``.
    training : DataFrame
        Per-epoch training curves of models that record a ``history_``.
    feature_seconds : list of float
        Time spent on the feature step per fold (one entry in cohort scope).
    splits : list of Split
    fold_maps : dict of (repeat, fold) to ndarray of shape (n_subjects, n_networks, n_voxels)
        Every fold's features, when ``keep_fold_maps``.
    fold_networks : dict of (repeat, fold) to tuple of str
        Network order of each fold's features.
    """

    predictions: pd.DataFrame
    heldout_maps: dict[str, np.ndarray]
    fold_models: dict[tuple[str, str, int, int], Any] = field(default_factory=dict)
    training: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_seconds: list[float] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    fold_maps: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    fold_networks: dict[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)


def _history_rows(model: Any, network: str, name: str, split: Split) -> list[dict]:
    history = getattr(model, "history_", None)
    if history is None:
        return []
    rows = []
    for epoch, (train_loss, val_loss, val_acc) in enumerate(
        zip(history.train_loss, history.val_loss, history.val_accuracy, strict=True)
    ):
        rows.append(
            {
                "network": network,
                "model": name,
                "repeat": split.repeat,
                "fold": split.fold,
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "best_epoch": history.best_epoch + 1,
            }
        )
    return rows


@dataclass
class _FoldOutcome:
    """What one (repeat, fold) task sends back; ``maps`` and ``heldout`` only when needed."""

    networks: tuple[str, ...]
    feature_seconds: float
    maps: np.ndarray | None  # the fold's features, when kept (fold scope only)
    rows: list[dict]
    training: list[dict]
    models: dict[tuple[str, str, int, int], Any]
    fits: list[tuple[str, str, float]]  # (network, model, seconds), for ``on_fold``
    heldout: dict[str, np.ndarray]  # network -> maps of the test rows (first repeat)


def _run_fold(
    split: Split,
    network_maps: Any,
    subjects: Sequence[Any] | None,
    shared: FoldFeatures | None,
    y: np.ndarray,
    models: Mapping[str, Any],
    labels: Sequence[str],
    random_state: int,
    keep_models: Sequence[str],
    keep_maps: bool,
) -> _FoldOutcome:
    """Features (fold scope: fitted here), then every model on every network of one fold.

    Everything a fold computes depends on the split and ``random_state``
    only, never on the process it runs in, so folds may run anywhere.
    """
    # This is the task joblib or Dask runs: Dask may hand over the arrays nested in
    # the split, the subjects, the shared features and y misaligned, and NumPy then
    # sums in another order (rsxai.parallel.with_aligned_arrays). Realigned here, as a
    # local run has them (no copy then). The feature step and the models need nothing:
    # they are cloned before use (fit_features, _fit_models), and clone deep-copies
    # every array parameter, which allocates it afresh, aligned.
    split, shared, y = (with_aligned_arrays(x) for x in (split, shared, y))
    if subjects is not None:
        subjects = [with_aligned_arrays(subject) for subject in subjects]
    features = shared if shared is not None else fit_features(network_maps, subjects, split)
    rows, training, fitted_models, fits, heldout = _fit_models(
        split, features, y, models, labels, random_state, keep_models
    )
    # The fold's features go back only when kept: they are large, and in
    # cohort scope the caller holds them already.
    maps = features.maps if keep_maps and shared is None else None
    return _FoldOutcome(
        features.networks, features.seconds, maps, rows, training, fitted_models, fits, heldout
    )


def fold_random_state(random_state: int, split: Split) -> int:
    """Seed of the models fitted on ``split``: one per fold, reproducible from ``random_state``.

    A permutation test that refits a fold's model passes the same seed, so that its
    unpermuted row reproduces the reported predictions.
    """
    return random_state + 1000 * split.repeat + split.fold


def _fit_models(
    split: Split,
    features: FoldFeatures,
    y: np.ndarray,
    models: Mapping[str, Any],
    labels: Sequence[str],
    random_state: int,
    keep_models: Sequence[str],
) -> tuple[list[dict], list[dict], dict, list[tuple[str, str, float]], dict[str, np.ndarray]]:
    """Every model on every network of one fold: the fields of :class:`_FoldOutcome`.

    Returns the prediction rows, training-curve rows, kept fitted models, fit
    times and (first repeat) the held-out subjects' maps per network.
    """
    rows, training, fits = [], [], []
    fitted_models: dict[tuple[str, str, int, int], Any] = {}
    heldout = {}
    for j, network in enumerate(features.networks):
        X = features.maps[:, j]
        if split.repeat == 0:
            heldout[network] = np.asarray(X[split.test], dtype=np.float32)
        for name, estimator in models.items():
            start = time.perf_counter()
            model = clone(estimator)
            if "random_state" in model.get_params():
                # Different folds, different (but reproducible) seeds.
                model.set_params(random_state=fold_random_state(random_state, split))
            model.fit(X[split.train], y[split.train])
            # The label is the model's own rule, the one its permutation test scores; the
            # probability (Platt-scaled for the SVM, which may disagree) serves the AUC only.
            predicted = model.predict(X[split.test])
            probability = model.predict_proba(X[split.test])[:, list(model.classes_).index(1)]
            for i, label, p in zip(split.test, predicted, probability, strict=True):
                rows.append(
                    {
                        "subject": labels[i],
                        "network": network,
                        "model": name,
                        "repeat": split.repeat,
                        "fold": split.fold,
                        "y_true": int(y[i]),
                        "y_pred": int(label),
                        "probability": float(p),
                    }
                )
            training.extend(_history_rows(model, network, name, split))
            if name in keep_models:
                fitted_models[(network, name, split.repeat, split.fold)] = model
            fits.append((network, name, time.perf_counter() - start))
    return rows, training, fitted_models, fits, heldout


def cross_validate(
    network_maps: Any,
    subjects: Sequence[Any],
    y: np.ndarray,
    models: Mapping[str, Any],
    *,
    subject_labels: Sequence[str] | None = None,
    cv_scope: str = "fold",
    scheme: str = "kfold",
    n_splits: int = 10,
    n_repeats: int = 1,
    random_state: int = 0,
    keep_models: Sequence[str] = ("cnn",),
    keep_fold_maps: bool = False,
    on_fold: Callable[[Split, str, str, float], None] | None = None,
    n_jobs: int | None = 1,
) -> CrossValidation:
    """Cross-validate every model on every network's maps.

    Parameters
    ----------
    network_maps : NetworkMaps (unfitted)
        The group feature step; fitted per fold (``fold``) or once (``cohort``).
    subjects : sequence of ndarray of shape (T_s, n_voxels) or of loaders
        Every subject's preprocessed data, in the order of ``y``. Give
        zero-argument loaders (e.g. memory-mapping ``.npy`` files) for real
        data: each fold task receives this sequence, not the data.
    y : ndarray of shape (n_subjects,)
        1 for patients, 0 for controls.
    models : mapping of str to estimator
        Unfitted scikit-learn classifiers of masked maps (n_subjects, n_voxels),
        e.g. ``{"cnn": CNNClassifier(mask), "svm": LinearBaseline("svm")}``;
        cloned for every fold and network.
    subject_labels : sequence of str, optional
        Written to the predictions (default: row numbers).
    cv_scope : {"fold", "cohort"}, default="fold"
    scheme, n_splits, n_repeats, random_state
        See :func:`make_splits`.
    keep_models : sequence of str
        Models whose fitted fold copies are returned (for explanations).
    keep_fold_maps : bool, default=False
        Also return every fold's feature maps (for permutation tests of the
        baselines in fold scope).
    on_fold : callable, optional
        Called as ``on_fold(split, network, model, seconds)`` for each fit,
        in this process, as each fold's results arrive (progress).
    n_jobs : int or None, default=1
        (repeat, fold) tasks run in parallel (joblib semantics; inside
        :func:`rsxai.parallel.execution_backend` they may run on a Dask
        cluster). Every fold's work is seeded by its split, so the results do
        not depend on ``n_jobs`` or on the backend.

    Returns
    -------
    CrossValidation
    """
    if cv_scope not in CV_SCOPES:
        raise InputError([f"cv_scope must be one of {', '.join(CV_SCOPES)}; got {cv_scope!r}."])
    y = np.asarray(y).astype(int)
    n = y.size
    labels = list(subject_labels) if subject_labels is not None else [str(i) for i in range(n)]
    splits = make_splits(
        y, scheme=scheme, n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
    )
    shared = fit_features(network_maps, subjects) if cv_scope == "cohort" else None
    if shared is not None:
        network_maps, subjects = None, None  # the folds need only the shared features
    tasks = (
        delayed(_run_fold)(
            split,
            network_maps,
            subjects,
            shared,
            y,
            models,
            labels,
            random_state,
            keep_models,
            keep_fold_maps,
        )
        for split in splits
    )
    rows: list[dict] = []
    training: list[dict] = []
    heldout: dict[str, np.ndarray] = {}
    fold_models: dict[tuple[str, str, int, int], Any] = {}
    feature_seconds = [shared.seconds] if shared is not None else []
    fold_maps: dict[tuple[int, int], np.ndarray] = {}
    fold_networks: dict[tuple[int, int], tuple[str, ...]] = {}
    # Results come back in split order whatever finishes first, so the tables
    # are identical for any n_jobs.
    outcomes = Parallel(n_jobs=n_jobs, return_as="generator")(tasks)
    for split, outcome in zip(splits, outcomes, strict=True):
        key = (split.repeat, split.fold)
        if shared is None:
            feature_seconds.append(outcome.feature_seconds)
        fold_networks[key] = outcome.networks
        if keep_fold_maps:
            fold_maps[key] = shared.maps if shared is not None else outcome.maps
        for network, maps in outcome.heldout.items():
            store = heldout.setdefault(network, np.zeros((n, maps.shape[1]), dtype=np.float32))
            store[split.test] = maps
        rows.extend(outcome.rows)
        training.extend(outcome.training)
        fold_models.update(outcome.models)
        if on_fold is not None:
            for network, name, seconds in outcome.fits:
                on_fold(split, network, name, seconds)
    predictions = pd.DataFrame(rows)
    predictions = pd.concat([predictions, ensemble_predictions(predictions)], ignore_index=True)
    return CrossValidation(
        predictions=predictions,
        heldout_maps=heldout,
        fold_models=fold_models,
        training=pd.DataFrame(training),
        feature_seconds=feature_seconds,
        splits=splits,
        fold_maps=fold_maps,
        fold_networks=fold_networks,
    )
