"""The ``rsxai`` argument parser, generated from the option registry.

Every option of :mod:`rsxai.config.options` becomes a flag here, with its default and
TOML key in ``--help``; :mod:`rsxai.cli` runs the commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rsxai.config import OPTIONS, SECTIONS, Option

SECTION_TITLES = {
    "input": "input selection (BIDS-App style)",
    "preprocess": "preprocessing",
    "ica": "group ICA",
    "networks": "network labelling",
    "dual_regression": "dual regression",
    "stats": "group statistics",
    "classify": "classification",
    "explain": "explanations",
    "run": "execution",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=34, width=100)


def _add_option(group: argparse._ArgumentGroup, option: Option) -> None:
    """Add one registry option; its default is shown but not set, so flags can be told apart."""
    shown = option.default if option.default not in (None, []) else "not set"
    help_text = f"{option.help} (default: {shown}; config: [{option.section}] {option.name})"
    kwargs: dict = {"dest": option.key, "default": argparse.SUPPRESS, "help": help_text}
    if isinstance(option.default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
    elif isinstance(option.default, list):
        kwargs.update(nargs="+", metavar=option.name.upper())
        if option.choices:
            kwargs["choices"] = option.choices
    else:
        kind = option.kind or (type(option.default) if option.default is not None else str)
        kwargs["type"] = str if option.also else kind
        if option.choices:
            kwargs["choices"] = option.choices
        else:
            kwargs["metavar"] = option.name.upper()
    group.add_argument(option.flag, **kwargs)


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("messages")
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="More messages (-v: debug)."
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="Only warnings and errors; no progress bars."
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        type=Path,
        metavar="INPUT",
        help="BIDS dataset root (with derivatives/fmriprep), an fMRIPrep "
        "derivatives folder, or a manifest TSV/CSV "
        "(subject, bold, group[, confounds, mask, covariates…]).",
    )
    parser.add_argument(
        "output_dir",
        type=Path,
        metavar="OUTPUT_DIR",
        help="Output folder; finished stages found there are reused.",
    )
    _add_config_argument(parser)
    _add_registry_options(parser)
    _add_verbosity(parser)


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="Configuration file; command-line flags override it. The resolved "
        "configuration is written to OUTPUT_DIR/rsxai.toml.",
    )


def _add_registry_options(
    parser: argparse.ArgumentParser, keys: Sequence[str] | None = None, titles=SECTION_TITLES
) -> None:
    """One argument group per section, with the registry options of ``keys`` (all: None)."""
    for section in SECTIONS:
        options = [
            option
            for option in OPTIONS
            if option.section == section and option.flag and (keys is None or option.key in keys)
        ]
        if options:
            group = parser.add_argument_group(titles.get(section, section))
            for option in options:
                _add_option(group, option)


def _add_stack_arguments(parser: argparse.ArgumentParser, keys: Sequence[str]) -> None:
    """Arguments of ``rsxai stats`` and ``rsxai classify`` on a user's stack of maps."""
    from rsxai.cohort import DEFAULT_MASK_RULE

    parser.add_argument(
        "stack",
        type=Path,
        metavar="STACK",
        help="4D NIfTI of subject maps, one volume per subject, in MNI space (any grid), "
        "e.g. FSL dual_regression's dr_stage2_ic0003.nii.gz.",
    )
    parser.add_argument(
        "subjects",
        type=Path,
        metavar="SUBJECTS",
        help="TSV or CSV with one row per volume, in the stack's order: participant_id "
        "(or subject), group, then any covariates (like participants.tsv).",
    )
    parser.add_argument(
        "output_dir", type=Path, metavar="OUTPUT_DIR", help="Output folder (created)."
    )
    group = parser.add_argument_group("maps")
    group.add_argument(
        "--mask",
        type=Path,
        metavar="NIFTI",
        help="3D mask on the stack's grid, e.g. dual_regression's mask.nii.gz "
        f"(default: {DEFAULT_MASK_RULE}).",
    )
    group.add_argument(
        "--network-name",
        metavar="NAME",
        help="Network name in the output file names, letters and digits (default: from the "
        "stack's file name; dr_stage2_ic0003.nii.gz gives ic0003).",
    )
    _add_config_argument(parser)
    _add_registry_options(parser, keys, {**SECTION_TITLES, "input": "subjects table"})
    _add_verbosity(parser)


