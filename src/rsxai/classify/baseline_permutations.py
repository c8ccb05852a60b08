"""The label-permutation test of a linear baseline's whole cross-validation.

Labels are permuted within the outer test folds and every fold is re-solved for
every permutation, each fold's Gram matrix computed once and reused by the exact
``n x n`` solver (:mod:`rsxai.classify._baseline_solver`), so that a thousand
permutations of a 10-fold CV take seconds, not hours. Apart from
:mod:`rsxai.classify.baselines`, which holds the estimator itself.
"""

from __future__ import annotations

from numbers import Integral

import joblib
import numpy as np
from sklearn.utils import check_array
from threadpoolctl import threadpool_limits

from rsxai.classify._baseline_solver import fit_with_inner_cv
from rsxai.classify.baselines import (
    LinearBaseline,
    check_baseline_params,
    signed_labels,
    standardised_gram,
)
from rsxai.classify.metrics import permutation_p_value
from rsxai.parallel import with_aligned_arrays
from rsxai.stats import draw_permutations, warn_if_few_permutations

# Permutations per batch; fixed (not derived from n_jobs) so results do not depend on n_jobs.
_CHUNK = 50


def within_fold_permutations(folds, n_subjects: int, n_permutations: int, seed=0) -> np.ndarray:
    """Row orders that only exchange subjects tested in the same outer fold.

    Parameters
    ----------
    folds : sequence of (train, test) index arrays
        The test sets must partition ``range(n_subjects)``.
    n_subjects, n_permutations : int
    seed : int or numpy.random.Generator

    Returns
    -------
    ndarray of int32, shape (n_permutations + 1, n_subjects)
        Row 0 is the identity (the observed labels); permuted labels are ``y[order]``.
    """
    fold_of = np.full(n_subjects, -1)
    for k, (train, test) in enumerate(folds):
        test, train = np.asarray(test), np.asarray(train)
        if np.any(fold_of[test] >= 0):
            raise ValueError(
                "folds: a subject is in more than one test set; test sets must not overlap."
            )
        if np.intersect1d(train, test).size:
            raise ValueError(f"folds: fold {k} has subjects in both its training and test sets.")
        fold_of[test] = k
    if np.any(fold_of < 0):
        raise ValueError(
            f"folds: {np.count_nonzero(fold_of < 0)} subject(s) are in no test set; the test "
            "sets of one cross-validation repeat must cover every subject once."
        )
    return draw_permutations(n_permutations + 1, fold_of, np.random.default_rng(seed))


def _score_chunk(kind, fold_data, folds, y, orders, inner_cv) -> np.ndarray:
    """Outer-test decision of every subject under each label order; (len(orders), n)."""
    decision = np.empty((len(orders), y.size))
    # On a Dask worker the arrays nested in fold_data may arrive misaligned, and NumPy
    # then sums in another order: realign so the decisions equal a local run's bytes.
    fold_data = [tuple(map(with_aligned_arrays, item)) for item in fold_data]
    y, orders = with_aligned_arrays(y), with_aligned_arrays(orders)
    with threadpool_limits(1):  # tiny matrices: threads only add overhead
        for (train, test), (gram, cross, Cs, random_state) in zip(folds, fold_data, strict=True):
            labels = y[orders][:, train]
            beta = fit_with_inner_cv(kind, gram, labels, Cs, inner_cv, random_state)[0]
            decision[:, test] = beta @ cross.T
    return decision


