"""The simulated cohort the benchmarks run on, made once and reused.

The full cohort is ``rsxai simulate``'s default (30 patients and 30 controls,
150 volumes, TR 2 s, 4 mm MNI grid), preprocessed by ``rsxai run
--stop-after preprocess`` with the default options (24 motion parameters,
white matter and CSF regressed out, linear detrend, 0.01-0.1 Hz band-pass, no
smoothing): exactly what ``rsxai run`` hands to group ICA. The quick cohort
is the same at 5 + 5 subjects, 100 volumes and 6 mm (simulated and analysed).
The ``long`` cohorts are the same with twice the volumes (300; quick: 200),
for measures that depend on the length of the runs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZES = {
    "full": {"n_patients": 30, "n_controls": 30, "n_volumes": 150, "voxel_size": 4.0},
    "quick": {"n_patients": 5, "n_controls": 5, "n_volumes": 100, "voxel_size": 6.0},
    "long": {"n_patients": 30, "n_controls": 30, "n_volumes": 300, "voxel_size": 4.0},
    "quick_long": {"n_patients": 5, "n_controls": 5, "n_volumes": 200, "voxel_size": 6.0},
}


@dataclass(frozen=True)
class BenchmarkCohort:
    """Where the simulated cohort and its preprocessed data are.

    Attributes
    ----------
    bids_dir : Path
        The simulated BIDS dataset (fMRIPrep derivatives inside).
    out_dir : Path
        ``rsxai run --stop-after preprocess`` output folder.
    preprocessed : list of Path
        One ``sub-*.npy`` per subject, float32 of shape (T, V): the cleaned
        data on the common mask.
    mask : Path
        The common brain mask (NIfTI).
    bold : list of Path
        The simulated fMRIPrep BOLD files, one per subject.
    size : dict
        The simulation parameters.
    """

    bids_dir: Path
    out_dir: Path
    preprocessed: list[Path]
    mask: Path
    bold: list[Path]
    size: dict

    @property
    def ground_truth_dir(self) -> Path:
        return self.bids_dir / "ground_truth"

    def planted_networks(self) -> np.ndarray:
        """The planted network maps on the common mask, shape (n_networks, V)."""
        from rsxai.grid import Grid
        from rsxai.simulate import load_ground_truth

        grid = Grid.from_img(self.mask)
        networks = load_ground_truth(self.ground_truth_dir).networks
        if networks.shape[:3] != grid.shape:
            raise RuntimeError(
                f"{self.ground_truth_dir}: ground truth grid {networks.shape[:3]} differs from "
                f"the analysis grid {grid.shape}; simulate and preprocess at one voxel size."
            )
        return np.ascontiguousarray(networks[grid.mask].T)


def prepare_cohort(
    data_dir: str | Path, *, quick: bool = False, long_runs: bool = False, n_jobs: int = 2
) -> BenchmarkCohort:
    """Simulate and preprocess the benchmark cohort under ``data_dir``, unless already there.

    ``quick`` picks the small cohort, ``long_runs`` the one of twice the volumes.

    Uses the command line (``rsxai simulate``, ``rsxai run --stop-after
    preprocess``) exactly as a user would. A folder left half-written by an
    interrupted run is completed by running the commands again.
    """
    from rsxai.cli import main
    from rsxai.outputs import output_path

    kind = {(False, False): "full", (True, False): "quick", (False, True): "long"}.get(
        (quick, long_runs), "quick_long"
    )
    size = SIZES[kind]
    root = Path(data_dir) / kind
    bids_dir, out_dir = root / "data", root / "out"
    n_subjects = size["n_patients"] + size["n_controls"]
    if root.exists() and not planted_as_today(bids_dir):
        # A cohort kept from an older simulator would carry its planted effects into
        # figures that claim today's defaults (classification accuracies): start afresh.
        shutil.rmtree(root)
    if not (bids_dir / "ground_truth" / "parameters.json").exists():
        code = main(
            [
                "simulate",
                str(bids_dir),
                "--n-patients",
                str(size["n_patients"]),
                "--n-controls",
                str(size["n_controls"]),
                "--n-volumes",
                str(size["n_volumes"]),
                "--voxel-size",
                str(size["voxel_size"]),
                "--n-jobs",
                str(n_jobs),
                "-q",
            ]
        )
        if code:
            raise RuntimeError(f"rsxai simulate {bids_dir} failed with exit code {code}")
    if len(_preprocessed(out_dir)) != n_subjects:
        code = main(
            [
                "run",
                str(bids_dir),
                str(out_dir),
                "--stop-after",
                "preprocess",
                "--voxel-size",
                str(size["voxel_size"]),
                "--n-jobs",
                str(n_jobs),
                "-q",
            ]
        )
        if code:
            raise RuntimeError(f"rsxai run {bids_dir} {out_dir} failed with exit code {code}")
    preprocessed = _preprocessed(out_dir)
    bold = sorted(bids_dir.glob("derivatives/fmriprep/sub-*/func/*_desc-preproc_bold.nii.gz"))
    if len(preprocessed) != n_subjects or len(bold) != n_subjects:
        raise RuntimeError(
            f"{root}: expected {n_subjects} subjects, found {len(bold)} BOLD files and "
            f"{len(preprocessed)} preprocessed ones; delete the folder and run again."
        )
    return BenchmarkCohort(
        bids_dir=bids_dir,
        out_dir=out_dir,
        preprocessed=preprocessed,
        mask=output_path(out_dir, "mask"),
        bold=bold,
        size=dict(size),
    )


def planted_as_today(bids_dir: Path) -> bool:
    """Whether the kept cohort was simulated with the simulator's current default effects.

    True too when nothing was simulated yet (no ``ground_truth/parameters.json``).
    """
    from dataclasses import asdict

    from rsxai.simulate import DEFAULT_EFFECTS

    parameters = bids_dir / "ground_truth" / "parameters.json"
    if not parameters.exists():
        return True  # nothing simulated yet, or an interrupted simulation to complete
    planted = json.loads(parameters.read_text()).get("effects")
    today = [asdict(effect) | {"center_mm": list(effect.center_mm)} for effect in DEFAULT_EFFECTS]
    return planted == today


def _preprocessed(out_dir: Path) -> list[Path]:
    folders = sorted((out_dir / ".rsxai" / "work").glob("preprocess-*"))
    if len(folders) != 1:  # none yet, or several made with different settings
        return []
    return sorted(folders[0].glob("sub-*.npy"))
