"""Small fMRIPrep-style BIDS trees for tests (``from fmriprep_fixture import ...``).

Images lie on :func:`rsxai.grid.mni_grid` at 10 mm (19 x 22 x 19 voxels), so
they pass the MNI-space check; the "brain" is an ellipsoid inside the MNI
box with noisy signal, zero outside; masks are that ellipsoid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from rsxai.grid import mni_grid

VOXEL_MM = 10.0
SPACE = "MNI152NLin2009cAsym"


def brain_ellipsoid(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Boolean ellipsoid roughly where the MNI brain is, shape ``shape``."""
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    radii, centre = np.array([70.0, 100.0, 80.0]), np.array([0.0, -18.0, 18.0])
    return (((xyz - centre) / radii) ** 2).sum(axis=1).reshape(shape) < 1


def write_bold(
    path: Path,
    *,
    n_volumes: int = 20,
    tr: float = 2.0,
    affine: np.ndarray | None = None,
    shape: tuple[int, int, int] | None = None,
    dtype: type = np.int16,
    seed: int = 0,
    time_unit: str = "sec",
) -> Path:
    """Write a 4D BOLD-like image; ``affine``/``shape`` default to the 10 mm MNI grid."""
    if affine is None:
        affine, shape = mni_grid(VOXEL_MM)
    rng = np.random.default_rng(seed)
    brain = brain_ellipsoid(affine, shape)
    data = np.zeros((*shape, n_volumes), dtype=np.float32)
    data[brain] = 1000 + 20 * rng.standard_normal((int(brain.sum()), n_volumes))
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.header.set_xyzt_units("mm", time_unit)
    scale = {"sec": 1.0, "msec": 1000.0, "usec": 1e6}[time_unit]
    img.header.set_zooms((*img.header.get_zooms()[:3], tr * scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def write_mask(
    path: Path, affine: np.ndarray | None = None, shape: tuple[int, int, int] | None = None
) -> Path:
    """Write a uint8 brain mask (the ellipsoid) on the given grid."""
    if affine is None:
        affine, shape = mni_grid(VOXEL_MM)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(brain_ellipsoid(affine, shape).astype(np.uint8), affine), path)
    return path


def write_confounds(path: Path, n_rows: int, seed: int = 0) -> Path:
    """Write an fMRIPrep-like confounds table (first framewise_displacement is n/a)."""
    rng = np.random.default_rng(seed)
    columns = [
        "global_signal",
        "csf",
        "white_matter",
        "trans_x",
        "rot_x",
        "framewise_displacement",
    ]
    lines = ["\t".join(columns)]
    for row in range(n_rows):
        values = [f"{v:.5f}" for v in rng.standard_normal(len(columns))]
        if row == 0:
            values[-1] = "n/a"
        lines.append("\t".join(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_participants(path: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write a TSV from dict rows (columns of the first row, in order)."""
    rows = list(rows)
    columns = list(rows[0])
    lines = ["\t".join(columns)] + ["\t".join(str(row[c]) for c in columns) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def default_groups(n_per_group: int = 5, positive: str = "ALS", control: str = "HC") -> dict:
    """``{"01": "ALS", ..., "10": "HC"}``: ``n_per_group`` subjects per group."""
    return {
        f"{i + 1:02d}": positive if i < n_per_group else control for i in range(2 * n_per_group)
    }


def entity_name(label: str, session, task, acq, run, space, res, tail: str) -> str:
    """A file name from its entities, in BIDS order."""
    parts = [f"sub-{label}"]
    for key, value in (("ses", session), ("task", task), ("acq", acq), ("run", run)):
        if value is not None:
            parts.append(f"{key}-{value}")
    for key, value in (("space", space), ("res", res)):
        if value is not None:
            parts.append(f"{key}-{value}")
    return "_".join(parts) + "_" + tail


@dataclass
class FmriprepTree:
    """Paths of a tree written by :func:`make_fmriprep_tree`."""

    root: Path
    derivatives: Path
    participants: Path
    task: str = "rest"
    space: str = SPACE
    res: str | None = None

    def func(self, label: str, session: str | None = None) -> Path:
        """The subject's (and session's) func folder."""
        folder = self.derivatives / f"sub-{label}"
        return (folder / f"ses-{session}" if session else folder) / "func"

    def _name(self, label, session, run, spaced, tail) -> Path:
        space, res = (self.space, self.res) if spaced else (None, None)
        name = entity_name(label, session, self.task, None, run, space, res, tail)
        return self.func(label, session) / name

    def bold(self, label: str, session: str | None = None, run: str | None = None) -> Path:
        return self._name(label, session, run, True, "desc-preproc_bold.nii.gz")

    def mask(self, label: str, session: str | None = None, run: str | None = None) -> Path:
        return self._name(label, session, run, True, "desc-brain_mask.nii.gz")

    def sidecar(self, label: str, session: str | None = None, run: str | None = None) -> Path:
        return self._name(label, session, run, True, "desc-preproc_bold.json")

    def confounds(self, label: str, session: str | None = None, run: str | None = None) -> Path:
        return self._name(label, session, run, False, "desc-confounds_timeseries.tsv")


def _write_extras(tree: FmriprepTree, label: str) -> None:
    # What real fMRIPrep trees hold besides the files rsxai reads; all must be ignored.
    subject = tree.derivatives / f"sub-{label}"
    for relative in (
        f"anat/sub-{label}_desc-preproc_T1w.nii.gz",
        f"anat/sub-{label}_space-{SPACE}_desc-brain_mask.nii.gz",
        f"figures/sub-{label}_task-rest_desc-rois_bold.svg",
        f"log/sub-{label}_crash.txt",
        f"func/sub-{label}_task-rest_space-{SPACE}_boldref.nii.gz",
        f"func/sub-{label}_task-rest_space-{SPACE}_desc-aparcaseg_dseg.nii.gz",
        f"func/sub-{label}_task-rest_space-T1w_desc-preproc_bold.nii.gz",
        f"func/sub-{label}_task-rest_desc-confounds_timeseries.json",
        f"func/sub-{label}_task-rest_hemi-L_space-fsaverage5_bold.func.gii",
        f"func/sub-{label}_task-rest_space-fsLR_den-91k_bold.dtseries.nii",
        f"func/sub-{label}_task-motor_space-{SPACE}_desc-preproc_bold.nii.gz",
    ):
        path = subject / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tree.derivatives / f"sub-{label}.html").write_text("<html></html>")


def make_fmriprep_tree(
    root: Path,
    groups: Mapping[str, str] | None = None,
    *,
    n_volumes: int = 20,
    tr: float = 2.0,
    sessions: Iterable[str | None] = (None,),
    runs: Iterable[str | None] = (None,),
    covariates: Mapping[str, Mapping[str, object]] | None = None,
    res: str | None = None,
    with_sidecar: bool = True,
    extras: bool = True,
    participants_in: str = "root",
    seed: int = 0,
) -> FmriprepTree:
    """Write a BIDS root with participants.tsv and fMRIPrep derivatives.

    Parameters
    ----------
    root : Path
        BIDS root to create; derivatives go to ``root/derivatives/fmriprep``.
    groups : mapping of str to str, optional
        Label to group (default :func:`default_groups`).
    sessions, runs : iterable of str or None
        Every subject gets one series per (session, run).
    covariates : mapping of str to mapping, optional
        Label to extra participants.tsv columns; default ``age`` and ``sex``.
    participants_in : {"root", "derivatives"}
        Where participants.tsv goes.
    """
    groups = dict(default_groups() if groups is None else groups)
    derivatives = root / "derivatives" / "fmriprep"
    derivatives.mkdir(parents=True, exist_ok=True)
    (derivatives / "dataset_description.json").write_text(
        json.dumps({"Name": "fMRIPrep", "DatasetType": "derivative"})
    )
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.8"})
    )
    if covariates is None:
        covariates = {
            label: {"age": 40 + index, "sex": "MF"[index % 2]}
            for index, label in enumerate(groups)
        }
    participants_folder = root if participants_in == "root" else derivatives
    table = write_participants(
        participants_folder / "participants.tsv",
        [
            {"participant_id": f"sub-{label}", "group": group, **covariates.get(label, {})}
            for label, group in groups.items()
        ],
    )
    tree = FmriprepTree(root, derivatives, table, res=res)
    sessions, runs = list(sessions), list(runs)
    for index, label in enumerate(groups):
        for session in sessions:
            for run in runs:
                bold = write_bold(
                    tree.bold(label, session, run), n_volumes=n_volumes, tr=tr, seed=seed + index
                )
                write_mask(tree.mask(label, session, run))
                write_confounds(tree.confounds(label, session, run), n_volumes, seed=index)
                if with_sidecar:
                    tree.sidecar(label, session, run).write_text(
                        json.dumps({"RepetitionTime": tr, "SkullStripped": False})
                    )
                assert bold.exists()
        if extras:
            _write_extras(tree, label)
    return tree


def make_empty_tree(root: Path, n_subjects: int) -> Path:
    """An fMRIPrep-style tree of empty files (for timing discovery), with participants.tsv."""
    derivatives = root / "derivatives" / "fmriprep"
    rows = []
    for index in range(n_subjects):
        label = f"{index:04d}"
        func = derivatives / f"sub-{label}" / "func"
        func.mkdir(parents=True)
        stem = f"sub-{label}_task-rest"
        for name in (
            f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz",
            f"{stem}_space-{SPACE}_desc-preproc_bold.json",
            f"{stem}_space-{SPACE}_desc-brain_mask.nii.gz",
            f"{stem}_space-{SPACE}_boldref.nii.gz",
            f"{stem}_desc-confounds_timeseries.tsv",
        ):
            (func / name).write_bytes(b"{}" if name.endswith(".json") else b"")
        rows.append({"participant_id": f"sub-{label}", "group": "ALS" if index % 2 else "HC"})
    write_participants(root / "participants.tsv", rows)
    return root