def permutation_scores(
    estimator: LinearBaseline,
    X,
    y,
    folds,
    *,
    n_permutations: int = 1000,
    seed=0,
    n_jobs=1,
    fold_random_states=None,
) -> dict:
    """Accuracy of ``estimator`` under cross-validation, and its label-permutation null.

    The whole procedure (standardisation, inner CV choice of C, fit) is rerun
    on every outer fold for the observed labels and ``n_permutations`` label
    permutations, each outer fold's Gram matrix being computed once and
    reused. Predictions are pooled over folds, as for the observed result.
    A subject is predicted ``classes_[1]`` at decision value > 0, the rule of
    :meth:`LinearBaseline.predict` (never the Platt probability), so the
    observed accuracy is that of the labels the fold models predict.

    Labels are permuted within outer test folds, so each fold keeps its
    number of subjects per class. This is a valid null conditional on the
    partition: under H0 (maps independent of labels, subjects exchangeable)
    relabelling subjects within a fold is the same as exchanging their maps
    within it, which leaves the joint distribution of maps, labels and
    partition unchanged; the observed labelling is one of these equally
    likely arrangements. A free permutation would not keep the fold
    composition that the stratified partition was built for (it was made from
    the true labels), so its null would include training sets of another
    class balance than any the real analysis saw.

    Parameters
    ----------
    estimator : LinearBaseline
        Its parameters are used (it is not fitted).
    X : array-like of shape (n_subjects, n_features), or a sequence of them, one per fold
        A sequence gives each outer fold its own features, as in fold-scope
        cross-validation where the group maps are refitted per training fold
        (the features do not depend on the labels, so permuting labels
        within the fixed partition leaves them unchanged).
    y : array-like of shape (n_subjects,)
    folds : sequence of (train, test) index arrays
        One repeat of the outer CV; test sets partition the subjects.
    n_permutations : int, default=1000
    seed : int or numpy.random.Generator, default=0
        Draws the permutations (before any parallel work).
    n_jobs : int, default=1
    fold_random_states : sequence of int, optional
        The ``random_state`` (inner CV folds) of each outer fold's fit, as a
        cross-validation that seeds each fold's clone gives it
        (:func:`rsxai.classify.fold_random_state`); default: ``estimator.random_state``
        for every fold. Then the observed row equals that cross-validation's
        predictions.

    Returns
    -------
    dict
        ``observed``: {``accuracy``, ``balanced_accuracy``} (float);
        ``null``: the same keys, ndarrays of shape (n_permutations,);
        ``p_value``: the same keys (:func:`permutation_p_value`);
        ``n_permutations``; ``decision`` and ``prediction`` (n_subjects,),
        the observed outer-test decision values and labels (``prediction`` is
        ``classes_[1]`` where ``decision > 0``; ``observed`` scores it).
    """
    if not isinstance(estimator, LinearBaseline):
        raise TypeError(f"estimator must be a LinearBaseline; got {type(estimator).__name__}.")
    relative = check_baseline_params(
        estimator.kind, estimator.Cs, estimator.inner_cv, estimator.random_state
    )
    if not (isinstance(n_permutations, Integral) and n_permutations >= 1):
        raise ValueError(f"n_permutations must be an integer >= 1; got {n_permutations!r}.")
    folds = [(np.asarray(train), np.asarray(test)) for train, test in folds]
    per_fold = isinstance(X, (list, tuple))
    if per_fold and len(X) != len(folds):
        raise ValueError(f"X holds {len(X)} feature matrices for {len(folds)} folds.")
    fold_X = [check_array(x, dtype=np.float64) for x in (X if per_fold else [X])]
    classes, signed = signed_labels(y, estimator.inner_cv)
    for x in fold_X:
        if x.shape[0] != signed.size:
            raise ValueError(f"X has {x.shape[0]} rows but y has {signed.size} labels.")
    states = [estimator.random_state] * len(folds)
    states = states if fold_random_states is None else list(fold_random_states)
    if len(states) != len(folds) or not all(s is None or isinstance(s, Integral) for s in states):
        raise ValueError(
            f"fold_random_states must hold one integer (or None) per fold ({len(folds)}); "
            f"got {fold_random_states!r}."
        )
    orders = within_fold_permutations(folds, signed.size, n_permutations, seed)
    fold_of = np.empty(signed.size, dtype=int)
    for k, (_, test) in enumerate(folds):
        fold_of[test] = k
    warn_if_few_permutations(n_permutations, (signed > 0).astype(int), fold_of, False)
    fold_data = []
    for k, (train, test) in enumerate(folds):
        signed_labels(signed[train], estimator.inner_cv)  # every training set must allow inner CV
        X = fold_X[k if per_fold else 0]
        scaler, standardised, gram, unit = standardised_gram(X, train)
        cross = scaler.transform(X[test]) @ standardised.T + 1.0
        fold_data.append((gram, cross, relative / unit, states[k]))
    chunks = [orders[start : start + _CHUNK] for start in range(0, len(orders), _CHUNK)]
    decisions = joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(_score_chunk)(
            estimator.kind,
            fold_data,
            folds,
            signed,
            chunk,
            estimator.inner_cv,
        )
        for chunk in chunks
    )
    decision = np.concatenate(decisions)
    truth = signed[orders] > 0
    correct = (decision > 0) == truth
    n_positive = np.count_nonzero(signed > 0)
    accuracy = correct.mean(axis=1)
    balanced = 0.5 * (
        np.count_nonzero(correct & truth, axis=1) / n_positive
        + np.count_nonzero(correct & ~truth, axis=1) / (signed.size - n_positive)
    )
    result = {"observed": {}, "null": {}, "p_value": {}, "n_permutations": int(n_permutations)}
    for name, values in (("accuracy", accuracy), ("balanced_accuracy", balanced)):
        result["observed"][name] = float(values[0])
        result["null"][name] = values[1:]
        result["p_value"][name] = permutation_p_value(values[0], values[1:])
    result["decision"] = decision[0]
    result["prediction"] = classes[(decision[0] > 0).astype(int)]
    return result
