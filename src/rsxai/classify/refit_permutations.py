"""Label-permutation test of a whole cross-validation, by refitting every fold.

The general route for estimators without a fast path (the CNN); the linear
baselines have an exact, much faster one in
:func:`rsxai.classify.baselines.permutation_scores`. Kept apart from
:mod:`rsxai.classify`, which only runs the cross-validation itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score

from rsxai.classify.baselines import within_fold_permutations
from rsxai.classify.metrics import permutation_p_value


def refit_permutation_scores(
    estimator: Any,
    fold_X: Sequence[np.ndarray],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_permutations: int,
    seed: int = 0,
) -> dict:
    """Label-permutation null of a whole cross-validation, refitting every fold.

    The general route for estimators without a fast path (the CNN): for each
    permutation the labels are exchanged within the outer test folds (each
    fold keeps its class counts; see
    :func:`rsxai.classify.baselines.within_fold_permutations`), and every fold's model
    is trained again on its features. Cost: ``n_permutations`` whole
    cross-validations.

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

    Returns
    -------
    dict
        ``observed``, ``null`` (arrays of shape (n_permutations,)) and
        ``p_value``, each for ``accuracy`` and ``balanced_accuracy``;
        ``n_permutations``.
    """
    y = np.asarray(y)
    orders = within_fold_permutations(folds, y.size, n_permutations, seed)
    scores = {"accuracy": [], "balanced_accuracy": []}
    for order in orders:  # row 0: the observed labels
        labels = y[order]
        predicted = np.empty_like(labels)
        for k, ((train, test), X) in enumerate(zip(folds, fold_X, strict=True)):
            model = clone(estimator)
            if "random_state" in model.get_params():
                model.set_params(random_state=seed + k)
            predicted[test] = model.fit(X[train], labels[train]).predict(X[test])
        scores["accuracy"].append(float(np.mean(predicted == labels)))
        scores["balanced_accuracy"].append(float(balanced_accuracy_score(labels, predicted)))
    observed = {name: values[0] for name, values in scores.items()}
    null = {name: np.asarray(values[1:]) for name, values in scores.items()}
    return {
        "observed": observed,
        "null": null,
        "p_value": {name: permutation_p_value(observed[name], null[name]) for name in null},
        "n_permutations": n_permutations,
    }
