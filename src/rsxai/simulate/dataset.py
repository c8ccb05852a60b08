"""The files of a simulated cohort: fMRIPrep-style BIDS layout and the ground truth.

Every name :func:`rsxai.simulate.simulate_cohort` writes is defined here, next
to the reader of its ground truth (:func:`load_ground_truth`)::

    OUT/
      dataset_description.json, participants.tsv, participants.json
      derivatives/fmriprep/
        dataset_description.json
        sub-<label>/func/
          sub-<label>_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz (.json)
          sub-<label>_task-rest_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz
          sub-<label>_task-rest_desc-confounds_timeseries.tsv
      ground_truth/
        networks.nii.gz  (X, Y, Z, K) group network maps; networks.tsv (index, name)
        effects.nii.gz   (X, Y, Z, E) signed expected change of a patient's map
                         (absent when E == 0); effects.tsv (one row per effect)
        subjects/sub-<label>_maps.nii.gz (X, Y, Z, K); sub-<label>_timecourses.tsv (T x K)
        parameters.json  every parameter, the seed, the rsxai version, the grid
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai._version import __version__
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.outputs import read_json, write_json, write_nifti, write_tsv
from rsxai.simulate.networks import NETWORK_NAMES, Effect
from rsxai.simulate.signals import framewise_displacement

SPACE = "MNI152NLin2009cAsym"
DATASET_NAME = "rsxai simulated cohort"


@dataclass
class GroundTruth:
    """What a simulated cohort was made of.

    Attributes
    ----------
    network_names : list of str
    networks : ndarray of shape (X, Y, Z, K)
        Group network maps, peak 1, zero outside grey matter.
    effects : ndarray of shape (X, Y, Z, E)
        Signed expected change of a patient's map for each planted effect
        (``network map * sign * strength * w``); E is 0 for a null cohort.
    effect_table : pandas.DataFrame
        One row per effect: index, network, center_x, center_y, center_z,
        radius_mm, strength, sign.
    affine : ndarray of shape (4, 4)
    parameters : dict
        Everything ``simulate_cohort`` was called with, the model's
        constants, the grid and the subjects.
    ground_truth_dir : Path
    """

    network_names: list[str]
    networks: np.ndarray
    effects: np.ndarray
    effect_table: pd.DataFrame
    affine: np.ndarray
    parameters: dict[str, Any]
    ground_truth_dir: Path

    def load_subject(self, subject: str) -> tuple[np.ndarray, pd.DataFrame]:
        """One subject's true network maps and time courses.

        Parameters
        ----------
        subject : str
            Label with or without ``sub-`` (``"001"`` or ``"sub-001"``).

        Returns
        -------
        maps : ndarray of shape (X, Y, Z, K), float32
            Planted effects included for a patient.
        timecourses : pandas.DataFrame of shape (T, K)
            Columns are the network names.
        """
        label = str(subject).removeprefix("sub-")
        folder = self.ground_truth_dir / "subjects"
        maps_path = folder / f"sub-{label}_maps.nii.gz"
        if not maps_path.exists():
            known = [s["participant_id"] for s in self.parameters["subjects"]]
            raise InputError(
                f"subject {subject!r}: {maps_path} does not exist; the subjects of this "
                f"cohort are {', '.join(known[:3])} ... {known[-1]}."
            )
        maps = np.asarray(nib.load(maps_path).dataobj, dtype=np.float32)
        timecourses = pd.read_csv(folder / f"sub-{label}_timecourses.tsv", sep="\t")
        return maps, timecourses


def load_ground_truth(ground_truth_dir: str | os.PathLike) -> GroundTruth:
    """Read the ``ground_truth`` folder of a simulated cohort.

    Parameters
    ----------
    ground_truth_dir : str or path-like
        ``SimulatedCohort.ground_truth_dir``.

    Returns
    -------
    truth : GroundTruth
    """
    folder = Path(ground_truth_dir)
    needed = ["networks.nii.gz", "networks.tsv", "effects.tsv", "parameters.json"]
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise InputError(
            f"{folder / name} is missing; give the ground_truth folder that "
            "rsxai.simulate.cohort.simulate_cohort wrote."
            for name in missing
        )
    networks_img = nib.load(folder / "networks.nii.gz")
    networks = np.asarray(networks_img.dataobj, dtype=np.float32)
    effect_table = pd.read_csv(folder / "effects.tsv", sep="\t")
    if len(effect_table):
        effects = np.asarray(nib.load(folder / "effects.nii.gz").dataobj, dtype=np.float32)
    else:
        effects = np.zeros((*networks.shape[:3], 0), dtype=np.float32)
    return GroundTruth(
        network_names=pd.read_csv(folder / "networks.tsv", sep="\t")["name"].tolist(),
        networks=networks,
        effects=effects,
        effect_table=effect_table,
        affine=networks_img.affine,
        parameters=read_json(folder / "parameters.json"),
        ground_truth_dir=folder,
    )


def write_descriptions(out_dir: Path, fmriprep_dir: Path) -> None:
    """The raw and the derivative ``dataset_description.json``."""
    generated_by = [{"Name": "rsxai simulate", "Version": __version__}]
    raw = {"Name": DATASET_NAME, "BIDSVersion": "1.9.0", "DatasetType": "raw"}
    write_json(out_dir / "dataset_description.json", {**raw, "GeneratedBy": generated_by})
    derivative = {
        "Name": f"{DATASET_NAME}: fMRIPrep-style derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": generated_by,
    }
    write_json(fmriprep_dir / "dataset_description.json", derivative)


def write_participants(
    out_dir: Path, participants: pd.DataFrame, patient_label: str, control_label: str
) -> None:
    """``participants.json`` and, last (it marks a complete cohort), ``participants.tsv``."""
    sidecar = {
        "participant_id": {"Description": "Subject identifier (simulated)."},
        "group": {
            "Description": "Diagnostic group.",
            "Levels": {
                patient_label: "patient (planted effects in the network maps)",
                control_label: "healthy control",
            },
        },
        "age": {"Description": "Age at scan, drawn independently of group.", "Units": "year"},
        "sex": {
            "Description": "Sex, drawn independently of group.",
            "Levels": {"F": "female", "M": "male"},
        },
    }
    write_json(out_dir / "participants.json", sidecar)
    write_tsv(out_dir / "participants.tsv", participants)


def write_subject_derivatives(
    fmriprep_dir: Path,
    label: str,
    grid: Grid,
    data: np.ndarray,
    tr: float,
    confounds: pd.DataFrame,
) -> None:
    """One subject's preprocessed BOLD, its sidecar, brain mask and confounds.

    Parameters
    ----------
    fmriprep_dir : Path
    label : str
        Without ``sub-``.
    grid : Grid
        The subject's brain mask on the MNI grid.
    data : ndarray of shape (n_volumes, n_voxels)
        BOLD in the mask; zero outside it in the written image.
    tr : float
    confounds : pandas.DataFrame
        From :func:`confounds_table`.
    """
    func = fmriprep_dir / f"sub-{label}" / "func"
    stem = f"sub-{label}_task-rest"
    bold = grid.to_img(data)
    bold.header.set_xyzt_units("mm", "sec")
    bold.header.set_zooms((*bold.header.get_zooms()[:3], tr))
    mask = grid.mask_img()
    for img in (bold, mask):
        img.set_sform(grid.affine, code="mni")
        img.set_qform(grid.affine, code="mni")
    write_nifti(func / f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz", bold)
    write_json(
        func / f"{stem}_space-{SPACE}_desc-preproc_bold.json",
        {"RepetitionTime": tr, "TaskName": "rest", "SkullStripped": False},
    )
    write_nifti(func / f"{stem}_space-{SPACE}_desc-brain_mask.nii.gz", mask)
    write_tsv(func / f"{stem}_desc-confounds_timeseries.tsv", confounds)


def confounds_table(
    motion: np.ndarray,
    white_matter: np.ndarray,
    csf: np.ndarray,
    global_signal: np.ndarray,
) -> pd.DataFrame:
    """An fMRIPrep ``desc-confounds_timeseries`` table.

    Each signal comes with fMRIPrep's expansions: ``_derivative1`` (backward
    difference, missing at the first volume), ``_power2`` and
    ``_derivative1_power2``.

    Parameters
    ----------
    motion : ndarray of shape (n_volumes, 6)
        Translations (mm) then rotations (radians).
    white_matter, csf, global_signal : ndarray of shape (n_volumes,)

    Returns
    -------
    table : pandas.DataFrame
        Columns global_signal, csf, white_matter (each with expansions),
        framewise_displacement, then trans_x ... rot_z with expansions.
    """
    columns: dict[str, np.ndarray] = {}

    def add(name: str, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        derivative = np.concatenate([[np.nan], np.diff(values)])
        columns[name] = values
        columns[f"{name}_derivative1"] = derivative
        columns[f"{name}_power2"] = values**2
        columns[f"{name}_derivative1_power2"] = derivative**2

    add("global_signal", global_signal)
    add("csf", csf)
    add("white_matter", white_matter)
    columns["framewise_displacement"] = framewise_displacement(motion)
    for j, name in enumerate(("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")):
        add(name, motion[:, j])
    return pd.DataFrame(columns)


def write_group_truth(
    truth_dir: Path,
    grid: Grid,
    group_maps: np.ndarray,
    effects: tuple[Effect, ...],
    effect_weights: np.ndarray | None,
) -> None:
    """Network maps, effect maps and their tables.

    Parameters
    ----------
    truth_dir : Path
    grid : Grid
        The MNI brain mask.
    group_maps : ndarray of shape (n_voxels, K)
    effects : tuple of Effect
    effect_weights : ndarray of shape (n_voxels, E) or None when E == 0
    """
    write_nifti(truth_dir / "networks.nii.gz", grid.to_img(group_maps.T))
    write_tsv(
        truth_dir / "networks.tsv",
        pd.DataFrame({"index": range(len(NETWORK_NAMES)), "name": NETWORK_NAMES}),
    )
    columns = ["index", "network", "center_x", "center_y", "center_z"]
    columns += ["radius_mm", "strength", "sign"]
    rows = [
        (e, effect.network, *effect.center_mm, effect.radius_mm, effect.strength, effect.sign)
        for e, effect in enumerate(effects)
    ]
    write_tsv(truth_dir / "effects.tsv", pd.DataFrame(rows, columns=columns))
    effects_path = truth_dir / "effects.nii.gz"
    if effects:
        changes = [
            group_maps[:, NETWORK_NAMES.index(effect.network)]
            * (effect.sign * effect.strength * effect_weights[:, e])
            for e, effect in enumerate(effects)
        ]
        write_nifti(effects_path, grid.to_img(np.stack(changes)))
    else:
        # A replaced earlier cohort's effects must not outlive it.
        effects_path.unlink(missing_ok=True)


def write_subject_truth(
    truth_dir: Path, label: str, grid: Grid, maps: np.ndarray, timecourses: np.ndarray
) -> None:
    """One subject's true maps (n_voxels, K) and time courses (T, K)."""
    folder = truth_dir / "subjects"
    write_nifti(folder / f"sub-{label}_maps.nii.gz", grid.to_img(maps.T))
    write_tsv(
        folder / f"sub-{label}_timecourses.tsv",
        pd.DataFrame(timecourses, columns=list(NETWORK_NAMES)),
    )


def check_out_dir(out_dir: Path, labels: list[str]) -> list[str]:
    """Problems with writing a cohort of ``labels`` into ``out_dir`` (empty when none).

    The folder must be missing, empty, or an earlier simulated cohort all of
    whose subjects the new one replaces, so that nothing else is overwritten
    and no stale subject is left behind.
    """
    if out_dir.exists() and not out_dir.is_dir():
        return [f"out_dir {out_dir} is a file; give a folder for the simulated dataset."]
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return []
    try:
        ours = read_json(out_dir / "dataset_description.json").get("Name") == DATASET_NAME
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        return [
            f"out_dir {out_dir} is not empty and does not hold an rsxai simulated cohort; "
            "give a new or empty folder so that nothing there is overwritten."
        ]
    wanted = {f"sub-{label}" for label in labels}
    stale = sorted(
        path.name
        for path in (out_dir / "derivatives" / "fmriprep").glob("sub-*")
        if path.name not in wanted
    )
    if stale:
        listed = ", ".join(stale[:5]) + (", ..." if len(stale) > 5 else "")
        return [
            f"out_dir {out_dir} holds an earlier simulated cohort with subjects this one "
            f"would not replace ({listed}); delete the folder or give a new one."
        ]
    return []
