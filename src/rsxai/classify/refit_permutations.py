"""Label-permutation test of a whole cross-validation, by refitting every fold.

The general route for estimators without a fast path (the CNN); the linear
baselines have an exact, much faster one in
:func:`rsxai.classify.permutation_scores`. Kept apart from
:mod:`rsxai.classify`, which only runs the cross-validation itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score

from rsxai.classify.baseline_permutations import within_fold_permutations
from rsxai.classify.metrics import permutation_p_value


def refit_permutation_scores(
    estimator: Any,
    fold_X: Sequence[np.ndarray],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_permutations: int,
    seed: int = 0,
    fold_random_states: Sequence[int] | None = None,
) -> dict:
    """Label-permutation null of a whole cross-validation, refitting every fold.

    The general route for estimators without a fast path (the CNN): for each
    permutation the labels are exchanged within the outer test folds (each
    fold keeps its class counts; see
    :func:`rsxai.classify.within_fold_permutations`), and every fold's model
    is trained again on its features. Cost: ``n_permutations`` whole
    cross-validations. The labels scored are the fitted models' own
    ``predict``, the rule of the reported predictions.

    Parameters
    ----------
    estimator : scikit-learn classifier
        Cloned for every fit; its ``random_state`` (if any) is set per fold.
    fold_X : sequence of ndarray of shape (n_subjects, n_features)
        Each outer fold's features (one array may be repeated for cohort scope).
    y : ndarray of shape (n_subjects,)
    folds : sequence of (train, test) index arrays
        One repeat; the test sets partition the subjects.
    n_permutations : int
    seed : int
        Draws the permutations.
    fold_random_states : sequence of int, optional
        The ``random_state`` given to each fold's clone (estimators that have
        one), as the cross-validation did (:func:`rsxai.classify.fold_random_state`),
        so that the observed row refits its models; default ``seed + k`` for fold ``k``.

    Returns
    -------
    dict
        ``observed``, ``null`` (arrays of shape (n_permutations,)) and
        ``p_value``, each for ``accuracy`` and ``balanced_accuracy``;
        ``n_permutations``; ``prediction`` (n_subjects,), the observed
        labels' out-of-fold predictions, which ``observed`` scores.
    """
    y = np.asarray(y)
    if fold_random_states is None:
        fold_random_states = [seed + k for k in range(len(folds))]
    if len(fold_random_states) != len(folds):
        raise ValueError(
            f"fold_random_states must hold one seed per fold ({len(folds)}); "
            f"got {len(fold_random_states)}."
        )
    orders = within_fold_permutations(folds, y.size, n_permutations, seed)
    scores = {"accuracy": [], "balanced_accuracy": []}
    observed_prediction = None
    for order in orders:  # row 0: the observed labels
        labels = y[order]
        predicted = np.empty_like(labels)
        for k, ((train, test), X) in enumerate(zip(folds, fold_X, strict=True)):
            model = clone(estimator)
            if "random_state" in model.get_params():
                model.set_params(random_state=fold_random_states[k])
            predicted[test] = model.fit(X[train], labels[train]).predict(X[test])
        if observed_prediction is None:
            observed_prediction = predicted
        scores["accuracy"].append(float(np.mean(predicted == labels)))
        scores["balanced_accuracy"].append(float(balanced_accuracy_score(labels, predicted)))
    observed = {name: values[0] for name, values in scores.items()}
    null = {name: np.asarray(values[1:]) for name, values in scores.items()}
    return {
        "observed": observed,
        "null": null,
        "p_value": {name: permutation_p_value(observed[name], null[name]) for name in null},
        "n_permutations": n_permutations,
        "prediction": observed_prediction,
    }
