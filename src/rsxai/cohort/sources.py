"""Building a :class:`~rsxai.cohort.Cohort` from a BIDS dataset or a manifest.

Both sources end in :func:`_assemble`, which joins the BOLD runs found with
the participant table's rows, applies the participant filters, decides the two
group labels and types the covariates, collecting every problem before
raising. These functions back :meth:`Cohort.from_bids` and
:meth:`Cohort.from_manifest`; call those.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from rsxai.cohort.bids import (
    IMAGE_EXTENSIONS,
    BoldSeries,
    SeriesFilter,
    index_derivatives,
    locate_fmriprep,
    natural_key,
    participants_file,
    read_sidecar_tr,
)
from rsxai.cohort.checks import list_names
from rsxai.cohort.participant_values import resolve_groups, type_covariates
from rsxai.cohort.participants import (
    ParticipantRow,
    is_bids_label,
    normalise_labels,
    read_manifest,
    read_participants,
)
from rsxai.cohort.subjects import Run, Subject
from rsxai.exceptions import InputError
from rsxai.tables import file_problem


def _companion_problems(
    runs_by_label: Mapping[str, list[Run]], where: str
) -> tuple[list[str], list[str]]:
    """Runs without confounds or without a mask.

    Confounds must be there for every run or for none: regressing them out of
    some subjects only would make the groups differ by processing. A missing
    mask only means that the subject does not shape the common brain mask.
    """
    problems, warnings = [], []
    n_runs = sum(len(runs) for runs in runs_by_label.values())
    for kind in ("confounds", "mask"):
        missing = [
            (label, run)
            for label, runs in runs_by_label.items()
            for run in runs
            if getattr(run, kind) is None
        ]
        if not missing:
            continue
        if len(missing) == n_runs:
            consequence = (
                "no confound regression will be done"
                if kind == "confounds"
                else "the MNI brain mask will stand in for the subjects' masks"
            )
            warnings.append(f"{where}: no {kind} file for any run; {consequence}.")
        elif kind == "mask":
            warnings.append(
                f"{where}: no brain mask for {len(missing)} of {n_runs} runs "
                f"({list_names([f'sub-{label}' for label, _ in missing])}); the common brain "
                "mask is made from the other runs' masks."
            )
        else:
            problems.extend(
                f"sub-{label}: no confounds file for {run.bold}, while other runs have one; "
                "every run must be cleaned alike. Give its confounds file (fMRIPrep writes one "
                "per run) or exclude the subject (--exclude-label)."
                for label, run in missing
            )
    return problems, warnings


def _assemble(
    rows: Mapping[str, ParticipantRow],
    runs_by_label: Mapping[str, list[Run]],
    *,
    table: Path,
    covariate_columns: list[str],
    no_bold: Mapping[str, str],
    problems: list[str],
    warnings: list[str],
    group_column: str,
    positive_label: object | None,
    participant_label: str | Iterable[str] | None,
    exclude_label: str | Iterable[str] | None,
    source: str,
    nothing_found: str,
) -> dict:
    try:
        requested = normalise_labels(participant_label, option="participant_label")
        left_out = normalise_labels(exclude_label, option="exclude_label")
    except InputError as error:
        raise InputError([*problems, *error.problems]) from None
    known = set(rows) | set(runs_by_label) | set(no_bold)
    for option, labels in (("participant_label", requested), ("exclude_label", left_out)):
        for label in labels:
            if label not in known:
                problems.append(
                    f"{option}: sub-{label} is neither in {table} nor among the BOLD series "
                    f"found ({source}). Check the label."
                )
    excluded = [(label, "left out by exclude_label") for label in left_out if label in known]
    candidates = sorted((set(requested) if requested else known) - set(left_out), key=natural_key)
    kept: dict[str, ParticipantRow] = {}
    for label in candidates:
        row = rows.get(label)
        if label not in runs_by_label:
            reason = no_bold.get(label, "no BOLD series")
            if label in requested:
                problems.append(
                    f"participant_label: sub-{label} was asked for but has {reason}. Check the "
                    "filters (task, space, session, run) or drop the label."
                )
            elif row is not None:
                excluded.append((label, reason))
            continue
        if row is None:
            problems.append(
                f"sub-{label}: BOLD series found ({runs_by_label[label][0].bold}) but no row in "
                f"{table}. Add the subject's row with its group, or exclude it (--exclude-label)."
            )
        elif row.group is None:
            problems.append(
                f"sub-{label}: no value in column {group_column!r} of {table}. Give its group, "
                "or exclude the subject (--exclude-label)."
            )
        else:
            kept[label] = row
    no_bold_left_out = [(label, reason) for label, reason in excluded if label not in left_out]
    if no_bold_left_out:
        warnings.append(
            f"{len(no_bold_left_out)} participant(s) of {table} have no BOLD series matching the "
            f"filters and are left out: "
            + "; ".join(f"sub-{label} ({reason})" for label, reason in no_bold_left_out)
        )
    if not kept and not problems:
        raise InputError(nothing_found)
    positive = str(positive_label) if positive_label is not None else ""
    if kept:
        try:
            positive, _, group_problems = resolve_groups(
                {label: row.group for label, row in kept.items()},
                positive_label,
                source=str(table),
                group_column=group_column,
            )
            problems.extend(group_problems)
        except InputError as error:
            problems.extend(error.problems)
    companion_problems, companion_warnings = _companion_problems(
        {label: runs_by_label[label] for label in kept}, source
    )
    problems.extend(companion_problems)
    warnings.extend(companion_warnings)
    if problems:
        raise InputError(problems)
    covariates, covariate_warnings = type_covariates(
        {label: row.values for label, row in kept.items()}, covariate_columns, source=str(table)
    )
    subjects = [
        Subject(label, row.group, tuple(runs_by_label[label]), covariates[label])
        for label, row in kept.items()
    ]
    return dict(
        subjects=subjects,
        positive_label=positive,
        group_column=group_column,
        excluded=excluded,
        source=source,
        warnings=[*warnings, *covariate_warnings],
    )


def _run_from_series(series: BoldSeries, problems: list[str]) -> Run:
    tr = None
    if series.sidecar is not None:
        tr, problem = read_sidecar_tr(series.sidecar)
        if problem:
            problems.append(problem)
    return Run(
        bold=series.bold,
        mask=series.mask,
        confounds=series.confounds,
        tr=tr,
        n_volumes=None,
        session=series.entity("ses"),
        run=series.entity("run"),
    )


def _available(index: Mapping[str, list[BoldSeries]]) -> str:
    found = defaultdict(int)
    for series_list in index.values():
        for series in series_list:
            found[f"task-{series.entity('task')} space-{series.entity('space')}"] += 1
    return ", ".join(f"{name} ({n})" for name, n in sorted(found.items())) or "none"


def bids_records(
    root: Path,
    *,
    derivatives: str | os.PathLike | None,
    task: str | None,
    space: str | None,
    session: str | None,
    run: str | int | None,
    multi_run: str,
    group_column: str,
    positive_label: str | None,
    participant_label: str | Iterable[str] | None,
    exclude_label: str | Iterable[str] | None,
) -> dict:
    """The :class:`Cohort` keywords that :meth:`Cohort.from_bids` reads (same parameters)."""
    if not root.is_dir():
        raise InputError(
            f"{root} is not a folder. Give a BIDS dataset or an fMRIPrep derivatives folder."
        )
    fmriprep = locate_fmriprep(root, derivatives)
    table = participants_file(root, fmriprep)
    if table is None:
        raise InputError(
            f"{root}: no participants.tsv at the BIDS root or in {fmriprep}; the groups are read "
            "from it. Add participants.tsv (participant_id, group, ...) or use a manifest."
        )
    rows, covariate_columns, problems = read_participants(table, group_column=group_column)
    series_filter = SeriesFilter(task=task, space=space, session=session, run=run)
    wanted = series_filter.describe()
    index = index_derivatives(fmriprep)
    runs_by_label: dict[str, list[Run]] = {}
    no_bold: dict[str, str] = {}
    several_runs = []
    for label, all_series in index.items():
        matching = [series for series in all_series if series_filter.matches(series)]
        if not matching:
            others = sorted({series.describe() for series in all_series})
            no_bold[label] = f"no preprocessed BOLD matching {wanted}" + (
                f"; found: {list_names(others, 4)}" if others else ""
            )
            continue
        if not is_bids_label(label):
            problems.append(
                f"{fmriprep / ('sub-' + label)}: {label!r} is not a BIDS subject label (letters "
                "and digits only). Rename the folder and its files, or remove it."
            )
            continue
        by_acquisition = defaultdict(list)
        for series in matching:
            by_acquisition[series.acquisition].append(series)
        for duplicates in by_acquisition.values():
            if len(duplicates) > 1:
                first = duplicates[0]
                choice = f"{first.entity('space')}:res-{first.entity('res')}"
                problems.append(
                    f"sub-{label}: {len(duplicates)} preprocessed BOLD files match {wanted} for "
                    f"one acquisition ({', '.join(d.bold.name for d in duplicates)}). Choose one "
                    f"space and resolution, e.g. space='{choice}' (--space), or remove the "
                    "duplicates."
                )
        if len(matching) > 1 and multi_run == "first":
            several_runs.append(f"sub-{label}")
            matching = matching[:1]
        runs_by_label[label] = [_run_from_series(series, problems) for series in matching]
    for label in rows:
        no_bold.setdefault(label, f"no sub-{label} folder in {fmriprep}")
    warnings = []
    if several_runs:
        warnings.append(
            f"{len(several_runs)} subject(s) have several runs matching {wanted} "
            f"({list_names(several_runs)}); multi_run='first' keeps the first in (session, run) "
            "order. Pass multi_run='concatenate' (--multi-run concatenate) to use them all, or "
            "session= / run= to choose."
        )
    return _assemble(
        rows,
        runs_by_label,
        table=table,
        covariate_columns=covariate_columns,
        no_bold=no_bold,
        problems=problems,
        warnings=warnings,
        group_column=group_column,
        positive_label=positive_label,
        participant_label=participant_label,
        exclude_label=exclude_label,
        source=str(fmriprep),
        nothing_found=(
            f"{fmriprep}: no preprocessed BOLD series (*_desc-preproc_bold.nii[.gz]) matching "
            f"{wanted} for any participant (found: {_available(index)}). Check task= and "
            "space= (--task, --space)."
        ),
    )


def _manifest_sidecar_tr(bold: Path, problems: list[str]) -> float | None:
    extension = next((ext for ext in IMAGE_EXTENSIONS if bold.name.endswith(ext)), None)
    if extension is None:
        return None
    sidecar = bold.with_name(bold.name[: -len(extension)] + ".json")
    if not sidecar.exists() and not sidecar.is_symlink():
        return None
    problem = file_problem(sidecar)
    if problem:
        problems.append(
            f"{sidecar}: this JSON sidecar {problem}. Fix or delete it (the TR is then read "
            "from the NIfTI header)."
        )
        return None
    tr, problem = read_sidecar_tr(sidecar)
    if problem:
        problems.append(problem)
    return tr


def manifest_records(
    path: Path,
    *,
    positive_label: str | None,
    participant_label: str | Iterable[str] | None,
    exclude_label: str | Iterable[str] | None,
    group_column: str,
) -> dict:
    """The :class:`Cohort` keywords that :meth:`Cohort.from_manifest` reads (same parameters)."""
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path} {problem}. Give the manifest's path.")
    rows, covariate_columns, problems = read_manifest(path, group_column=group_column)
    runs_by_label = {
        label: [
            Run(
                bold=row.bold,
                mask=row.mask,
                confounds=row.confounds,
                tr=row.tr if row.tr is not None else _manifest_sidecar_tr(row.bold, problems),
                n_volumes=None,
            )
        ]
        for label, row in rows.items()
    }
    return _assemble(
        rows,
        runs_by_label,
        table=path,
        covariate_columns=covariate_columns,
        no_bold={},
        problems=problems,
        warnings=[],
        group_column=group_column,
        positive_label=positive_label,
        participant_label=participant_label,
        exclude_label=exclude_label,
        source=str(path),
        nothing_found=f"{path}: no subject left after participant_label / exclude_label.",
    )


def manifest_options(path: Path, options: dict, from_bids, from_manifest) -> dict:
    """``options`` of :meth:`Cohort.from_path` as :meth:`Cohort.from_manifest` takes them.

    Options that only concern BIDS folders are dropped when left at their defaults
    (so that one set of options serves both readers); otherwise they are an error.
    """
    manifest_parameters = inspect.signature(from_manifest).parameters
    bids_only = {
        name: parameter.default
        for name, parameter in inspect.signature(from_bids).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in manifest_parameters
    }
    not_default = [
        f"{name}={options[name]!r}"
        for name, default in bids_only.items()
        if name in options and options[name] != default
    ]
    if not_default:
        raise InputError(
            f"{path} is a manifest; the options {', '.join(not_default)} apply to BIDS "
            "folders only. Drop them or give the BIDS folder."
        )
    return {name: value for name, value in options.items() if name not in bids_only}
