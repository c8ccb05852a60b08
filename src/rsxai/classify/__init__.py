"""Cross-validated classification of network maps: folds, linear baselines, metrics, significance.

The group-level feature step arrives as an estimator (:class:`rsxai.networks.NetworkMaps`)
that :func:`cross_validate` clones and refits on every training fold, so no held-out
subject touches training; this package never imports the ICA or dual regression itself.
"""

from rsxai.classify.baselines import DEFAULT_CS, LinearBaseline, permutation_scores
from rsxai.classify.cross_validation import CrossValidation, cross_validate, ensemble_predictions
from rsxai.classify.metrics import classification_metrics
from rsxai.classify.refit_permutations import refit_permutation_scores
from rsxai.classify.splits import Split, make_splits
from rsxai.classify.summaries import aggregate_repeats, fold_metrics

__all__ = [
    "DEFAULT_CS",
    "CrossValidation",
    "LinearBaseline",
    "Split",
    "aggregate_repeats",
    "classification_metrics",
    "cross_validate",
    "ensemble_predictions",
    "fold_metrics",
    "make_splits",
    "permutation_scores",
    "refit_permutation_scores",
]