def _default_effects() -> str:
    """The simulator's default effects in words, from the effects themselves."""
    from rsxai.simulate import DEFAULT_EFFECTS

    described = [
        f"{e.network} at {' '.join(f'{c:g}' for c in e.center_mm)} "
        f"(radius {e.radius_mm:g}, strength {e.strength:g}, sign {e.sign})"
        for e in DEFAULT_EFFECTS
    ]
    return f"{len(described)} effects: " + "; ".join(described)


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "output_dir",
        type=Path,
        metavar="OUT",
        help="Folder for the simulated BIDS dataset (with derivatives/fmriprep "
        "and ground_truth/).",
    )
    group = parser.add_argument_group("cohort")
    group.add_argument("--n-patients", type=int, default=30, help="Patients (default: 30).")
    group.add_argument("--n-controls", type=int, default=30, help="Controls (default: 30).")
    group.add_argument(
        "--n-volumes", type=int, default=150, help="Volumes per subject (default: 150)."
    )
    group.add_argument("--tr", type=float, default=2.0, help="Repetition time, s (default: 2.0).")
    group.add_argument(
        "--voxel-size",
        type=float,
        default=4.0,
        help="Isotropic voxel size in mm on the MNI grid (default: 4.0).",
    )
    group.add_argument(
        "--null", action="store_true", help="Plant no group effect (for checking false positives)."
    )
    group.add_argument(
        "--effect",
        nargs=7,
        action="append",
        metavar=("NETWORK", "X", "Y", "Z", "RADIUS", "STRENGTH", "SIGN"),
        help="A planted patient effect (repeatable), replacing the defaults: "
        "network name, MNI centre in mm, radius in mm, strength (fraction of the "
        "map changed at the centre), sign (-1 lower in patients, 1 higher). "
        f"Default: {_default_effects()}.",
    )
    group.add_argument("--random-seed", type=int, default=0, help="Seed (default: 0).")
    group.add_argument(
        "--n-jobs", type=int, default=1, help="Parallel worker processes (default: 1)."
    )
    _add_verbosity(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``rsxai`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="rsxai",
        formatter_class=_Formatter,
        description="Explainable classification of resting-state fMRI in two groups: group ICA, "
        "dual regression, permutation statistics, a 3D CNN and its explanation maps.",
        epilog="Start with `rsxai demo`, then `rsxai run INPUT OUTPUT_DIR` on your data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    simulate = sub.add_parser(
        "simulate",
        formatter_class=_Formatter,
        help="Write a simulated two-group cohort with known ground truth.",
        description="Write an fMRIPrep-style BIDS dataset of simulated "
        "rs-fMRI with planted networks and patient effects, and the ground "
        "truth beside it.",
    )
    _add_simulate_arguments(simulate)

    run = sub.add_parser(
        "run",
        formatter_class=_Formatter,
        help="Run the pipeline on a cohort.",
        description="Validate the cohort, then run every stage up to "
        "--stop-after, reusing finished stages found in OUTPUT_DIR.",
    )
    _add_run_arguments(run)

    demo = sub.add_parser(
        "demo",
        formatter_class=_Formatter,
        help="Simulate a cohort and run the whole pipeline on it.",
        description="Simulate 30 patients and 30 controls (4 mm, 150 volumes) "
        "into OUT/data, run the pipeline into OUT/results with laptop-sized counts "
        "(3 ICA restarts, 2,000 permutations, 5-fold CV in fold scope, 200 baseline "
        "permutations) and print where report.html is.",
    )
    demo.add_argument(
        "output_dir",
        type=Path,
        nargs="?",
        default=Path("rsxai-demo"),
        metavar="OUT",
        help="Folder for the demo (default: rsxai-demo).",
    )
    demo.add_argument("--random-seed", type=int, default=0, help="Seed (default: 0).")
    demo.add_argument(
        "--n-jobs", type=int, default=2, help="Parallel worker processes (default: 2)."
    )
    _add_verbosity(demo)

    from rsxai.config import CLASSIFY_OPTIONS, STATS_OPTIONS

    stats = sub.add_parser(
        "stats",
        formatter_class=_Formatter,
        help="Permutation statistics on your own 4D stack of subject maps.",
        description="Test the group difference in a 4D stack of subject maps (e.g. FSL "
        "dual_regression's dr_stage2_ic0003.nii.gz) with the permutation GLM and TFCE of "
        "`rsxai run`, and write the same stats/ maps, cluster tables and summary.json entry "
        "into OUTPUT_DIR. Every input problem is listed before any work.",
    )
    _add_stack_arguments(stats, STATS_OPTIONS)

    classify = sub.add_parser(
        "classify",
        formatter_class=_Formatter,
        help="Cross-validated classification of your own 4D stack of subject maps.",
        description="Cross-validate the CNN and the linear baselines of `rsxai run` on a 4D "
        "stack of subject maps and write the same classification/ outputs into OUTPUT_DIR. "
        "The maps were made outside rsxai, so the scope is reported as 'external maps': rsxai "
        "cannot know whether the group maps behind them saw the test subjects (a group ICA of "
        "the whole cohort makes the accuracies transductive, possibly optimistic).",
    )
    _add_stack_arguments(classify, CLASSIFY_OPTIONS)

    report = sub.add_parser(
        "report",
        formatter_class=_Formatter,
        help="Rebuild report.html from an output folder.",
        description="Write OUTPUT_DIR/report.html from the outputs found there; "
        "nothing is recomputed.",
    )
    report.add_argument(
        "output_dir", type=Path, metavar="OUTPUT_DIR", help="Output folder of `rsxai run`."
    )
    _add_verbosity(report)

    explain = sub.add_parser(
        "explain",
        formatter_class=_Formatter,
        help="Explain the CNNs of an existing output folder (the explain stage alone).",
        description="Run the explain stage on OUTPUT_DIR: attribution maps of every held-out "
        "subject, group maps, agreement with the statistics, sanity checks, faithfulness and, "
        "on simulated data, localisation. Options not given come from OUTPUT_DIR/rsxai.toml, "
        "then the defaults; once the explanations are written, rsxai.toml is updated with the "
        "options given here, so that it describes them.",
    )
    explain.add_argument(
        "output_dir",
        type=Path,
        metavar="OUTPUT_DIR",
        help="Output folder of `rsxai run` (classify stage done).",
    )
    group = explain.add_argument_group(SECTION_TITLES["explain"])
    for option in OPTIONS:
        if option.section == "explain" and option.flag:
            _add_option(group, option)
    _add_registry_options(explain, ("run.device",))
    group.add_argument(
        "--ground-truth",
        type=Path,
        metavar="DIR",
        help="The simulator's ground_truth folder (default: looked for beside the run's input).",
    )
    _add_verbosity(explain)

    sub.add_parser(
        "version", help="Print the rsxai version.", description="Print the rsxai version."
    )
    return parser
