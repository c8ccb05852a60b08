"""The ``rsxai`` command line.

Bad input ends with one line per problem on stderr and exit code 2, never a
traceback; an unexpected error (a bug) keeps its traceback, written to the log.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from rsxai._version import __version__
from rsxai.config import OPTIONS, SECTIONS, Option, load_config_file, resolve_config
from rsxai.exceptions import InputError

logger = logging.getLogger("rsxai")

EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130

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
    from rsxai.standalone import DEFAULT_MASK_RULE

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
        "Default: one sensorimotor and one visual effect.",
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

    from rsxai.standalone import CLASSIFY_OPTIONS, STATS_OPTIONS

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
        "then the defaults.",
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


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    )
    handler.setLevel(level)
    logger.handlers = [
        h
        for h in logger.handlers
        if not isinstance(h, logging.StreamHandler) or isinstance(h, logging.FileHandler)
    ]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    # Library warnings (labelling, convergence) reach the console and the log file
    # as one-line log records, not as raw Python warnings with source lines.
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logger.warning("%s", message)


def _overrides(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if "." in key}


def _run_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rsxai import pipeline

    file_values = load_config_file(args.config) if args.config else None
    config = resolve_config(file_values, _overrides(args))
    pipeline.run(
        args.input, args.output_dir, config, progress=not args.quiet, command=["rsxai", *argv]
    )
    print(f"Results: {args.output_dir.resolve()}")
    return 0


def _stack_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rsxai.standalone import run_stack_classify, run_stack_stats
    from rsxai.text_summary import text_summary

    file_values = load_config_file(args.config) if args.config else None
    config = resolve_config(file_values, _overrides(args))
    inputs = (args.stack, args.subjects, args.output_dir, config)
    options = {"mask": args.mask, "network": args.network_name, "command": ["rsxai", *argv]}
    if args.command == "stats":
        run_stack_stats(*inputs, progress=not args.quiet, **options)
    else:
        run_stack_classify(*inputs, **options)
    print(text_summary(args.output_dir))
    print(f"Results: {args.output_dir.resolve()}")
    return 0


def _simulate_command(args: argparse.Namespace) -> int:
    from rsxai.simulate import DEFAULT_EFFECTS, Effect

    effects = DEFAULT_EFFECTS
    if args.effect:
        try:
            effects = tuple(
                Effect(
                    network=e[0],
                    center_mm=(float(e[1]), float(e[2]), float(e[3])),
                    radius_mm=float(e[4]),
                    strength=float(e[5]),
                    sign=int(e[6]),
                )
                for e in args.effect
            )
        except ValueError as error:
            raise InputError(
                f"--effect: {error}. Give NETWORK X Y Z RADIUS STRENGTH SIGN, "
                "e.g. --effect sensorimotor -38 -22 56 12 0.4 -1."
            ) from None
    try:
        simulated = _simulate(args, effects)
    except ValueError as error:  # the simulator's parameter checks
        raise InputError(str(error)) from None
    print(f"Simulated cohort: {simulated.bids_root.resolve()}")
    print(f"Ground truth:     {simulated.ground_truth_dir.resolve()}")
    return 0


def _simulate(args: argparse.Namespace, effects):
    from rsxai.simulate import simulate_cohort

    return simulate_cohort(
        args.output_dir,
        n_patients=args.n_patients,
        n_controls=args.n_controls,
        n_volumes=args.n_volumes,
        tr=args.tr,
        voxel_size=args.voxel_size,
        effects=effects,
        null=args.null,
        seed=args.random_seed,
        n_jobs=args.n_jobs,
        progress=not args.quiet,
    )


# The demo keeps every method and the honest fold scope, with counts a laptop
# gets through in a few minutes; they are written to results/rsxai.toml and
# stated in the report, like any setting.
DEMO_SETTINGS = {
    "ica.n_restarts": 3,
    "stats.n_permutations": 2000,
    "classify.cv_folds": 5,
    "classify.baseline_permutations": 200,
}


def _explain_command(args: argparse.Namespace) -> int:
    from rsxai.explain_stage import explain_output_folder
    from rsxai.outputs import output_path

    toml = output_path(args.output_dir, "config")
    config = resolve_config(load_config_file(toml) if toml.exists() else None, _overrides(args))
    written = explain_output_folder(args.output_dir, config=config, ground_truth=args.ground_truth)
    print(f"Explanations: {len(written)} files in {(args.output_dir / 'explanations').resolve()}")
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    from rsxai import pipeline
    from rsxai.simulate import simulate_cohort

    data_dir = args.output_dir / "data"
    results_dir = args.output_dir / "results"
    if (data_dir / "participants.tsv").exists():
        logger.info("Reusing the simulated cohort in %s", data_dir)
    else:
        logger.info("Simulating 30 patients and 30 controls into %s", data_dir)
        simulate_cohort(
            data_dir, seed=args.random_seed, n_jobs=args.n_jobs, progress=not args.quiet
        )
    config = resolve_config(
        overrides={
            **DEMO_SETTINGS,
            "run.random_seed": args.random_seed,
            "run.n_jobs": args.n_jobs,
        }
    )
    pipeline.run(
        data_dir,
        results_dir,
        config,
        progress=not args.quiet,
        command=["rsxai", "demo", str(args.output_dir)],
    )
    from rsxai.text_summary import text_summary

    print(text_summary(results_dir))
    print(f"Simulated data: {data_dir.resolve()}")
    print(f"Results:        {results_dir.resolve()}")
    report = results_dir / "report.html"
    if report.exists():
        print(f"Report:         {report.resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rsxai`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"rsxai {__version__}")
        return 0
    _configure_logging(args.verbose, args.quiet)
    try:
        if args.command == "run":
            return _run_command(args, argv)
        if args.command == "simulate":
            return _simulate_command(args)
        if args.command in ("stats", "classify"):
            return _stack_command(args, argv)
        if args.command == "explain":
            return _explain_command(args)
        if args.command == "report":
            from rsxai.report import report_command

            return report_command(args.output_dir)
        return _demo_command(args)
    except InputError as error:
        for problem in error.problems:
            print(f"rsxai: error: {problem}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(
            "rsxai: interrupted; finished outputs are kept and reused next time.", file=sys.stderr
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
