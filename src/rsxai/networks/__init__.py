"""Resting-state networks: templates, labelling of ICA components, and :class:`NetworkMaps`.

:class:`NetworkMaps` is group ICA + labelling + dual regression as one estimator:
fit on some subjects, transform any subject.
"""

from rsxai.networks.labelling import (
    NetworkLabels,
    canonical_network_name,
    label_components,
    network_name_problems,
)
from rsxai.networks.network_maps import NetworkMaps
from rsxai.networks.selection import (
    check_networks_found,
    choose_networks,
    load_group_maps,
    match_reference_maps,
)
from rsxai.networks.templates import NetworkTemplates, builtin_templates, load_templates

__all__ = [
    "NetworkLabels",
    "NetworkMaps",
    "NetworkTemplates",
    "builtin_templates",
    "canonical_network_name",
    "check_networks_found",
    "choose_networks",
    "label_components",
    "load_group_maps",
    "load_templates",
    "match_reference_maps",
    "network_name_problems",
]
