"""Preprocessing + dual regression of every subject against merely reading the BOLD files.

How much more than reading its input does rsxai's per-subject work cost?
Both sides start from the simulated cohort's fMRIPrep-style files
(``*_desc-preproc_bold.nii.gz``, gzipped as fMRIPrep writes them):

- bare read: ``np.asarray(nib.load(path).dataobj)`` for every subject;
- rsxai: for every subject, :func:`rsxai.preprocess.prepare_subject` with
  ``rsxai run``'s default options (read, resample onto the analysis grid,
  24 motion + white matter + CSF confounds, linear detrend, 0.01-0.1 Hz
  band-pass, z-score) then :func:`rsxai.dual_regression.dual_regression`
  onto 20 group maps (stage 1 time courses, stage 2 maps and Z maps).

Subjects run one after the other in one process with one BLAS thread (no
parallelism on either side). The group maps are a GroupICA fitted before the timing; every file
is read once before the timing too, so both sides find it in the page cache.

Run alone: ``python -m benchmarks.network_maps [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.cohort import BenchmarkCohort, prepare_cohort
from benchmarks.measurement import timed


def _preprocessing_options(cohort: BenchmarkCohort) -> dict:
    """``prepare_subject`` keyword arguments as ``rsxai run`` derives them from its defaults."""
    from rsxai.config import resolve_config

    options = resolve_config({"preprocess": {"voxel_size": cohort.size["voxel_size"]}}).preprocess
    return {
        "confounds_strategy": {
            "motion": options.motion,
            "wm_csf": options.wm_csf,
            "global_signal": options.global_signal,
            "scrub_fd": options.scrub_fd,
        },
        "smoothing_fwhm": options.smoothing_fwhm or None,
        "high_pass": options.high_pass or None,
        "low_pass": options.low_pass or None,
        "detrend_order": options.detrend_order,
    }


def run(data_dir: str | Path, *, quick: bool = False) -> dict:
    """Time both over all subjects of the cohort; return seconds and their ratio."""
    import nibabel as nib

    from rsxai.cohort import Cohort
    from rsxai.dual_regression import dual_regression
    from rsxai.grid import Grid
    from rsxai.ica import GroupICA
    from rsxai.preprocess import prepare_subject

    cohort_files = prepare_cohort(data_dir, quick=quick)
    cohort = Cohort.from_path(cohort_files.bids_dir)
    grid = Grid.from_img(cohort_files.mask)
    options = _preprocessing_options(cohort_files)
    runs = [[(run.bold, run.confounds) for run in subject.runs] for subject in cohort.subjects]
    bold_files = [bold for subject_runs in runs for bold, _ in subject_runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group_maps = (
            GroupICA(20, random_state=0)
            .fit([lambda p=p: np.load(p, mmap_mode="r") for p in cohort_files.preprocessed])
            .components_
        )
    for path in bold_files:  # warm the page cache for both sides
        Path(path).read_bytes()

    def bare_read():
        for path in bold_files:
            np.asarray(nib.load(path).dataobj)

    def preprocess_and_dual_regress():
        for subject_runs in runs:
            data = prepare_subject(subject_runs, grid, tr=cohort.tr, **options)
            dual_regression(group_maps, data)

    with threadpool_limits(limits=1, user_api="blas"):  # one core each, as in every benchmark
        _, read_seconds = timed(bare_read)
        _, rsxai_seconds = timed(preprocess_and_dual_regress)
    return {
        "n_subjects": len(runs),
        "n_volumes": cohort_files.size["n_volumes"],
        "voxel_size": cohort_files.size["voxel_size"],
        "n_voxels": grid.n_voxels,
        "n_components": int(group_maps.shape[0]),
        "read_seconds": read_seconds,
        "rsxai_seconds": rsxai_seconds,
        "ratio": rsxai_seconds / read_seconds,
    }


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    n = result["n_subjects"]
    return "\n".join(
        [
            "## Network maps: preprocessing + dual regression vs reading the BOLD files",
            "",
            f"{n} simulated subjects x {result['n_volumes']} volumes, gzipped fMRIPrep-style "
            f"NIfTI on the {result['voxel_size']:g} mm MNI grid; {result['n_voxels']:,} voxels in "
            f"the analysis mask; dual regression onto {result['n_components']} group ICA maps. "
            "One process, one BLAS thread, subjects one after the other, files already in the "
            "page cache.",
            "",
            "| | total (s) | per subject (s) |",
            "| --- | ---: | ---: |",
            f"| bare read `np.asarray(nib.load(f).dataobj)` | {result['read_seconds']:.1f} | "
            f"{result['read_seconds'] / n:.2f} |",
            f"| rsxai `prepare_subject` + `dual_regression` | {result['rsxai_seconds']:.1f} | "
            f"{result['rsxai_seconds'] / n:.2f} |",
            "",
            f"Preprocessing and dual regression take **{result['ratio']:.2f}x** the time of "
            "reading the data (goal <= 2x).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cohort (smoke run)")
    parser.add_argument(
        "--data-dir",
        default=str(Path(tempfile.gettempdir()) / "rsxai-benchmarks"),
        help="where the simulated cohort is kept between runs",
    )
    args = parser.parse_args(argv)
    print(markdown(run(args.data_dir, quick=args.quick)))


if __name__ == "__main__":
    main()
