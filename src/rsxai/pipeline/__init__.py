"""The whole run: stage order, reuse of finished stages, provenance; rsxai stats and classify."""

from rsxai.pipeline.cache import stage_key
from rsxai.pipeline.runner import FSL_GIVEN, FSL_STAGES, IMPLEMENTED_STAGES, load_cohort, run
from rsxai.pipeline.stack import run_stack_classify, run_stack_stats
from rsxai.stages import explain_output_folder

__all__ = [
    "FSL_GIVEN",
    "FSL_STAGES",
    "IMPLEMENTED_STAGES",
    "explain_output_folder",
    "load_cohort",
    "run",
    "run_stack_classify",
    "run_stack_stats",
    "stage_key",
]
