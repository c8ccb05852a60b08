"""``rsxai stats`` and ``rsxai classify`` on a user's own stack of subject maps.

Anyone with one 4D image of subject maps (one volume per subject, e.g. FSL
``dual_regression``'s ``dr_stage2_ic0003.nii.gz``) and a table of those
subjects can run rsxai's permutation statistics and cross-validated
classification without the pipeline. :func:`rsxai.cohort.map_stack.read_map_stack`
checks the stack and the table together before any work; then the
pipeline's own code writes the outputs (:func:`rsxai.stages.stats.write_stats`,
:func:`rsxai.stages.classify.classify_maps` and
:func:`rsxai.stages.classify.write_classification`), so the files and the
``summary.json`` entries are those of ``rsxai run``.

The maps were made outside rsxai, so the classification reports its scope
as ``"external maps"``: whether the group maps they were regressed onto were
estimated with the test subjects cannot be known here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from rsxai.anatomy import atlas_data_dir
from rsxai.classify import make_splits
from rsxai.cohort import read_map_stack
from rsxai.config import CLASSIFY_OPTIONS, STATS_OPTIONS, Config, load_config_file
from rsxai.exceptions import InputError
from rsxai.outputs import (
    Summary,
    file_checksum,
    output_path,
    write_dataset_description,
    write_nifti,
    write_text,
    write_tsv,
)
from rsxai.parallel import execution_backend, with_n_jobs
from rsxai.pipeline.provenance import iso_time, write_provenance
from rsxai.stages import (
    EXTERNAL_SCOPE,
    FixedMaps,
    classify_maps,
    stats_covariates,
    write_classification,
    write_stats,
)
from rsxai.stats import group_design

# The modules of the work (numpy, pandas, the stages) are imported inside the
# functions: the option lists below are read by the command line's parser,
# which should not pay for them on `rsxai --help`.
if TYPE_CHECKING:
    from rsxai.cohort import Cohort, MapStack
    from rsxai.outputs import Summary

logger = logging.getLogger(__name__)


def _write_config(out_dir: Path, config: Config, keys: tuple[str, ...]) -> Path:
    """rsxai.toml with the options this command used, beside those an earlier command wrote."""
    path = output_path(out_dir, "config")
    try:
        values = load_config_file(path) if path.exists() else {}
    except InputError:
        values = {}
    for key in keys:
        section, name = key.split(".")
        value = getattr(config, section)[name]
        if value is None:
            values.get(section, {}).pop(name, None)
        else:
            values.setdefault(section, {})[name] = value
    header = (
        "# rsxai configuration of the commands run into this folder (rsxai stats / classify).\n"
        "# Options left out are not set. Give it back with --config to repeat the run.\n"
    )
    return write_text(path, header + tomli_w.dumps(values))


def _start_outputs(
    out_dir: Path, data: MapStack, config: Config, keys: tuple[str, ...], inputs: dict
) -> Summary:
    """Description, configuration, participants, mask and the first summary keys."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(out_dir, source=inputs["stack"])
    _write_config(out_dir, config, keys)
    cohort = data.cohort
    participants = cohort.covariates.reset_index(drop=True)
    participants.insert(0, cohort.group_column, cohort.groups)
    participants.insert(0, "participant_id", [f"sub-{label}" for label in cohort.labels])
    write_tsv(output_path(out_dir, "participants"), participants)
    mask_path = write_nifti(output_path(out_dir, "mask"), data.grid.mask_img())
    logger.info(
        "%s: %d subjects (%s), %d voxels in the mask (%s).",
        data.network,
        cohort.n_subjects,
        ", ".join(f"{g} {n}" for g, n in cohort.group_counts.items()),
        data.grid.n_voxels,
        data.mask_rule,
    )
    summary = Summary(out_dir)
    summary.update("subjects", cohort.summary())
    summary.update("warnings", list(cohort.warnings))
    summary.update(
        "input_maps",
        {
            **inputs,
            "network": data.network,
            "mask_rule": data.mask_rule,
            "mask": str(mask_path.relative_to(out_dir)),
            "n_voxels": data.grid.n_voxels,
            "voxel_size_mm": [round(float(v), 3) for v in data.grid.voxel_size],
        },
    )
    return summary


def _write_provenance(
    out_dir: Path,
    config: Config,
    keys,
    inputs: dict,
    started: float,
    command: list[str] | None,
    stage: str,
    **parts,
) -> None:
    """provenance.json, with the one stage's timing (and ``parts``, what it measured)."""
    timing = {
        "status": "computed",
        "start": iso_time(started),
        "end": iso_time(time.time()),
        "seconds": round(time.time() - started, 3),
        **parts,
    }
    write_provenance(
        out_dir,
        command=command,
        started=started,
        random_seed=config.run.random_seed,
        configuration={key: getattr(config, key.split(".")[0])[key.split(".")[1]] for key in keys},
        inputs=inputs,
        input_checksums={path: file_checksum(path) for path in inputs.values() if path},
        stages={stage: timing},
    )


def _inputs(stack, subjects, mask) -> dict:
    return {
        "stack": str(Path(stack).resolve()),
        "subjects": str(Path(subjects).resolve()),
        "mask_file": str(Path(mask).resolve()) if mask is not None else None,
    }


