"""Outer cross-validation folds: stratified k-fold (with reshuffled repeats) or leave-one-out.

The folds depend on the labels only, so that every stage and command that
cross-validates the same cohort with the same options draws the same folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import LeaveOneOut, StratifiedKFold

from rsxai.exceptions import InputError

__all__ = ["CV_SCHEMES", "Split", "make_splits"]

CV_SCHEMES = ("kfold", "loo")


@dataclass(frozen=True)
class Split:
    """One outer fold of one repeat.

    Attributes
    ----------
    repeat, fold : int
    train, test : ndarray of int
        Row indices of the training and held-out subjects.
    """

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def make_splits(
    y: np.ndarray,
    *,
    scheme: str = "kfold",
    n_splits: int = 10,
    n_repeats: int = 1,
    random_state: int = 0,
) -> list[Split]:
    """Outer cross-validation folds, stratified by group.

    Parameters
    ----------
    y : ndarray of shape (n_subjects,)
        Group labels (0 = control, 1 = patient).
    scheme : {"kfold", "loo"}
        Stratified k-fold (reshuffled for each repeat) or leave-one-out.
    n_splits : int, default=10
        Folds per repeat (k-fold only); at most the size of the smaller group.
    n_repeats : int, default=1
        Repeats with different shuffles (k-fold only).
    random_state : int, default=0

    Returns
    -------
    list of Split
        Within a repeat the test sets partition the subjects.
    """
    y = np.asarray(y)
    if scheme not in CV_SCHEMES:
        raise InputError([f"cv_scheme must be one of {', '.join(CV_SCHEMES)}; got {scheme!r}."])
    smallest = int(np.bincount(y).min()) if y.size else 0
    if scheme == "loo":
        splitter = LeaveOneOut()
        return [Split(0, k, train, test) for k, (train, test) in enumerate(splitter.split(y, y))]
    if not 2 <= n_splits <= smallest:
        raise InputError(
            [
                f"cv_folds must be between 2 and the size of the smaller group ({smallest}); "
                f"got {n_splits}. Lower --cv-folds or use --cv-scheme loo."
            ]
        )
    splits = []
    for repeat in range(n_repeats):
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=random_state + repeat)
        for k, (train, test) in enumerate(splitter.split(np.zeros(y.size), y)):
            splits.append(Split(repeat, k, train, test))
    return splits
