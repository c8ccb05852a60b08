"""The signal model of one simulated subject: its BOLD series, confounds and true maps.

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
:mod:`rsxai.simulate.networks`) and time courses (unit variance,
:mod:`rsxai.simulate.signals`) written to ``ground_truth`` are in these units.

:func:`cohort_anatomy` computes what every subject shares (baseline
intensity, tissue weights, motion patterns); :func:`simulate_subject` draws
and writes one subject. They are apart from :mod:`rsxai.simulate`, which
checks parameters and drives the cohort, because they hold the model itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from rsxai.grid import Grid, mni_template
from rsxai.simulate import dataset, networks, signals
from rsxai.simulate.networks import NETWORK_NAMES

__all__ = ["cohort_anatomy", "model_constants", "simulate_subject"]

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


def cohort_anatomy(
    voxel_size: float, brain_mask: np.ndarray, affine: np.ndarray, grey_matter: np.ndarray
) -> dict[str, np.ndarray]:
    """What every subject shares: baseline intensity, tissue weights, motion patterns, mask edge.

    Parameters
    ----------
    voxel_size : float
        Isotropic voxel size in mm of :func:`rsxai.grid.mni_grid`.
    brain_mask : ndarray of bool, shape (X, Y, Z)
    affine : ndarray of shape (4, 4)
    grey_matter : ndarray of shape (n_voxels,)
        Grey-matter probability of each brain voxel.

    Returns
    -------
    dict
        ``baseline`` (n_voxels,) float32; ``motion_patterns`` and
        ``slice_fraction`` (:func:`rsxai.simulate.signals.motion_patterns`);
        ``tissue`` (n_voxels, 2) float32, white-matter and CSF weights;
        ``edge`` (n_voxels,) bool, the mask's outer layer.
    """
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
    return {
        "baseline": baseline,
        "motion_patterns": patterns,
        "slice_fraction": slice_fraction,
        "tissue": tissue.astype(np.float32),
        "edge": (brain_mask & ~ndimage.binary_erosion(brain_mask))[brain_mask],
    }


def simulate_subject(
    index: int,
    label: str,
    is_patient: bool,
    seed: int,
    context: dict[str, Any],
    fmriprep_dir: Path,
    truth_dir: Path,
) -> None:
    """Simulate one subject and write its fMRIPrep-style files and true maps.

    Parameters
    ----------
    index : int
        0-based position of the subject in label order; the subject draws
        from ``numpy.random.default_rng([seed, 1, index])``.
    label : str
        BIDS label without ``sub-``.
    is_patient : bool
        Whether the cohort's planted effects apply to its maps.
    seed : int
        The cohort's seed.
    context : dict
        What :func:`rsxai.simulate.simulate_cohort` prepared for every subject:
        ``grid``, ``coords``, ``grey_matter``, ``map_scale``, ``effects``,
        ``effect_weights``, ``n_volumes``, ``tr``, ``voxel_size`` and the
        entries of :func:`cohort_anatomy`.
    fmriprep_dir, truth_dir : Path
        Where the derivatives and the subject's ground truth are written.
    """
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


def model_constants() -> dict[str, Any]:
    """The constants of the signal model by name, for ``ground_truth/parameters.json``."""
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
