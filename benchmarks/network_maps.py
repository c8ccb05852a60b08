"""Preprocessing + dual regression of every subject against merely reading the BOLD files.

How much more than reading its input does rsxai's per-subject work cost?
Both sides start from the simulated cohort's fMRIPrep-style files
(``*_desc-preproc_bold.nii.gz``, gzipped as fMRIPrep writes them):

- bare read: ``np.asarray(nib.load(path).dataobj)`` for every subject;
- rsxai: for every subject, :func:`rsxai.preprocess.prepare_subject` with
  ``rsxai run``'s default options (read, resample onto the analysis grid,
  24 motion + white matter + CSF confounds, linear detrend, 0.01-0.1 Hz
  band-pass, grand-mean scaling) then :func:`rsxai.decomposition.regression.dual_regression`
  onto 20 group maps (stage 1 time courses, stage 2 maps and Z maps).

Subjects run one after the other in one process with one BLAS thread (no
parallelism on either side). The group maps are a GroupICA fitted before the timing; every file
is read once before the timing too, so both sides find it in the page cache.

The cohort is simulated on the analysis grid, where resampling is a mere
copy. fMRIPrep output usually is not: a second measurement takes the first
few subjects (8; 2 with ``--quick``) resampled trilinearly onto FSL's 2 mm
MNI152 grid (91 x 109 x 91, LAS: ``diag(-2, 2, 2)``, origin (90, -126, -72)),
gzipped float32 NIfTI as fMRIPrep writes, and times the same two sides on
them; rsxai then resamples every volume back onto the analysis grid. These
files are written once, beside the cohort (``<cohort>/bold-2mm``), outside
the timing. The 4 mm grid's voxel centres are also 2 mm voxel centres (as
with fMRIPrep's 97 x 115 x 97 ``res-2`` grid), so rsxai gets the cohort's
values back; the cost of resampling does not depend on that.

Run alone: ``python -m benchmarks.network_maps [--quick]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.cohort import BenchmarkCohort, prepare_cohort
from benchmarks.measurement import benchmark_parser, timed

#: Subjects resampled to 2 mm for the off-grid measurement (full, quick).
N_OFF_GRID = {"full": 8, "quick": 2}
#: FSL's MNI152 2 mm grid (``MNI152_T1_2mm.nii.gz``): LAS, 91 x 109 x 91.
OFF_GRID_AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0, 0, 0, 1]]
)
OFF_GRID_SHAPE = (91, 109, 91)


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


def write_off_grid_bold(bold_files: list[Path], folder: Path) -> list[Path]:
    """The BOLD files resampled onto :data:`OFF_GRID_AFFINE` as gzipped NIfTI (once).

    Trilinear (:func:`scipy.ndimage.affine_transform`, independent of the
    rsxai code being timed), float32, one volume at a time into a
    Fortran-ordered array as nibabel reads it; grid voxels outside the
    source's field of view are 0. Headers carry the TR and the MNI
    sform/qform, as fMRIPrep's do.
    """
    import nibabel as nib
    from scipy import ndimage

    # FSL's grid is MNI152NLin6Asym's; the names say so (the space entity is all that changes).
    targets = [
        folder
        / Path(path).name.replace("space-MNI152NLin2009cAsym", "space-MNI152NLin6Asym_res-2")
        for path in bold_files
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in zip(bold_files, targets, strict=True):
        if target.exists():
            continue
        img = nib.load(source)
        data = np.asarray(img.dataobj, dtype=np.float32)
        source_from_target = np.linalg.inv(img.affine) @ OFF_GRID_AFFINE
        volumes = np.empty((*OFF_GRID_SHAPE, data.shape[3]), dtype=np.float32, order="F")
        for t in range(data.shape[3]):
            ndimage.affine_transform(
                data[..., t],
                source_from_target[:3, :3],
                offset=source_from_target[:3, 3],
                output=volumes[..., t],
                order=1,
                mode="constant",
                cval=0.0,
            )
        del data
        out = nib.Nifti1Image(volumes, OFF_GRID_AFFINE)
        out.header.set_xyzt_units("mm", "sec")
        out.header.set_zooms((2.0, 2.0, 2.0, float(img.header.get_zooms()[3])))
        out.set_sform(OFF_GRID_AFFINE, code="mni")
        out.set_qform(OFF_GRID_AFFINE, code="mni")
        temporary = target.with_name("." + target.name.removesuffix(".nii.gz") + ".tmp.nii.gz")
        nib.save(out, temporary)
        temporary.replace(target)
    return targets


def _time_both(runs: list, prepare, group_maps: np.ndarray) -> tuple[float, float]:
    """Seconds to read every BOLD file, and to prepare + dual-regress every subject."""
    import nibabel as nib

    from rsxai.decomposition import dual_regression

    bold_files = [bold for subject_runs in runs for bold, _ in subject_runs]
    for path in bold_files:  # warm the page cache for both sides
        Path(path).read_bytes()

    def bare_read():
        for path in bold_files:
            np.asarray(nib.load(path).dataobj)

    def preprocess_and_dual_regress():
        for subject_runs in runs:
            dual_regression(group_maps, prepare(subject_runs))

    with threadpool_limits(limits=1, user_api="blas"):  # one core each, as in every benchmark
        _, read_seconds = timed(bare_read)
        _, rsxai_seconds = timed(preprocess_and_dual_regress)
    return read_seconds, rsxai_seconds


def run(data_dir: str | Path, *, quick: bool = False) -> dict:
    """Time both over all subjects of the cohort, then over a few at 2 mm; seconds and ratios."""
    from rsxai.cohort import Cohort
    from rsxai.decomposition import GroupICA
    from rsxai.grid import Grid
    from rsxai.preprocess import prepare_subject

    cohort_files = prepare_cohort(data_dir, quick=quick)
    cohort = Cohort.from_path(cohort_files.bids_dir)
    grid = Grid.from_img(cohort_files.mask)
    options = _preprocessing_options(cohort_files)
    runs = [[(run.bold, run.confounds) for run in subject.runs] for subject in cohort.subjects]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group_maps = (
            GroupICA(20, random_state=0)
            .fit([lambda p=p: np.load(p, mmap_mode="r") for p in cohort_files.preprocessed])
            .components_
        )

    def prepare(subject_runs):
        return prepare_subject(subject_runs, grid, tr=cohort.tr, **options)

    read_seconds, rsxai_seconds = _time_both(runs, prepare, group_maps)

    off_grid_subjects = runs[: N_OFF_GRID["quick" if quick else "full"]]
    off_grid_bold = write_off_grid_bold(
        [bold for subject_runs in off_grid_subjects for bold, _ in subject_runs],
        cohort_files.out_dir.parent / "bold-2mm",
    )
    resampled = iter(off_grid_bold)
    off_grid_runs = [
        [(next(resampled), confounds) for _, confounds in subject_runs]
        for subject_runs in off_grid_subjects
    ]
    off_grid_read, off_grid_rsxai = _time_both(off_grid_runs, prepare, group_maps)
    return {
        "n_subjects": len(runs),
        "n_volumes": cohort_files.size["n_volumes"],
        "voxel_size": cohort_files.size["voxel_size"],
        "n_voxels": grid.n_voxels,
        "n_components": int(group_maps.shape[0]),
        "read_seconds": read_seconds,
        "rsxai_seconds": rsxai_seconds,
        "ratio": rsxai_seconds / read_seconds,
        "off_grid": {
            "n_subjects": len(off_grid_runs),
            "shape": list(OFF_GRID_SHAPE),
            "voxel_size": 2.0,
            "orientation": "LAS",
            "file_mb": sum(Path(p).stat().st_size for p in off_grid_bold) / 2**20,
            "read_seconds": off_grid_read,
            "rsxai_seconds": off_grid_rsxai,
            "ratio": off_grid_rsxai / off_grid_read,
        },
    }


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    n = result["n_subjects"]
    off = result["off_grid"]
    m, shape = off["n_subjects"], " x ".join(map(str, off["shape"]))
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
            f"Off the analysis grid: the first {m} subjects resampled trilinearly onto FSL's "
            f"{shape} {off['orientation']} {off['voxel_size']:g} mm MNI152 grid (gzipped float32 "
            f"NIfTI as fMRIPrep writes, {off['file_mb'] / m:.0f} MB per file), so that rsxai "
            f"resamples every volume back onto the {result['voxel_size']:g} mm grid. Same "
            "settings, same group maps.",
            "",
            "| | total (s) | per subject (s) |",
            "| --- | ---: | ---: |",
            f"| bare read, {off['voxel_size']:g} mm files | {off['read_seconds']:.1f} | "
            f"{off['read_seconds'] / m:.2f} |",
            f"| rsxai `prepare_subject` + `dual_regression` | {off['rsxai_seconds']:.1f} | "
            f"{off['rsxai_seconds'] / m:.2f} |",
            "",
            f"Off-grid, preprocessing and dual regression take **{off['ratio']:.2f}x** the time "
            "of reading the data.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__,
        quick_help="small cohort (smoke run)",
        data_dir_help="where the simulated cohort is kept between runs",
    )
    args = parser.parse_args(argv)
    print(markdown(run(args.data_dir, quick=args.quick)))


if __name__ == "__main__":
    main()
