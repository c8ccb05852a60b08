"""The preprocess stage's side of the output folder: clean every subject once, outside the folds.

Per-subject cleaning uses no group information, so it runs once for the whole
cohort; the cleaned series are a cache (``.npy``, memory-mapped by the later stages).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from rsxai.grid import Grid
from rsxai.outputs import atomic_path, output_path, write_nifti
from rsxai.preprocess import common_mask, prepare_subject
from rsxai.progress import progress_bar
from rsxai.stages.estimators import confounds_strategy

if TYPE_CHECKING:
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)


def _preprocess_one(runs, grid: Grid, target: Path, tr: float, options: dict) -> Path:
    # One BLAS thread wherever this runs (here, a worker process, a Dask worker):
    # the thread count changes the order of sums and so the last bits.
    with threadpool_limits(1, user_api="blas"):
        data = prepare_subject(runs, grid, tr=tr, **options)
    with atomic_path(target) as tmp:
        # .npy, not NIfTI: cleaned data are an internal cache that group ICA and
        # dual regression memory-map; gzip would cost more than the cleaning.
        np.save(tmp, np.ascontiguousarray(data, dtype=np.float32))
    return target


def run_preprocess(context: RunContext) -> list[Path]:
    """Common brain mask, then every subject cleaned onto the analysis grid (in parallel)."""
    config, cohort, out_dir = context.config, context.cohort, context.out_dir
    options = config.preprocess
    masks = [run.mask for subject in cohort.subjects for run in subject.runs]
    if any(mask is None for mask in masks):
        logger.info("Some subjects have no brain mask; the MNI brain mask stands in for them.")
    grid = common_mask(
        [m for m in masks if m is not None], options.voxel_size, min_fraction=options.mask_fraction
    )
    logger.info(
        "Analysis grid: %s voxels of %.3g mm inside the common brain mask.",
        grid.n_voxels,
        options.voxel_size,
    )
    mask_path = write_nifti(output_path(out_dir, "mask"), grid.mask_img())
    work = output_path(out_dir, "preprocessed_dir", key=context.current_key)
    clean_options = {
        "confounds_strategy": confounds_strategy(context.config),
        "smoothing_fwhm": options.smoothing_fwhm or None,
        "high_pass": options.high_pass or None,
        "low_pass": options.low_pass or None,
        "detrend_order": options.detrend_order,
    }
    targets = {s.label: work / f"sub-{s.label}.npy" for s in cohort.subjects}
    # Subjects finished before an interruption are kept: the folder name holds
    # the stage key, so only outputs made with these very settings are reused.
    todo = [s for s in cohort.subjects if not targets[s.label].exists()]
    jobs = (
        delayed(_preprocess_one)(
            [(run.bold, run.confounds) for run in subject.runs],
            grid,
            targets[subject.label],
            cohort.tr,
            clean_options,
        )
        for subject in todo
    )
    for _ in progress_bar(
        Parallel(n_jobs=context.config.run.n_jobs, return_as="generator")(jobs),
        total=len(todo),
        desc="preprocess",
        unit="subject",
        enabled=context.progress,
    ):
        pass
    return [mask_path, *targets.values()]


def preprocessed_subjects(context: RunContext) -> tuple[Grid, list]:
    """The analysis grid and one zero-argument loader per subject (memory-mapped)."""
    out_dir = context.out_dir
    grid = Grid.from_img(output_path(out_dir, "mask"))
    work = output_path(out_dir, "preprocessed_dir", key=context.stage_keys["preprocess"])

    def loader(path: Path):
        return lambda: np.load(path, mmap_mode="r")

    return grid, [loader(work / f"sub-{s.label}.npy") for s in context.cohort.subjects]
