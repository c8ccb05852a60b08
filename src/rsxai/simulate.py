"""The built-in simulated resting-state fMRI cohort, with its ground truth.

:func:`simulate_cohort` writes a BIDS dataset whose ``derivatives/fmriprep``
folder looks like fMRIPrep's output in MNI space (preprocessed BOLD, brain
mask, confounds) and a ``ground_truth`` folder holding what was planted: the
network maps, every subject's true maps and time courses, and the patient
effects (layout in :mod:`rsxai.simulated_dataset`). Every later stage of
rsxai is tested against it.

Model of subject s at brain voxel v and volume t::

    bold = baseline(v) * (1 + drift_s(t))
         + unit * ( sum_k map_sk(v) * tc_sk(t)          networks
                    + NOISE_SD * noise_s(v, t)          smooth AR(1) noise
                    + WM_SD * wm(v) * wm_s(t)           physiological
                    + CSF_SD * csf(v) * csf_s(t) )
         + motion_artefact_s(v, t)                      24-parameter model span

``unit`` is 0.5 % of the mean brain baseline, so a network peak fluctuates by
0.5 % and the noise by 0.5 % of the signal: networks explain a minority of
a voxel's variance, as in real rs-fMRI. The maps (peak 1,
:mod:`rsxai.simulated_networks`) and time courses (unit variance,
:mod:`rsxai.simulated_signals`) written to ``ground_truth`` are in these units.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import ndimage
from tqdm.auto import tqdm

from rsxai import simulated_dataset as dataset
from rsxai import simulated_networks as networks
from rsxai import simulated_signals as signals
from rsxai._version import __version__
from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_brain_mask, mni_grey_matter, mni_grid, mni_template
from rsxai.outputs import write_json
from rsxai.simulated_dataset import GroundTruth, load_ground_truth
from rsxai.simulated_networks import DEFAULT_EFFECTS, NETWORK_NAMES, Effect

__all__ = [
    "DEFAULT_EFFECTS",
    "NETWORK_NAMES",
    "Effect",
    "GroundTruth",
    "SimulatedCohort",
    "load_ground_truth",
    "simulate_cohort",
]

# Signal model, in signal units (see the module docstring).
SIGNAL_UNIT_PERCENT = 0.5
# Noise a little below a network's peak fluctuation. Measured on the default
# 30 + 30 cohort at 4 mm: single-subject dual-regression maps correlate with the
# subject's true maps at r ~ 0.25 (noisy, as in real data), group ICA finds
# the sensorimotor and visual networks, and the default effects reach
# FWE-corrected significance at 5,000 permutations; at 1.0 the same effects
# were not detected at the subject-map level (Cohen's d ~ 0.4).
NOISE_SD = 0.6
WM_SD = 0.7
CSF_SD = 2.0
# Baseline intensity: BASELINE_SCALE * (1 - BASELINE_CONTRAST * (1 - t)), with t
# the MNI T1 template over its 99th brain percentile (CSF about 550, grey
# matter about 820, white matter about 1000): shaped like the template, with
# the lower tissue contrast of an EPI.
BASELINE_SCALE = 1000.0
BASELINE_CONTRAST = 0.6
# Each subject's mask loses this fraction range of the group mask's edge voxels.
MASK_EDGE_LOSS = (0.005, 0.03)
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
        Planted patient effects (one sensorimotor, one visual by default).
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

    template = mni_template(voxel_size)
    t1 = template / np.percentile(template[brain_mask], 99)
    baseline = np.where(brain_mask, BASELINE_SCALE * (1 - BASELINE_CONTRAST * (1 - t1)), 0.0)
    patterns, slice_fraction = signals.motion_patterns(baseline, brain_mask, affine)
    baseline = baseline[brain_mask].astype(np.float32)
    # Tissue weights from T1 intensity classes of the template, outside grey
    # matter: CSF is dark, white matter bright.
    t1 = t1[brain_mask]
    tissue = np.column_stack(
        [np.clip((t1 - 0.8) / 0.12, 0, 1), np.clip((0.55 - t1) / 0.2, 0, 1)]
    ) * (1 - grey_matter[:, None])
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
        "baseline": baseline,
        "motion_patterns": patterns,
        "slice_fraction": slice_fraction,
        "tissue": tissue.astype(np.float32),
        "edge": (brain_mask & ~ndimage.binary_erosion(brain_mask))[brain_mask],
        "n_volumes": n_volumes,
        "tr": tr,
        "voxel_size": voxel_size,
    }
    jobs = (
        delayed(_simulate_subject)(
            i, label, group == patient_label, seed, context, fmriprep_dir, truth_dir
        )
        for i, (label, group) in enumerate(zip(labels, groups, strict=True))
    )
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    for _ in tqdm(results, total=n_subjects, desc="Simulating subjects", disable=not progress):
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
        "model": _model_constants(),
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


def _simulate_subject(
    index: int,
    label: str,
    is_patient: bool,
    seed: int,
    context: dict[str, Any],
    fmriprep_dir: Path,
    truth_dir: Path,
) -> None:
    """Simulate one subject and write its fMRIPrep-style files and true maps."""
    rng = np.random.default_rng([seed, 1, index])
    n_volumes, tr, grid = context["n_volumes"], context["tr"], context["grid"]
    baseline, tissue = context["baseline"], context["tissue"]

    maps = networks.draw_subject_maps(
        context["coords"], context["grey_matter"], context["map_scale"], rng
    )
    if is_patient and context["effects"]:
        maps = networks.apply_effects(maps, context["effect_weights"], context["effects"])
    timecourses = signals.network_timecourses(n_volumes, len(NETWORK_NAMES), tr, rng)
    noise = signals.smooth_ar1_noise(n_volumes, grid.mask, context["voxel_size"], tr, rng)
    physiological = signals.physiological_signals(n_volumes, tr, rng)
    motion = signals.motion_parameters(n_volumes, tr, rng)
    drift = signals.drift(n_volumes, tr, rng)
    edge = context["edge"]
    kept = ~(edge & (rng.random(edge.size) < rng.uniform(*MASK_EDGE_LOSS)))

    unit = SIGNAL_UNIT_PERCENT / 100.0 * float(baseline.mean())
    physiological = physiological * np.array([WM_SD, CSF_SD])
    data = timecourses.astype(np.float32) @ maps.T
    data += NOISE_SD * noise
    del noise
    data += physiological.astype(np.float32) @ tissue.T
    data *= unit
    data += baseline * (1.0 + drift[:, None]).astype(np.float32)
    data += signals.motion_artefact(
        motion, context["motion_patterns"], context["slice_fraction"], baseline
    )
    data = data[:, kept]

    # fMRIPrep's tissue signals are tissue means; here each is the weighted
    # mean of its physiological component (plus baseline), so regressing it
    # removes that component exactly.
    weight_sum = tissue.sum(axis=0)
    tissue_signals = (tissue * baseline[:, None]).sum(axis=0) / weight_sum + unit * (
        physiological * (tissue**2).sum(axis=0) / weight_sum
    )
    confounds = dataset.confounds_table(
        motion, tissue_signals[:, 0], tissue_signals[:, 1], data.mean(axis=1)
    )
    subject_mask = np.zeros(grid.shape, dtype=bool)
    subject_mask[grid.mask] = kept
    subject_grid = Grid(subject_mask, grid.affine)
    dataset.write_subject_derivatives(fmriprep_dir, label, subject_grid, data, tr, confounds)
    dataset.write_subject_truth(truth_dir, label, grid, maps, timecourses)


def _model_constants() -> dict[str, Any]:
    return {
        "signal_unit_percent_of_mean_baseline": SIGNAL_UNIT_PERCENT,
        "noise_sd": NOISE_SD,
        "noise_fwhm_mm": signals.NOISE_FWHM_MM,
        "noise_ar_time_constant_s": signals.NOISE_AR_TIME_CONSTANT_S,
        "white_matter_sd": WM_SD,
        "csf_sd": CSF_SD,
        "baseline_scale": BASELINE_SCALE,
        "baseline_contrast": BASELINE_CONTRAST,
        "network_band_hz": list(signals.NETWORK_BAND_HZ),
        "network_correlation_range": list(signals.NETWORK_CORRELATION_RANGE),
        "grey_matter_threshold": networks.GREY_MATTER_THRESHOLD,
        "blob_truncation_sd": networks.BLOB_TRUNCATION_SD,
        "subject_shift_sd_mm": networks.SHIFT_SD_MM,
        "subject_network_gain_sd": networks.NETWORK_GAIN_SD,
        "subject_blob_gain_sd": networks.BLOB_GAIN_SD,
        "effect_truncation_radii": networks.EFFECT_TRUNCATION_RADII,
        "spin_history_per_mm2": signals.SPIN_HISTORY_PER_MM2,
        "linear_drift_percent_per_min_sd": signals.LINEAR_DRIFT_PERCENT_PER_MIN_SD,
        "quadratic_drift_percent_sd": signals.QUADRATIC_DRIFT_PERCENT_SD,
        "mask_edge_loss_fraction": list(MASK_EDGE_LOSS),
    }


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
