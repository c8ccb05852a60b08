"""The built-in simulated cohort, with the networks and effects it planted (ground truth)."""

from rsxai.simulate.cohort import SimulatedCohort, simulate_cohort
from rsxai.simulate.dataset import GroundTruth, load_ground_truth
from rsxai.simulate.networks import DEFAULT_EFFECTS, NETWORK_NAMES, Effect, group_network_maps

__all__ = [
    "DEFAULT_EFFECTS",
    "NETWORK_NAMES",
    "Effect",
    "GroundTruth",
    "SimulatedCohort",
    "group_network_maps",
    "load_ground_truth",
    "simulate_cohort",
]
