"""The order of the stages, reuse of finished stages, and provenance.

``pipeline`` is the only module that knows the order of the stages. A stage is
reused when its marker in ``OUT/.rsxai/stages`` records the same key (rsxai
version, the configuration sections it depends on, the input checksums and the
keys of the stages above it) and every output it listed still exists. A marker
is written only after all of a stage's outputs are written, each atomically,
so an interrupted stage is simply run again. Keys, markers and the work
folders of earlier keys (removed once a stage is done): :mod:`rsxai.pipeline.cache`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rsxai._version import __version__
from rsxai.cnn import resolve_device
from rsxai.cohort import Cohort, is_fsl_dual_regression, read_fsl_dual_regression
from rsxai.config import STAGES, Config
from rsxai.exceptions import InputError
from rsxai.outputs import (
    Summary,
    check_writable,
    input_checksums,
    output_path,
    read_json,
    remove_partial_files,
    write_dataset_description,
    write_json,
    write_text,
    write_tsv,
)
from rsxai.parallel import cluster_client, execution_backend, with_n_jobs
from rsxai.pipeline.cache import inputs_key, is_reusable, remove_stale_work_folders, stage_key
from rsxai.pipeline.preflight import check_config, check_config_against_cohort
from rsxai.pipeline.provenance import iso_time, write_provenance
from rsxai.report import write_report
from rsxai.stages import (
    RunContext,
    Stage,
    confounds_strategy,
    run_classify,
    run_dual_regression,
    run_explain,
    run_fsl_networks,
    run_ica,
    run_preprocess,
    run_stats,
)

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)


# Stages implemented in this version, in pipeline order. A stage name of
# ``STAGES`` missing here is reported as not available yet.
IMPLEMENTED_STAGES: tuple[Stage, ...] = (
    # The cohort's files (checksums) are in every stage's key and its design in
    # those that use it; the [input] options only choose files or validate them,
    # so they are not a section here.
    # Revision 1: the cache holds grand-mean scaled data, no longer z-scored per voxel.
    Stage("preprocess", run_preprocess, ("preprocess",), revision=1),
    Stage("ica", run_ica, ("ica", "networks", "dual_regression")),
    # Its subject-order tables list each subject's group.
    Stage(
        "dual_regression",
        run_dual_regression,
        ("dual_regression",),
        uses_design=True,
    ),
    Stage("stats", run_stats, ("stats",), uses_design=True),
    Stage("classify", run_classify, ("classify",), uses_design=True),
    Stage("explain", run_explain, ("explain",), uses_design=True),
)

# With an FSL dual_regression folder as input, its maps stand in for the first
# three stages: one stage (named after the last of them, so that --stop-after
# means the same) labels the group maps and writes the network stacks.
FSL_STAGES: tuple[Stage, ...] = (
    Stage("dual_regression", run_fsl_networks, ("ica", "networks"), uses_design=True),
    *IMPLEMENTED_STAGES[3:],
)
#: Status of the stages an FSL dual_regression folder replaces.
FSL_GIVEN = "given (FSL dual_regression folder)"


def load_cohort(input_path: Path, config: Config, *, progress: bool = False) -> Cohort:
    """Find and validate the cohort; raise :class:`InputError` listing every problem."""
    options = config.input
    cohort = Cohort.from_path(
        input_path,
        derivatives=options.derivatives,
        task=options.task,
        space=options.space,
        session=options.session,
        run=options.run,
        multi_run=options.multi_run,
        group_column=options.group_column,
        positive_label=options.positive_label,
        participant_label=options.participant_label or None,
        exclude_label=options.exclude_label or None,
    )
    return cohort.validate(
        min_volumes=options.min_volumes,
        min_per_group=options.min_per_group,
        check_data=options.check_data,
        # The confounds columns the cleaning will need are checked before any work.
        confounds_strategy=confounds_strategy(config),
        high_pass=config.preprocess.high_pass or None,
        low_pass=config.preprocess.low_pass or None,
        n_jobs=config.run.n_jobs,
        progress=progress,
    )


def _check_output_folder(input_path: Path, out_dir: Path, derivatives: str | None) -> None:
    inputs = [input_path.resolve()]
    if derivatives:
        inputs.append(Path(derivatives).resolve())
    elif (input_path / "derivatives" / "fmriprep").is_dir():
        inputs.append((input_path / "derivatives" / "fmriprep").resolve())
    resolved = out_dir.resolve()
    for folder in inputs:
        if resolved == folder or (
            folder.is_dir() and folder in resolved.parents and folder.name == "fmriprep"
        ):
            raise InputError(
                f"OUTPUT_DIR {out_dir} is the input folder {folder} (or inside fMRIPrep's "
                "outputs); rsxai never writes into its inputs. Choose another OUTPUT_DIR, "
                "e.g. INPUT/derivatives/rsxai."
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"OUTPUT_DIR {out_dir} exists and is not a folder. Choose another.")
    # Before any work: a read-only or forbidden folder would otherwise stop the run at
    # its first write, after the cohort's checks and checksums.
    check_writable(out_dir)


def run(
    input_path: str | Path,
    out_dir: str | Path,
    config: Config,
    *,
    progress: bool = True,
    command: list[str] | None = None,
) -> dict:
    """Run every available stage, in order, up to ``config.run.stop_after``.

    Parameters
    ----------
    input_path : str or Path
        BIDS root, fMRIPrep derivatives folder, or manifest TSV/CSV.
    out_dir : str or Path
        Output folder (created; finished stages found there are reused).
    config : Config
        Resolved configuration.
    progress : bool
        Show progress bars.
    command : list of str, optional
        The command line, recorded in provenance.json.

    Returns
    -------
    summary : dict
        The content of ``summary.json``.

    Raises
    ------
    InputError
        Before anything is written, listing every problem of the input.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise InputError(
            f"INPUT {input_path} does not exist. Give a BIDS dataset, an fMRIPrep "
            "derivatives folder or a manifest TSV/CSV."
        )
    # Before the cohort, whose validation is long on a big one (and uses n_jobs).
    problems = check_config(config, given_maps=is_fsl_dual_regression(input_path))
    if problems:
        raise InputError(problems)
    _check_output_folder(input_path, out_dir, config.input.derivatives)
    if STAGES.index(config.run.stop_after) >= STAGES.index("classify"):
        # A GPU asked for and missing would otherwise stop the run after hours of statistics.
        resolve_device(config.run.device)

    # The cluster is checked (and its one connection kept for the run) before
    # the cohort, whose validation and checksums take long on a big one.
    with cluster_client(config.run.dask_scheduler) as client:
        return _run(input_path, out_dir, config, client, progress=progress, command=command)