def _read(stack, subjects, out_dir: Path, config: Config, mask, network, check) -> MapStack:
    """The checked stack; problems of the output folder are listed with the input's."""
    inputs = [Path(p) for p in (stack, subjects, mask) if p is not None]
    problems = []
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"OUTPUT_DIR {out_dir} exists and is not a folder. Choose another.")
    elif any(out_dir.resolve() == p.resolve().parent for p in inputs):
        problems.append(
            f"OUTPUT_DIR {out_dir} holds the input files; rsxai never writes beside its inputs. "
            f"Choose another, e.g. {out_dir / 'rsxai'}."
        )
    options = config.input
    try:
        data = read_map_stack(
            stack,
            subjects,
            mask=mask,
            network=network,
            group_column=options.group_column,
            positive_label=options.positive_label,
            min_per_group=options.min_per_group,
            check_cohort=check,
        )
    except InputError as error:
        raise InputError([*error.problems, *problems]) from None
    if problems:
        raise InputError(problems)
    return data


def run_stack_stats(
    stack: str | Path,
    subjects: str | Path,
    out_dir: str | Path,
    config: Config,
    *,
    mask: str | Path | None = None,
    network: str | None = None,
    progress: bool = True,
    command: list[str] | None = None,
) -> dict:
    """``rsxai stats``: permutation GLM with TFCE on a user's stack; the stage's outputs.

    Parameters
    ----------
    stack, subjects, mask, network
        See :func:`rsxai.cohort.map_stack.read_map_stack`.
    out_dir : str or Path
        Output folder (created).
    config : Config
        The ``[input]`` subject options, ``[stats]`` and ``[run]`` are used.
    progress : bool
        Show progress bars.
    command : list of str, optional
        The command line, recorded in provenance.json.

    Returns
    -------
    summary : dict
        The content of ``summary.json``.
    """

    def check(cohort: Cohort) -> None:
        covariates, _ = stats_covariates(config.stats, cohort.covariates, str(subjects))
        group_design(cohort.y, covariates)  # missing, constant or collinear covariates

    atlas_data_dir()  # the cluster tables' atlases, before any work
    out_dir = Path(out_dir)
    data = _read(stack, subjects, out_dir, config, mask, network, check)
    covariates, blocks = stats_covariates(config.stats, data.cohort.covariates, str(subjects))
    started, inputs = time.time(), _inputs(stack, subjects, mask)
    summary = _start_outputs(out_dir, data, config, STATS_OPTIONS, inputs)
    with execution_backend(config.run.n_jobs, config.run.dask_scheduler) as n_jobs:
        _, entry = write_stats(
            out_dir,
            data.grid,
            {data.network: lambda: data.maps},
            data.cohort.y,
            with_n_jobs(config, n_jobs),
            covariates=covariates,
            blocks=blocks,
            progress=progress,
        )
    summary.update("stats", entry)
    _write_provenance(out_dir, config, STATS_OPTIONS, inputs, started, command, "stats")
    return summary.data


def run_stack_classify(
    stack: str | Path,
    subjects: str | Path,
    out_dir: str | Path,
    config: Config,
    *,
    mask: str | Path | None = None,
    network: str | None = None,
    command: list[str] | None = None,
) -> dict:
    """``rsxai classify``: cross-validated classifiers of a user's maps; the stage's outputs.

    The maps are the features of every fold as given (the classify stage's
    cohort scope); every metric reports the scope ``"external maps"``.

    Parameters
    ----------
    stack, subjects, mask, network
        See :func:`rsxai.cohort.map_stack.read_map_stack`.
    out_dir : str or Path
        Output folder (created).
    config : Config
        The ``[input]`` subject options, ``[classify]`` and ``[run]`` are used.
    command : list of str, optional
        The command line, recorded in provenance.json.

    Returns
    -------
    summary : dict
        The content of ``summary.json``.
    """
    options = config.classify

    def check(cohort: Cohort) -> None:
        make_splits(cohort.y, scheme=options.cv_scheme, n_splits=options.cv_folds)

    out_dir = Path(out_dir)
    data = _read(stack, subjects, out_dir, config, mask, network, check)
    started, inputs = time.time(), _inputs(stack, subjects, mask)
    summary = _start_outputs(out_dir, data, config, CLASSIFY_OPTIONS, inputs)
    cohort = data.cohort
    with execution_backend(config.run.n_jobs, config.run.dask_scheduler) as n_jobs:
        work_config = with_n_jobs(config, n_jobs)
        result = classify_maps(
            FixedMaps(data.maps[:, None, :], [data.network]),
            list(range(cohort.n_subjects)),
            cohort.y,
            cohort.labels,
            data.grid.mask,
            work_config,
            cv_scope="cohort",
            voxel_size=data.grid.voxel_size,
        )
        _, entry = write_classification(
            out_dir, work_config, cohort, data.grid, result, cv_scope=EXTERNAL_SCOPE
        )
    summary.update("classification", entry)
    _write_provenance(
        out_dir,
        config,
        CLASSIFY_OPTIONS,
        inputs,
        started,
        command,
        "classify",
        feature_seconds=[round(s, 2) for s in result.feature_seconds],
    )
    return summary.data
