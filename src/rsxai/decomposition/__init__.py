"""Group decompositions of rs-fMRI: MIGP group PCA, FastICA with ICASSO, dual regression."""

from rsxai.decomposition.group_ica import MIGP_DIM_PER_COMPONENT, GroupICA
from rsxai.decomposition.group_pca import MIGPResult, migp
from rsxai.decomposition.pca_dimension import estimate_n_components
from rsxai.decomposition.regression import (
    DualRegressionResult,
    dual_regression,
    spatial_pseudo_inverse,
    spatial_regression,
)

__all__ = [
    "MIGP_DIM_PER_COMPONENT",
    "DualRegressionResult",
    "GroupICA",
    "MIGPResult",
    "dual_regression",
    "estimate_n_components",
    "migp",
    "spatial_pseudo_inverse",
    "spatial_regression",
]
