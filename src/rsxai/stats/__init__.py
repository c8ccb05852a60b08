"""Voxelwise group statistics: GLM, permutations (Freedman-Lane), TFCE, FWE-corrected p-values."""

from rsxai.stats.design import (
    contrast_vector,
    draw_permutations,
    group_design,
    warn_if_few_permutations,
)
from rsxai.stats.permutation import PermutationGLMResult, permutation_glm
from rsxai.stats.tfce import tfce_transform

__all__ = [
    "PermutationGLMResult",
    "contrast_vector",
    "draw_permutations",
    "group_design",
    "permutation_glm",
    "tfce_transform",
    "warn_if_few_permutations",
]
