"""Cross-validated classification of network maps: folds, linear baselines, metrics, significance.

The group-level feature step arrives as an estimator (:class:`rsxai.networks.NetworkMaps`)
that :func:`cross_validate` clones and refits on every training fold, so no held-out
subject touches training; this package never imports the ICA or dual regression itself.
"""

from rsxai.classify.baseline_permutations import permutation_scores, within_fold_permutations
from rsxai.classify.baselines import DEFAULT_CS, LinearBaseline
from rsxai.classify.cross_validation import CrossValidation, cross_validate, fold_random_state
from rsxai.classify.ensembles import ENSEMBLE_RULE, ensemble_predictions
from rsxai.classify.metrics import classification_metrics
from rsxai.classify.refit_permutations import refit_permutation_scores
from rsxai.classify.screened import ScreenedBaseline, screened_permutation_scores, smooth_maps
from rsxai.classify.splits import Split, make_splits
from rsxai.classify.summaries import aggregate_repeats, fold_metrics

__all__ = [
    "DEFAULT_CS",
    "ENSEMBLE_RULE",
    "CrossValidation",
    "LinearBaseline",
    "ScreenedBaseline",
    "Split",
    "aggregate_repeats",
    "classification_metrics",
    "cross_validate",
    "ensemble_predictions",
    "fold_metrics",
    "fold_random_state",
    "make_splits",
    "permutation_scores",
    "refit_permutation_scores",
    "screened_permutation_scores",
    "smooth_maps",
    "within_fold_permutations",
]
