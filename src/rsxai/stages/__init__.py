"""Each stage's side of the output folder: what it reads, computes and writes.

One ``run_<stage>(context)`` per stage, each returning the files it wrote;
:mod:`rsxai.pipeline` alone knows their order. The stage packages below
(:mod:`rsxai.preprocess`, :mod:`rsxai.networks`, :mod:`rsxai.stats`, ...) work on
arrays and know nothing of the output folder. Not a user API.
"""

from rsxai.stages.classify import (
    FixedMaps,
    classify_maps,
    run_classify,
    write_classification,
)
from rsxai.stages.classify_scope import EXTERNAL_SCOPE
from rsxai.stages.context import RunContext, Stage
from rsxai.stages.estimators import cnn_estimator, confounds_strategy, forced_components
from rsxai.stages.explain import explain_output_folder, run_explain
from rsxai.stages.fsl_networks import run_fsl_networks
from rsxai.stages.networks import run_dual_regression, run_ica
from rsxai.stages.preprocess import run_preprocess
from rsxai.stages.stats import run_stats, stats_covariates, write_stats

__all__ = [
    "EXTERNAL_SCOPE",
    "FixedMaps",
    "RunContext",
    "Stage",
    "classify_maps",
    "cnn_estimator",
    "confounds_strategy",
    "explain_output_folder",
    "forced_components",
    "run_classify",
    "run_dual_regression",
    "run_explain",
    "run_fsl_networks",
    "run_ica",
    "run_preprocess",
    "run_stats",
    "stats_covariates",
    "write_classification",
    "write_stats",
]
