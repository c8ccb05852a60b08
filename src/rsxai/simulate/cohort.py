"""The built-in simulated resting-state fMRI cohort, with its ground truth.

:func:`simulate_cohort` writes a BIDS dataset whose ``derivatives/fmriprep``
folder looks like fMRIPrep's output in MNI space (preprocessed BOLD, brain
mask, confounds) and a ``ground_truth`` folder holding what was planted: the
network maps, every subject's true maps and time courses, and the patient
effects (layout in :mod:`rsxai.simulate.dataset`). Every later stage of
rsxai is tested against it.

This module checks the parameters, draws the cohort (groups, ages, sexes)
and runs the subjects in parallel. The signal model of one subject's BOLD
series is in :mod:`rsxai.simulate.subject`, its networks in
:mod:`rsxai.simulate.networks` and its time courses and nuisance signals in
:mod:`rsxai.simulate.signals`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from rsxai._version import __version__
from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_brain_mask, mni_grey_matter, mni_grid
from rsxai.outputs import write_json
from rsxai.progress import progress_bar
from rsxai.simulate import dataset, networks
from rsxai.simulate import subject as subject_model
from rsxai.simulate.dataset import GroundTruth, load_ground_truth
from rsxai.simulate.networks import DEFAULT_EFFECTS, NETWORK_NAMES, Effect

__all__ = [
    "DEFAULT_EFFECTS",
    "NETWORK_NAMES",
    "Effect",
    "GroundTruth",
    "SimulatedCohort",
    "load_ground_truth",
    "simulate_cohort",
]

MIN_VOLUMES = 20
MIN_DURATION_S = 60.0
TR_RANGE_S = (0.1, 4.5)
VOXEL_SIZE_RANGE_MM = (1.5, 10.0)


@dataclass(frozen=True)
class SimulatedCohort:
    """Where a simulated cohort was written, and who is in it.

    Attributes
    ----------
    bids_root : Path
        The BIDS dataset (``participants.tsv``).
    fmriprep_dir : Path
        ``derivatives/fmriprep`` with each subject's ``func`` folder.
    ground_truth_dir : Path
        Read it with :func:`load_ground_truth`.
    subjects : tuple of str
        BIDS labels without ``sub-`` (``"001"``, ...).
    groups : tuple of str
        Group of each subject (the patient or the control label).
    """

    bids_root: Path
    fmriprep_dir: Path
    ground_truth_dir: Path
    subjects: tuple[str, ...]
    groups: tuple[str, ...]


def simulate_cohort(
    out_dir: str | os.PathLike,
    *,
    n_patients: int = 30,
    n_controls: int = 30,
    n_volumes: int = 150,
    tr: float = 2.0,
    voxel_size: float = 4.0,
    effects: tuple[Effect, ...] | list[Effect] = DEFAULT_EFFECTS,
    null: bool = False,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
    patient_label: str = "ALS",
    control_label: str = "HC",
) -> SimulatedCohort:
    """Write a simulated two-group rs-fMRI cohort in fMRIPrep layout, with its ground truth.

    Nine resting-state networks (:data:`NETWORK_NAMES`) lie on the grey
    matter of the MNI152 brain; each subject gets slightly shifted and
    rescaled maps, band-limited correlated time courses, smooth AR(1) noise,
    head motion, physiological noise and drift (see the module docstring).
    Patients' maps also carry the planted ``effects``. Subjects are simulated
    in parallel, each from its own seed derived from ``(seed, subject
    index)``, so the output does not depend on ``n_jobs``.

    Parameters
    ----------
    out_dir : str or path-like
        Folder of the BIDS dataset: missing, empty, or an earlier simulated
        cohort whose subjects this one all replaces.
    n_patients, n_controls : int, default=30
        Subjects per group, at least 1 each.
    n_volumes : int, default=150
        Volumes per run, at least 20 and at least 60 s long.
    tr : float, default=2.0
        Repetition time in seconds, 0.1 to 4.5 (the network band, 0.01-0.1 Hz,
        must lie below the Nyquist frequency).
    voxel_size : float, default=4.0
        Isotropic voxel size in mm on :func:`rsxai.grid.mni_grid`, 1.5 to 10.
        At 2 mm and 150 volumes a worker needs about 1.5 GB of memory.
    effects : sequence of Effect, default=DEFAULT_EFFECTS
        Planted patient effects. The default plants three, all lower in patients:
        two sensorimotor (the left and right precentral hand knobs, MNI
        (-38, -26, 54) and (38, -26, 54)) and one visual (right calcarine
        cortex, (10, -88, 6)).
    null : bool, default=False
        Plant no effect at all (``effects`` is ignored).
    seed : int, default=0
        Non-negative seed of everything random.
    n_jobs : int, default=1
        Parallel worker processes (joblib; -1 uses all cores).
    progress : bool, default=True
        Show a progress bar.
    patient_label, control_label : str, default="ALS", "HC"
        Group names written to ``participants.tsv``.

    Returns
    -------
    cohort : SimulatedCohort

    Raises
    ------
    InputError
        Listing every parameter that is not allowed.
    """
    out_dir = Path(out_dir)
    problems = _check_parameters(locals())
    if problems:
        raise InputError(problems)
    effects = () if null else tuple(effects)
    tr, voxel_size, n_volumes = float(tr), float(voxel_size), int(n_volumes)
    n_subjects = int(n_patients + n_controls)
    labels = [f"{i + 1:0{max(3, len(str(n_subjects)))}d}" for i in range(n_subjects)]

    affine, shape = mni_grid(voxel_size)
    brain_mask = mni_brain_mask(voxel_size)
    grid = Grid(brain_mask, affine)
    coords = grid.world_coordinates()
    grey_matter = mni_grey_matter(voxel_size)[brain_mask]
    group_maps, map_scale = networks.group_network_maps(coords, grey_matter)
    problems = networks.check_effects(effects, coords, group_maps, brain_mask, affine)
    problems += dataset.check_out_dir(out_dir, labels)
    if problems:
        raise InputError(problems)

    # Cohort-level draws use stream [seed, 0]; subject i uses [seed, 1, i].
    cohort_rng = np.random.default_rng([seed, 0])
    groups = np.array([patient_label] * n_patients + [control_label] * n_controls)
    groups = groups[cohort_rng.permutation(n_subjects)]
    ages = np.clip(np.rint(cohort_rng.normal(62.0, 9.0, n_subjects)), 35, 85).astype(int)
    participants = pd.DataFrame(
        {
            "participant_id": [f"sub-{label}" for label in labels],
            "group": groups,
            "age": ages,
            "sex": cohort_rng.choice(["F", "M"], size=n_subjects),
        }
    )

    fmriprep_dir = out_dir / "derivatives" / "fmriprep"
    truth_dir = out_dir / "ground_truth"
    dataset.write_descriptions(out_dir, fmriprep_dir)

    anatomy = subject_model.cohort_anatomy(voxel_size, brain_mask, affine, grey_matter)
    weights = None
    if effects:
        weights = np.stack([networks.effect_weight(coords, e) for e in effects], axis=1)
    context = {
        "grid": grid,
        "coords": coords,
        "grey_matter": grey_matter,
        "map_scale": map_scale,
        "effects": effects,
        "effect_weights": weights,
        **anatomy,
        "n_volumes": n_volumes,
        "tr": tr,
        "voxel_size": voxel_size,
    }
    jobs = (
        delayed(subject_model.simulate_subject)(
            i, label, group == patient_label, seed, context, fmriprep_dir, truth_dir
        )
        for i, (label, group) in enumerate(zip(labels, groups, strict=True))
    )
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    for _ in progress_bar(results, total=n_subjects, desc="Simulating subjects", enabled=progress):
        pass

    dataset.write_group_truth(truth_dir, grid, group_maps, effects, weights)
    parameters = {
        "rsxai_version": __version__,
        "seed": seed,
        "null": bool(null),
        "n_patients": n_patients,
        "n_controls": n_controls,
        "n_volumes": n_volumes,
        "tr": tr,
        "voxel_size": voxel_size,
        "patient_label": patient_label,
        "control_label": control_label,
        "n_jobs": n_jobs,
        "progress": bool(progress),
        "effects": [asdict(e) for e in effects],
        "grid": {"space": dataset.SPACE, "shape": list(shape), "affine": affine.tolist()},
        "subjects": participants.to_dict(orient="records"),
        "random_streams": "numpy default_rng([seed, 0]) for groups, ages and sexes; "
        "default_rng([seed, 1, i]) for subject i (0-based, in label order)",
        "networks": {
            name: [asdict(blob) for blob in networks.NETWORK_BLOBS[name]] for name in NETWORK_NAMES
        },
        "model": subject_model.model_constants(),
    }
    write_json(truth_dir / "parameters.json", parameters)
    dataset.write_participants(out_dir, participants, patient_label, control_label)
    return SimulatedCohort(
        bids_root=out_dir,
        fmriprep_dir=fmriprep_dir,
        ground_truth_dir=truth_dir,
        subjects=tuple(labels),
        groups=tuple(str(g) for g in groups),
    )


def _check_parameters(values: dict[str, Any]) -> list[str]:
    """One message per parameter of :func:`simulate_cohort` that is not allowed."""
    problems = []

    def integer(name: str, low: int) -> bool:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            problems.append(f"{name} must be an integer >= {low}; got {value!r}.")
            return False
        return True

    def number(name: str, low: float, high: float, unit: str, hint: str = "") -> bool:
        value = values[name]
        ok = (
            isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool)
            and bool(np.isfinite(value))
            and low <= value <= high
        )
        if not ok:
            problems.append(
                f"{name} must be a number of {unit} from {low:g} to {high:g}{hint}; got {value!r}."
            )
        return ok

    integer("n_patients", 1)
    integer("n_controls", 1)
    tr_ok = number("tr", *TR_RANGE_S, "seconds")
    if integer("n_volumes", MIN_VOLUMES) and tr_ok:
        duration = values["n_volumes"] * values["tr"]
        if duration < MIN_DURATION_S:
            problems.append(
                f"n_volumes={values['n_volumes']} at tr={values['tr']} s lasts {duration:g} s; "
                f"a run must last at least {MIN_DURATION_S:g} s to carry 0.01-0.1 Hz "
                f"fluctuations: give n_volumes >= {int(np.ceil(MIN_DURATION_S / values['tr']))}."
            )
    number("voxel_size", *VOXEL_SIZE_RANGE_MM, "mm", " (2, 3 and 4 are usual)")
    integer("seed", 0)
    n_jobs = values["n_jobs"]
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        problems.append(f"n_jobs must be a non-zero integer (-1: all cores); got {n_jobs!r}.")
    for name in ("null", "progress"):
        if not isinstance(values[name], (bool, np.bool_)):
            problems.append(f"{name} must be True or False; got {values[name]!r}.")
    effects = values["effects"]
    planting = isinstance(values["null"], (bool, np.bool_)) and not values["null"]
    if planting and not isinstance(effects, (list, tuple)):
        problems.append(
            f"effects must be a tuple or list of Effect (may be empty); got {effects!r}."
        )
    labels = [values["patient_label"], values["control_label"]]
    for name, label in zip(("patient_label", "control_label"), labels, strict=True):
        if not isinstance(label, str) or not label.replace("-", "").isalnum():
            problems.append(
                f"{name} must be a non-empty string of letters, digits or '-'; got {label!r}."
            )
    if labels[0] == labels[1]:
        problems.append(f"patient_label and control_label must differ; both are {labels[0]!r}.")
    return problems
