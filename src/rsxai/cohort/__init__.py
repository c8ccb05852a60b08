"""Who is studied and from which files: BIDS / fMRIPrep, manifests, map stacks, FSL folders.

Every input is checked here, before any work, and every problem is reported at once.
"""

from rsxai.cohort.cohort import Cohort
from rsxai.cohort.fsl_dual_regression import (
    FSLDualRegression,
    is_fsl_dual_regression,
    read_fsl_dual_regression,
)
from rsxai.cohort.map_stack import DEFAULT_MASK_RULE, MapStack, read_map_stack
from rsxai.cohort.subjects import Run, Subject

__all__ = [
    "DEFAULT_MASK_RULE",
    "Cohort",
    "FSLDualRegression",
    "MapStack",
    "Run",
    "Subject",
    "is_fsl_dual_regression",
    "read_fsl_dual_regression",
    "read_map_stack",
]