def _run(
    input_path: Path,
    out_dir: Path,
    config: Config,
    client: Client | None,
    *,
    progress: bool,
    command: list[str] | None,
) -> dict:
    """:func:`run` once the options are checked; ``client``: the Dask cluster's, or None."""
    started = time.time()
    fsl = None
    if is_fsl_dual_regression(input_path):
        logger.info("Reading the FSL dual_regression folder %s", input_path)
        fsl = read_fsl_dual_regression(
            input_path,
            config.input.subjects,
            group_column=config.input.group_column,
            positive_label=config.input.positive_label,
            min_per_group=config.input.min_per_group,
            group_maps=config.ica.group_maps,
        )
        cohort = fsl.cohort
    else:
        logger.info("Reading the cohort from %s", input_path)
        cohort = load_cohort(input_path, config, progress=progress)
    # Options whose valid range depends on the data fail here, not after hours of stages.
    problems = check_config_against_cohort(config, cohort, given_maps=fsl is not None)
    if problems:
        raise InputError(problems)
    for warning in cohort.warnings:
        logger.warning(warning)
    logger.info(
        "%d subjects: %s (positive label %r)",
        cohort.n_subjects,
        ", ".join(f"{g} {n}" for g, n in cohort.group_counts.items()),
        cohort.positive_label,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    output_path(out_dir, "state_dir").mkdir(exist_ok=True)
    log_handler = logging.FileHandler(output_path(out_dir, "log"), encoding="utf-8")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    # On the package logger, so that every module's records (rsxai.*) reach the file.
    logging.getLogger("rsxai").addHandler(log_handler)
    try:
        for warning in cohort.warnings:
            logger.debug("Input warning: %s", warning)
        checksums = input_checksums(
            list(fsl.subject_files) if fsl is not None else _input_files(cohort),
            output_path(out_dir, "checksum_cache"),
            n_jobs=config.run.n_jobs,
        )
        timings = {"input": {"start": iso_time(started), "end": iso_time(time.time())}}
        summary = _write_run_description(input_path, out_dir, config, cohort)
        context = RunContext(config, cohort, out_dir, summary, progress=progress, fsl=fsl)

        # Locally or on a Dask cluster: the stages' joblib loops run where the
        # backend sends them; rsxai.toml and provenance keep the options as given.
        with execution_backend(
            config.run.n_jobs, config.run.dask_scheduler, client=client
        ) as n_jobs:
            context.config = with_n_jobs(config, n_jobs)
            try:
                timings.update(_run_stages(context, inputs_key(cohort, checksums)))
            finally:
                context.config = config
        write_provenance(
            out_dir,
            command=command,
            started=started,
            random_seed=config.run.random_seed,
            configuration=config.to_dict(),
            inputs=str(input_path.resolve()),
            input_checksums=checksums,
            stages=timings,
        )
        if config.run.stop_after == "report":
            _write_report(out_dir)
        logger.info("Results in %s", out_dir)
        return summary.data
    finally:
        logging.getLogger("rsxai").removeHandler(log_handler)
        log_handler.close()


def _input_files(cohort: Cohort) -> list[Path]:
    """Every file a run reads: BOLD series, confounds tables and brain masks."""
    return [
        path
        for subject in cohort.subjects
        for run_ in subject.runs
        for path in (run_.bold, run_.confounds, run_.mask)
        if path is not None
    ]


def _write_report(out_dir: Path) -> None:
    """Write report.html last, from the finished outputs; never recomputed or cached.

    A failure here is logged and leaves every result in place: the report can
    be rebuilt with ``rsxai report OUTPUT_DIR``.
    """
    try:
        write_report(out_dir)  # logs where it wrote
    except Exception:  # the results are written; a broken figure must not lose them
        logger.exception(
            "The report could not be written; rebuild it with `rsxai report %s`.", out_dir
        )


def _write_run_description(
    input_path: Path, out_dir: Path, config: Config, cohort: Cohort
) -> Summary:
    """Write dataset_description.json, rsxai.toml, participants.tsv and the first summary keys."""
    write_dataset_description(out_dir, source=str(input_path))
    write_text(output_path(out_dir, "config"), config.to_toml())
    participants = cohort.covariates.reset_index(drop=True)
    participants.insert(0, config.input.group_column, cohort.groups)
    participants.insert(0, "participant_id", [f"sub-{label}" for label in cohort.labels])
    write_tsv(output_path(out_dir, "participants"), participants)
    summary = Summary(out_dir)
    summary.update("subjects", cohort.summary())
    summary.update("warnings", list(cohort.warnings))
    return summary


def _run_stages(context: RunContext, inputs: dict[str, str]) -> dict[str, dict]:
    """Run or reuse each stage up to ``stop_after``; return their timings."""
    # What a killed run was writing; never taken as done, only wasted space.
    removed = remove_partial_files(context.out_dir)
    if removed:
        logger.info("Removed %d unfinished file(s) of an interrupted run.", len(removed))
    timings: dict[str, dict] = {}
    last = STAGES.index(context.config.run.stop_after)
    stages = FSL_STAGES if context.fsl is not None else IMPLEMENTED_STAGES
    implemented = {stage.name: stage for stage in stages}
    for name in STAGES[: last + 1]:
        if name == "report":
            # Written by run() after provenance.json, from the finished outputs.
            continue
        stage = implemented.get(name)
        if stage is None and context.fsl is not None and name in ("preprocess", "ica"):
            timings[name] = {"status": FSL_GIVEN}
            continue
        if stage is None:
            logger.info("Stage %s: not available in rsxai %s yet; skipped.", name, __version__)
            timings[name] = {"status": "not available"}
            continue
        key = stage_key(stage, context, inputs)
        marker = output_path(context.out_dir, "stage_marker", stage=name)
        if is_reusable(marker, key, context.out_dir):
            logger.info("Stage %s: outputs up to date, reused.", name)
            timings[name] = {"status": "reused", **read_json(marker).get("timing", {})}
        else:
            logger.info("Stage %s: running.", name)
            # Its outputs are about to be overwritten: a marker of earlier settings
            # must not vouch for them if this run is interrupted.
            marker.unlink(missing_ok=True)
            context.current_key = key
            context.timing = {}
            start = time.time()
            written = stage.function(context)
            root = context.out_dir.resolve()
            relative = sorted(str(Path(p).resolve().relative_to(root)) for p in written)
            timing = {
                "start": iso_time(start),
                "end": iso_time(time.time()),
                "seconds": round(time.time() - start, 3),
                **context.timing,
            }
            write_json(marker, {"stage": name, "key": key, "outputs": relative, "timing": timing})
            timings[name] = {"status": "computed", **timing}
        # Only now, with this key's outputs complete, are earlier keys' caches unneeded.
        remove_stale_work_folders(context.out_dir, name, key)
        context.stage_keys[name] = key
    return timings
