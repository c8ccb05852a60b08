"""The cohort of the scale benchmark: its sizes, simulated once and kept between runs.

:func:`prepare_scale_cohort` simulates the cohort
(``rsxai.simulate.simulate_cohort``, seed 0) under
``DATA_DIR/scale-{full,quick}/data`` after checking that the disk can hold
it, and reuses it when it is complete and planted with today's default
effects; :func:`first_of_each_group` names the subjects of the smaller run.
The measured runs are :mod:`benchmarks.scale`'s.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: The cohort and runs of the benchmark, and of its quick smoke run.
SIZES = {
    "full": {
        "n_per_group": 300,
        "small_per_group": 30,
        "n_volumes": 150,
        "voxel_size": 4.0,
        "extra_flags": [],
    },
    "quick": {
        "n_per_group": 6,
        "small_per_group": 5,
        "n_volumes": 60,
        "voxel_size": 8.0,
        # Too few subjects for the templates to reach the default min_r: any match will do.
        "extra_flags": ["--n-components", "8", "--ica-restarts", "2", "--min-template-r", "-1"],
    },
}
#: Disk per subject at 4 mm and 150 volumes: simulated input (~16 MB, gzipped NIfTI)
#: plus the run's output (~16 MB of float32 preprocessed data, ~3 MB of maps).
BYTES_PER_SUBJECT_4MM = 40e6


def _check_disk(folder: Path, n_subjects: int, n_volumes: int, voxel_size: float) -> None:
    """Stop before simulating when the disk cannot hold the cohort and one run's outputs."""
    needed = n_subjects * BYTES_PER_SUBJECT_4MM * (4.0 / voxel_size) ** 3 * n_volumes / 150
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < 1.2 * needed:
        raise RuntimeError(
            f"{folder}: {free / 1e9:.1f} GB free, but {n_subjects} subjects of {n_volumes} "
            f"volumes at {voxel_size:g} mm and one run's outputs need about "
            f"{needed / 1e9:.1f} GB; free some space or give another --data-dir."
        )


def prepare_scale_cohort(data_dir: str | Path, *, quick: bool = False, n_jobs: int = 2) -> Path:
    """Simulate the scale cohort under ``data_dir`` unless it is there; return its BIDS root.

    ``participants.tsv``, written last by :func:`rsxai.simulate.simulate_cohort`,
    marks a complete cohort; a half-written one is simulated again.
    """
    from benchmarks.cohort import planted_as_today
    from rsxai.simulate import simulate_cohort

    kind = "quick" if quick else "full"
    size = SIZES[kind]
    bids_dir = Path(data_dir) / f"scale-{kind}" / "data"
    if bids_dir.parent.exists() and not planted_as_today(bids_dir):
        # Only timed, but a cohort of an older simulator may differ in more than its
        # effects (confounds, files): start afresh, as benchmarks.cohort does.
        shutil.rmtree(bids_dir.parent)
    if not (bids_dir / "participants.tsv").exists():
        _check_disk(
            bids_dir.parent, 2 * size["n_per_group"], size["n_volumes"], size["voxel_size"]
        )
        simulate_cohort(
            bids_dir,
            n_patients=size["n_per_group"],
            n_controls=size["n_per_group"],
            n_volumes=size["n_volumes"],
            voxel_size=size["voxel_size"],
            seed=0,
            n_jobs=n_jobs,
            progress=False,
        )
    return bids_dir


def first_of_each_group(bids_dir: Path, per_group: int) -> list[str]:
    """Labels of the first ``per_group`` subjects of each group, in ``participants.tsv`` order."""
    import pandas as pd

    participants = pd.read_csv(bids_dir / "participants.tsv", sep="\t")
    chosen = participants.groupby("group", sort=False).head(per_group)
    counts = chosen["group"].value_counts()
    if len(counts) != 2 or (counts != per_group).any():
        raise RuntimeError(
            f"{bids_dir}/participants.tsv: expected two groups of at least {per_group}, "
            f"found {participants['group'].value_counts().to_dict()}."
        )
    return sorted(label.removeprefix("sub-") for label in chosen["participant_id"])
