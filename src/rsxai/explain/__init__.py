"""Explanations of a CNN's decisions: attribution methods, group maps, agreement, sanity checks."""

from rsxai.explain.attribution import METHODS, attribute
from rsxai.explain.faithfulness import deletion_insertion
from rsxai.explain.fold_checks import first_fold_checks, sampled_faithfulness
from rsxai.explain.gradcam import default_target_layer, gradcam_maps, gradcam_plus_plus_maps
from rsxai.explain.group_comparison import group_results
from rsxai.explain.group_metrics import GROUP_MAP_NAMES, agreement, group_maps, localisation
from rsxai.explain.model_hooks import resolve_layer
from rsxai.explain.sanity_checks import cascading_randomisation, label_randomisation_similarity
from rsxai.explain.subjects import (
    METHOD_LABELS,
    AttributionSettings,
    explain_subjects,
    heldout_predictions,
)

__all__ = [
    "GROUP_MAP_NAMES",
    "METHODS",
    "METHOD_LABELS",
    "AttributionSettings",
    "agreement",
    "attribute",
    "cascading_randomisation",
    "default_target_layer",
    "deletion_insertion",
    "explain_subjects",
    "first_fold_checks",
    "gradcam_maps",
    "gradcam_plus_plus_maps",
    "group_maps",
    "group_results",
    "heldout_predictions",
    "label_randomisation_similarity",
    "localisation",
    "resolve_layer",
    "sampled_faithfulness",
]
