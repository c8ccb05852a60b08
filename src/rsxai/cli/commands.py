"""The ``rsxai`` command line.

Bad input (a read-only or forbidden OUTPUT_DIR included, checked before any work)
ends with one line per problem on stderr and exit code 2, never a traceback. A
fault of the machine while writing (no space left, a quota, a read-only file
system, permission denied: :data:`rsxai.exceptions.MACHINE_ERRNOS`) ends with one
line naming the file and the fix, and exit code 3; finished outputs are kept and a
rerun resumes. An unexpected error (a bug) ends with one line on stderr and exit
code 1; its traceback is kept in a log file (OUTPUT_DIR/rsxai.log or, when that
cannot be written, a new file in the temporary folder) and also printed with ``-v``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from rsxai._version import __version__
from rsxai.cli.parser import build_parser
from rsxai.config import load_config_file, resolve_config
from rsxai.exceptions import InputError, MachineFault

# Each command imports its stages when it runs (imports inside the command functions), so
# that `rsxai --help`, `--version` and argument errors answer without loading PyTorch,
# nilearn and scikit-learn (several seconds).

# The package logger (every module logs under it, by __name__): the CLI gives it its handlers.
logger = logging.getLogger("rsxai")

EXIT_INTERNAL_ERROR = 1
EXIT_INPUT_ERROR = 2
EXIT_MACHINE_FAULT = 3
EXIT_INTERRUPTED = 130


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
    # loky replaces a worker whose memory grew by 300 MB (PyTorch's allocator in CV
    # folds) and warns of a "memory leak"; no job is lost, so the line only alarms users.
    warnings.filterwarnings(
        "ignore", message="A worker stopped while some jobs were given", category=UserWarning
    )


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logger.warning("%s", message)


def _overrides(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if "." in key}


def _run_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rsxai.pipeline import run

    file_values = load_config_file(args.config) if args.config else None
    config = resolve_config(file_values, _overrides(args))
    run(args.input, args.output_dir, config, progress=not args.quiet, command=["rsxai", *argv])
    print(f"Results: {args.output_dir.resolve()}")
    return 0


def _stack_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rsxai.pipeline import run_stack_classify, run_stack_stats
    from rsxai.report import text_summary

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
    from rsxai.outputs import output_path
    from rsxai.stages import explain_output_folder

    toml = output_path(args.output_dir, "config")
    file_values = load_config_file(toml) if toml.exists() else None
    config = resolve_config(file_values, _overrides(args))
    # It also writes these options back to rsxai.toml, once the explanations are written.
    written = explain_output_folder(args.output_dir, config=config, ground_truth=args.ground_truth)
    print(f"Explanations: {len(written)} files in {(args.output_dir / 'explanations').resolve()}")
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    from rsxai.pipeline import run
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
    run(
        data_dir,
        results_dir,
        config,
        progress=not args.quiet,
        command=["rsxai", "demo", str(args.output_dir)],
    )
    from rsxai.report import text_summary

    print(text_summary(results_dir))
    print(f"Simulated data: {data_dir.resolve()}")
    print(f"Results:        {results_dir.resolve()}")
    report = results_dir / "report.html"
    if report.exists():
        print(f"Report:         {report.resolve()}")
    return 0


def _report_bug(args: argparse.Namespace, error: Exception) -> int:
    """One line on stderr for an unexpected error; its traceback kept in a log file."""
    details = traceback.format_exc()
    out_dir = getattr(args, "output_dir", None)
    log = _keep_traceback(details, out_dir)
    if log is None:  # nowhere to keep it: the traceback itself is the report
        print(details, file=sys.stderr)
        log = "the traceback above"
    if args.verbose:
        print(details, file=sys.stderr)
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    print(
        f"rsxai: internal error: {reason}. This is a bug in rsxai (bad input should end in a "
        f"clear message instead); please report it with the traceback in {log}.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL_ERROR


def _keep_traceback(details: str, out_dir: Path | None) -> str | None:
    """Append ``details`` to OUTPUT_DIR/rsxai.log, else to a new temporary file; its path."""
    if out_dir is not None and out_dir.is_dir():
        from rsxai.outputs import output_path

        log = output_path(out_dir, "log")
        try:
            with open(log, "a", encoding="utf-8") as stream:
                stream.write(details)
            return str(log)
        except OSError:  # a read-only or full output folder: the temporary folder instead
            pass
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="rsxai-error-", suffix=".log", delete=False, encoding="utf-8"
        ) as stream:
            stream.write(details)
            return stream.name
    except OSError:
        return None


def _machine_fault(error: OSError) -> MachineFault | None:
    """The fault of the machine an OSError raised outside :func:`rsxai.outputs.atomic_path` is."""
    writing = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
    return MachineFault.from_os_error(error, action="writing" if writing else "accessing")


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
            return _report_command(args.output_dir)
        return _demo_command(args)
    except InputError as error:
        for problem in error.problems:
            print(f"rsxai: error: {problem}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except MachineFault as error:
        print(f"rsxai: error: {error}", file=sys.stderr)
        return EXIT_MACHINE_FAULT
    except KeyboardInterrupt:
        print(
            "rsxai: interrupted; finished outputs are kept and reused next time.", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug, not bad input: one line here, the traceback in a log
        # A worker's OSError (joblib re-raises it here), or a write outside atomic_path.
        fault = _machine_fault(error) if isinstance(error, OSError) else None
        if fault is not None:
            print(f"rsxai: error: {fault}", file=sys.stderr)
            return EXIT_MACHINE_FAULT
        return _report_bug(args, error)


def _report_command(output_dir: str | Path) -> int:
    """``rsxai report OUTPUT_DIR``: rebuild the report; print its path; return the exit code."""
    import matplotlib  # lazy: only this command draws

    from rsxai.report import write_report

    # A command-line process draws off screen; the report never opens a window.
    matplotlib.use("Agg")
    path = write_report(output_dir)
    print(f"Report: {path.resolve()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
