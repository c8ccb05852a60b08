"""The registry of every option: section, name, default, flag, help.

Adding an option here adds it to the configuration file, the command line
(``--help`` shows its default) and the resolved ``rsxai.toml`` at once. The
options of the learning stages (classify, explain) are in
:mod:`rsxai.config.learning_options`.
"""

from __future__ import annotations

from rsxai.config.learning_options import LEARNING_OPTIONS
from rsxai.config.option import STAGES, Option

__all__ = ["OPTIONS", "STAGES", "Option"]

_DATA_OPTIONS: tuple[Option, ...] = (
    # [input] which data, which subjects, which labels
    Option(
        "input",
        "derivatives",
        None,
        "fMRIPrep derivatives folder, when not in INPUT/derivatives/fmriprep.",
        "--derivatives",
        nullable=True,
    ),
    Option("input", "task", "rest", "BIDS task label of the resting-state runs.", "--task"),
    Option(
        "input", "space", "MNI152NLin2009cAsym", "BIDS space of the preprocessed BOLD.", "--space"
    ),
    Option(
        "input",
        "session",
        None,
        "Only this session; not set: all sessions.",
        "--session",
        nullable=True,
    ),
    Option("input", "run", None, "Only this run; not set: all runs.", "--run", nullable=True),
    Option(
        "input",
        "multi_run",
        "first",
        "Several runs or sessions per subject: keep the first or concatenate all.",
        "--multi-run",
        choices=("first", "concatenate"),
    ),
    Option(
        "input",
        "participant_label",
        [],
        "Only these participants (with or without 'sub-').",
        "--participant-label",
    ),
    Option("input", "exclude_label", [], "Leave out these participants.", "--exclude-label"),
    Option(
        "input",
        "group_column",
        "group",
        "participants.tsv column holding the group.",
        "--group-column",
    ),
    Option(
        "input",
        "positive_label",
        None,
        "Group value of the patients (default: the group that is "
        "not a usual control name such as HC or control).",
        "--positive-label",
        nullable=True,
    ),
    Option(
        "input",
        "min_volumes",
        50,
        "Fewest volumes a subject may have.",
        "--min-volumes",
        minimum=3,
    ),
    Option(
        "input",
        "min_per_group",
        5,
        "Fewest subjects a group may have.",
        "--min-per-group",
        minimum=1,
    ),
    Option(
        "input",
        "subjects",
        None,
        "With an FSL dual_regression folder as INPUT: the subjects table (TSV/CSV: "
        "participant_id, group, covariates), one row per subject in the order of "
        "dual_regression's input list.",
        "--subjects",
        nullable=True,
    ),
    Option(
        "input",
        "check_data",
        True,
        "Read every image's data before any work (NaN, Inf, "
        "all-zero, truncated files), not only the headers.",
        "--check-data",
    ),
    # [preprocess] per-subject cleaning and the analysis grid
    Option(
        "preprocess",
        "voxel_size",
        4.0,
        "Isotropic voxel size (mm) of the MNI analysis grid.",
        "--voxel-size",
        minimum=1.0,
    ),
    Option(
        "preprocess",
        "motion",
        "24",
        "Motion regressors: 6 parameters, + derivatives (12), + squares (24), or none.",
        "--motion",
        choices=("none", "6", "12", "24"),
    ),
    Option("preprocess", "wm_csf", True, "Regress the white-matter and CSF signals.", "--wm-csf"),
    Option("preprocess", "global_signal", False, "Regress the global signal.", "--global-signal"),
    Option(
        "preprocess",
        "scrub_fd",
        None,
        "Censor volumes whose framewise displacement exceeds this (mm); not set: no censoring.",
        "--scrub-fd",
        nullable=True,
        kind=float,
        minimum=0.0,
    ),
    Option(
        "preprocess",
        "high_pass",
        0.01,
        "High-pass cut-off (Hz); 0 disables.",
        "--high-pass",
        minimum=0.0,
    ),
    Option(
        "preprocess",
        "low_pass",
        0.1,
        "Low-pass cut-off (Hz); 0 disables.",
        "--low-pass",
        minimum=0.0,
    ),
    Option(
        "preprocess",
        "detrend_order",
        1,
        "Order of the polynomial removed from every voxel.",
        "--detrend-order",
        minimum=0,
    ),
    Option(
        "preprocess",
        "smoothing_fwhm",
        0.0,
        "Spatial smoothing FWHM (mm); 0: none (fMRIPrep outputs are unsmoothed).",
        "--smoothing-fwhm",
        minimum=0.0,
    ),
    Option(
        "preprocess",
        "mask_fraction",
        1.0,
        "A voxel is analysed when inside this fraction of the "
        "subjects' brain masks (and the MNI brain mask).",
        "--mask-fraction",
        minimum=0.0,
    ),
    # [ica] group ICA
    Option(
        "ica",
        "n_components",
        20,
        "Group ICA dimension, or 'auto' (Laplace PPCA estimate).",
        "--n-components",
        minimum=1,
        also=("auto",),
    ),
    Option(
        "ica",
        "n_restarts",
        10,
        "FastICA restarts for the ICASSO stability index.",
        "--ica-restarts",
        minimum=1,
    ),
    Option(
        "ica",
        "migp_dim",
        None,
        "MIGP internal dimension (default: the smaller of 2 x volumes - 1, MELODIC's, "
        "and 15 x components).",
        "--migp-dim",
        nullable=True,
        kind=int,
        minimum=1,
    ),
    Option(
        "ica",
        "group_maps",
        None,
        "Use these group maps (4D NIfTI, e.g. MELODIC's "
        "melodic_IC.nii.gz) instead of running group ICA; the same maps serve every "
        "cross-validation fold, so classification reports the scope 'external maps' "
        "(possibly transductive).",
        "--group-maps",
        nullable=True,
    ),
    # [networks] which components are which networks
    Option(
        "networks",
        "networks",
        ["sensorimotor", "visual"],
        "Networks to analyse (canonical names or SMN, VN, DMN…).",
        "--networks",
    ),
    Option(
        "networks",
        "templates",
        None,
        "Reference templates: 4D NIfTI, or label image + names TSV "
        "(default: built-in, from Seitzman et al. 2018).",
        "--templates",
        nullable=True,
    ),
    Option(
        "networks",
        "force_component",
        [],
        "Choose components by hand: NETWORK=INDEX (0-based, in the all-subject group ICA; "
        "in fold scope each fold takes its component closest to that map).",
        "--force-component",
    ),
    Option(
        "networks",
        "min_r",
        0.15,
        "Template correlation below which a network is not found (noise components "
        "score below ~0.05; the built-in templates give ICA networks ~0.2-0.5).",
        "--min-template-r",
        minimum=-1.0,
    ),
    # [dual_regression]
    Option(
        "dual_regression",
        "des_norm",
        True,
        "Variance-normalise the stage-1 time courses before stage 2 (FSL's default).",
        "--des-norm",
    ),
    Option(
        "dual_regression",
        "variance_normalise",
        False,
        "Z-score each voxel of a subject before dual regression, which removes the amplitude "
        "information of the maps; false (FSL's behaviour): regress the cleaned, grand-mean "
        "scaled data as they are (group ICA normalises each voxel either way).",
        "--variance-normalise",
    ),
    # [stats] permutation GLM on each network's subject maps
    Option(
        "stats",
        "n_permutations",
        5000,
        "Permutations, the unpermuted labelling counted as the first (as randomise).",
        "--n-permutations",
        minimum=1,
    ),
    Option(
        "stats",
        "contrasts",
        ["patients>controls", "controls>patients"],
        "Contrasts tested on every network; FWE p-values are corrected over all of them "
        "(the maximum statistic over voxels and contrasts, as randomise --corrcon).",
        "--contrasts",
        choices=("patients>controls", "controls>patients", "two-sided"),
    ),
    Option(
        "stats",
        "tfce",
        True,
        "Threshold-free cluster enhancement (its parameters: --tfce-h, --tfce-e, "
        "--tfce-connectivity).",
        "--tfce",
    ),
    Option(
        "stats",
        "tfce_h",
        2.0,
        "TFCE height exponent H (Smith & Nichols 2009 and FSL: 2).",
        "--tfce-h",
        above=0.0,
    ),
    Option(
        "stats",
        "tfce_e",
        0.5,
        "TFCE extent exponent E (Smith & Nichols 2009 and FSL: 0.5 in 3D).",
        "--tfce-e",
        above=0.0,
    ),
    Option(
        "stats",
        "tfce_connectivity",
        6,
        "TFCE neighbourhood: voxels sharing a face (6, FSL randomise's default), "
        "also an edge (18), also a corner (26).",
        "--tfce-connectivity",
        choices=(6, 18, 26),
    ),
    Option(
        "stats",
        "covariates",
        [],
        "participants.tsv columns to adjust for (Freedman-Lane permutation).",
        "--covariates",
    ),
    Option(
        "stats",
        "exchangeability_blocks",
        None,
        "participants.tsv column (e.g. site) within which labels are permuted.",
        "--exchangeability-blocks",
        nullable=True,
    ),
)

_RUN_OPTIONS: tuple[Option, ...] = (
    # [run] how the run is carried out
    Option(
        "run",
        "random_seed",
        0,
        "Seed of every random choice (same seed, same outputs).",
        "--random-seed",
    ),
    Option(
        "run",
        "n_jobs",
        1,
        "Parallel worker processes on this machine (-1: all cores).",
        "--n-jobs",
        minimum=-1,
    ),
    Option(
        "run",
        "dask_scheduler",
        None,
        "Address of a Dask scheduler (e.g. tcp://10.0.0.5:8786): the parallel work runs on "
        "its workers, which must see INPUT and OUTPUT_DIR at the same paths; not set: this "
        "machine, with --n-jobs processes.",
        "--dask-scheduler",
        nullable=True,
        kind=str,
    ),
    Option(
        "run",
        "device",
        "auto",
        "Torch device for the CNN and its explanations: auto (CUDA when present), cpu, cuda.",
        "--device",
    ),
    Option("run", "stop_after", "report", "Last stage to run.", "--stop-after", choices=STAGES),
)

OPTIONS: tuple[Option, ...] = (*_DATA_OPTIONS, *LEARNING_OPTIONS, *_RUN_OPTIONS)
