"""Voxelwise group statistics: GLM, permutations (Freedman-Lane), TFCE, FWE-corrected p-values."""

from rsxai.stats.design import (
    contrast_vector,
    draw_permutations,
    group_design,
    warn_if_few_permutations,
)
from rsxai.stats.family import ContrastFamilyFWE, fwe_over_contrasts
from rsxai.stats.permutation import PermutationGLMResult, permutation_glm
from rsxai.stats.tfce import DEFAULT_STEP_RULE, tfce_transform

__all__ = [
    "DEFAULT_STEP_RULE",
    "ContrastFamilyFWE",
    "PermutationGLMResult",
    "contrast_vector",
    "draw_permutations",
    "fwe_over_contrasts",
    "group_design",
    "permutation_glm",
    "tfce_transform",
    "warn_if_few_permutations",
]
