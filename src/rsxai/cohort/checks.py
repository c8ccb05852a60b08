"""Checks across a cohort: labels, groups, what the runs must share (TR, grid), their length.

:func:`validated_subjects` (the body of :meth:`rsxai.cohort.Cohort.validate`)
gathers them all into one :class:`~rsxai.exceptions.InputError`;
:func:`check_runs` runs :func:`rsxai.cohort.file_checks.check_run` on every run in
parallel; :func:`filter_length_problems` finds the runs too short for the
band-pass filter of preprocessing (after censoring); the other functions
compare subjects with each other (:func:`shared_file_problems`: runs that point to
one BOLD file).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from joblib import Parallel, delayed

from rsxai.cohort.file_checks import TR_TOLERANCE, RunCheck, check_run
from rsxai.cohort.participants import label_problem
from rsxai.exceptions import InputError
from rsxai.preprocess import filter_min_volumes, filtered_length, load_confounds
from rsxai.progress import progress_bar

if TYPE_CHECKING:
    from rsxai.cohort.subjects import Run, Subject


def subject_problems(
    subjects: Sequence[Subject],
    *,
    positive_label: str,
    group_column: str,
    source: str,
    min_per_group: int,
) -> list[str]:
    """Unsafe or duplicate labels, missing groups or runs, a group too small or missing.

    Parameters
    ----------
    subjects : sequence of Subject
    positive_label : str
    group_column : str
        Name of the group column, for messages.
    source : str
        Where the subjects were read from, for messages.
    min_per_group : int
        Fewest subjects a group may have.
    """
    problems = []
    where = source or "the cohort"
    labels = [subject.label for subject in subjects]
    for label in labels:
        problem = label_problem(label, where)
        if problem:
            problems.append(problem)
    duplicated = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicated:
        problems.append(
            f"{where}: subject(s) listed more than once: "
            f"{', '.join('sub-' + label for label in duplicated)}. Keep one entry per subject."
        )
    for subject in subjects:
        if not subject.group:
            problems.append(
                f"sub-{subject.label}: no group label ({group_column!r}). Give its "
                "group or exclude the subject (--exclude-label)."
            )
        if not subject.runs:
            problems.append(f"sub-{subject.label}: no BOLD run. Give one or exclude it.")
    counts = Counter(subject.group for subject in subjects if subject.group)
    others = sorted(group for group in counts if group != positive_label)
    if positive_label not in counts or not others:
        problems.append(
            f"{where}: only one group ({', '.join(map(repr, counts)) or 'none'}) with "
            f"positive_label={positive_label!r}; rsxai compares two groups. Add the "
            "other group's subjects or correct positive_label."
        )
    elif len(others) > 1:
        problems.append(
            f"{where}: groups {', '.join(map(repr, others))} besides the positive label "
            f"{positive_label!r}; rsxai compares exactly two groups. Exclude the "
            "subjects of the extra groups (--exclude-label)."
        )
    for group, count in sorted(counts.items()):
        if count < min_per_group:
            problems.append(
                f"{where}: group {group!r} has {count} subject(s), fewer than "
                f"min_per_group={min_per_group}; cross-validation and permutation statistics "
                "need more. Add subjects or lower min_per_group (--min-per-group)."
            )
    return problems


def run_name(subject: Subject, run: Run) -> str:
    """``"sub-01"``, or ``"sub-01 ses-1 run-2"`` for a subject with several runs."""
    described = run.describe() if len(subject.runs) > 1 else ""
    return f"sub-{subject.label}" + (f" {described}" if described else "")


def check_runs(
    subjects: Sequence[Subject],
    *,
    min_volumes: int,
    check_data: bool,
    n_jobs: int = 1,
    progress: bool = False,
    confounds_strategy: dict | None = None,
) -> list[tuple[Subject, Run, str, RunCheck]]:
    """Check every run of every subject, in parallel.

    ``confounds_strategy`` is passed to :func:`rsxai.cohort.file_checks.check_run`.

    Returns
    -------
    list of (Subject, Run, str, RunCheck)
        Each run with its name (see :func:`run_name`) and its check, in order.
    """
    jobs = [(subject, run, run_name(subject, run)) for subject in subjects for run in subject.runs]
    checks = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(check_run)(
            run.bold,
            run.mask,
            run.confounds,
            run.tr,
            prefix=name,
            min_volumes=min_volumes,
            check_data=check_data,
            confounds_strategy=confounds_strategy,
        )
        for _, run, name in jobs
    )
    checks = progress_bar(
        checks, total=len(jobs), desc="checking inputs", unit="run", enabled=progress
    )
    return [(*job, check) for job, check in zip(jobs, checks, strict=True)]


def list_names(names: Sequence[str], limit: int = 8) -> str:
    """``"sub-01, sub-02, sub-03"``, or the first ``limit`` and how many more."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def tr_problems(trs: Sequence[tuple[str, float]]) -> list[str]:
    """One problem when the runs do not share one TR.

    Parameters
    ----------
    trs : sequence of (str, float)
        Run name (e.g. ``"sub-01"``) and its TR in seconds.
    """
    groups: dict[float, list[str]] = defaultdict(list)
    for name, tr in sorted(trs, key=lambda item: item[1]):
        # Runs within TR_TOLERANCE of a group's first TR join that group.
        reference = next((ref for ref in groups if abs(ref - tr) <= TR_TOLERANCE), tr)
        groups[reference].append(name)
    if len(groups) < 2:
        return []
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))
    return [
        "The TR differs between runs: "
        + "; ".join(f"{tr:g} s: {list_names(names)}" for tr, names in ranked)
        + ". rsxai needs one TR (band-pass filtering and group ICA assume it). Exclude the runs "
        "with another TR (--exclude-label) or analyse them separately."
    ]


def filter_length_problems(
    checked: Sequence[tuple[Subject, Run, str, RunCheck]],
    *,
    high_pass: float | None,
    low_pass: float | None,
    confounds_strategy: dict | None = None,
) -> list[str]:
    """Runs too short for the band-pass filter of preprocessing, and cut-offs it cannot use.

    A run is too short when the volumes the filter runs over (first to last
    volume kept after censoring: fMRIPrep's non-steady-state volumes and, with
    ``scrub_fd``, high-motion ones) are fewer than
    :func:`rsxai.preprocess.signal.filter_min_volumes`, the very rule with which
    :func:`rsxai.preprocess.signal.clean_signals` would fail during preprocessing.

    Parameters
    ----------
    checked : sequence of (Subject, Run, str, RunCheck)
        From :func:`check_runs`; runs with problems of their own are skipped
        (those are reported already).
    high_pass, low_pass : float or None
        Cut-offs in Hz of the ``[preprocess]`` options; None (the option's 0)
        disables one.
    confounds_strategy : dict, optional
        The :func:`rsxai.preprocess.confounds.load_confounds` keywords preprocessing will
        use, which decide the censored volumes.

    Returns
    -------
    list of str
        One problem per short run, and one per cut-off problem and TR.
    """
    strategy = confounds_strategy or {"motion": "none", "wm_csf": False}
    problems, bad_cutoffs = [], defaultdict(list)
    cutoffs = ", ".join(
        f"{flag} {value:g} Hz"
        for flag, value in (("--high-pass", high_pass), ("--low-pass", low_pass))
        if value is not None
    )
    for subject, run, name, check in checked:
        if check.problems or check.n_volumes is None or check.tr is None:
            continue
        try:
            minimum = filter_min_volumes(tr=check.tr, high_pass=high_pass, low_pass=low_pass)
        except InputError as error:
            for problem in error.problems:
                bad_cutoffs[(check.tr, problem)].append(name)
            continue
        if not minimum:
            continue
        sample_mask = None
        if run.confounds is not None:
            try:
                _, sample_mask = load_confounds(run.confounds, **strategy)
            except InputError:  # reported by check_run with its strategy
                continue
        n_filtered = filtered_length(check.n_volumes, sample_mask)
        if n_filtered >= minimum:
            continue
        scrub_fd = strategy.get("scrub_fd")
        censored = (
            f", {n_filtered} from the first to the last volume kept after censoring "
            + (f"(framewise displacement above --scrub-fd {scrub_fd:g} mm, " if scrub_fd else "(")
            + "non-steady-state volumes)"
            if n_filtered < check.n_volumes
            else ""
        )
        if high_pass is not None and low_pass is not None:
            single = filter_min_volumes(tr=check.tr, high_pass=None, low_pass=low_pass)
            fix = (
                f"filter less (with --high-pass 0 the low-pass filter alone needs {single} "
                "volumes; --high-pass 0 --low-pass 0 filters nothing)"
            )
        else:
            fix = "disable the filter (--high-pass 0 --low-pass 0)"
        problems.append(
            f"{name}: {run.bold} has {check.n_volumes} volumes{censored}; the Butterworth "
            f"filter of preprocessing ({cutoffs}, TR {check.tr:g} s) needs at least "
            f"{minimum} volumes. Use a longer run, {fix}"
            + (", raise --scrub-fd" if scrub_fd and n_filtered < check.n_volumes else "")
            + f", or leave the subject out (--exclude-label {subject.label})."
        )
    for (tr, problem), names in bad_cutoffs.items():
        problems.append(
            f"{list_names(names)} (TR {tr:g} s): the filter of preprocessing cannot be built: "
            f"{problem} On the command line, 0 disables a cut-off (--high-pass 0, --low-pass 0)."
        )
    return problems


def shared_file_problems(checked: Sequence[tuple[Subject, Run, str, RunCheck]]) -> list[str]:
    """One problem per BOLD file that several runs point to (a copy-paste slip in a manifest).

    Paths are compared after resolving symbolic links and ``..``
    (:func:`os.path.realpath`), so two spellings of one file are one file.
    Without this check every stage would run on copies of one series and
    classification would fail at the end on features that never vary.

    Parameters
    ----------
    checked : sequence of (Subject, Run, str, RunCheck)
        From :func:`check_runs`.
    """
    # dict keys, not a list: a subject listed twice is reported as such by subject_problems.
    names_by_file: dict[str, dict[str, None]] = defaultdict(dict)
    for _, run, name, _ in checked:
        names_by_file[os.path.realpath(run.bold)][name] = None
    return [
        f"{list_names(names)}: their BOLD series are one file ({path}); each run needs its own "
        "series. Correct the bold paths (e.g. the manifest rows) of these subjects."
        for path, names in names_by_file.items()
        if len(names) > 1
    ]


def grid_warnings(grids: Sequence[tuple[str, np.ndarray, tuple[int, int, int]]]) -> list[str]:
    """One warning when the BOLD series are not all on one voxel grid.

    Parameters
    ----------
    grids : sequence of (str, ndarray of shape (4, 4), tuple of 3 int)
        Run name, affine and spatial shape.
    """
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, affine, shape in grids:
        groups[(tuple(shape), tuple(np.round(affine, 3).ravel()))].append(name)
    if len(groups) < 2:
        return []
    descriptions = []
    for (shape, affine), names in sorted(groups.items(), key=lambda item: -len(item[1])):
        voxel = np.sqrt((np.reshape(affine, (4, 4))[:3, :3] ** 2).sum(axis=0))
        descriptions.append(
            f"{'x'.join(map(str, shape))} voxels of {'x'.join(f'{v:g}' for v in voxel)} mm: "
            f"{list_names(names)}"
        )
    return [
        f"The BOLD series are on {len(groups)} different voxel grids ("
        + "; ".join(descriptions)
        + "). Every image will be resampled to the analysis grid."
    ]


def validated_subjects(
    subjects: Sequence[Subject],
    *,
    positive_label: str,
    group_column: str,
    source: str,
    min_volumes: int,
    min_per_group: int,
    check_data: bool,
    n_jobs: int = 1,
    progress: bool = False,
    confounds_strategy: dict | None = None,
    high_pass: float | None = None,
    low_pass: float | None = None,
) -> tuple[list[Subject], list[str]]:
    """Run every check on the subjects; return them with each run's TR and length filled in.

    The parameters are those of :meth:`rsxai.cohort.Cohort.validate` and of the
    cohort (``positive_label``, ``group_column``, ``source``).

    Returns
    -------
    subjects : list of Subject
        The subjects, in the given order, whose runs have ``tr`` and
        ``n_volumes`` set.
    warnings : list of str
        What validation found that is not an error (different grids, a
        sidecar TR that disagrees with the header).

    Raises
    ------
    InputError
        Listing every problem found, one line each.
    """
    problems = subject_problems(
        subjects,
        positive_label=positive_label,
        group_column=group_column,
        source=source,
        min_per_group=min_per_group,
    )
    checked = check_runs(
        subjects,
        min_volumes=min_volumes,
        check_data=check_data,
        n_jobs=n_jobs,
        progress=progress,
        confounds_strategy=confounds_strategy,
    )
    warnings, checked_runs = [], {}
    for subject, run, _, check in checked:
        problems.extend(check.problems)
        warnings.extend(check.warnings)
        checked_runs.setdefault(subject.label, []).append(
            dataclasses.replace(run, tr=check.tr, n_volumes=check.n_volumes)
        )
    problems.extend(shared_file_problems(checked))
    problems.extend(tr_problems([(name, c.tr) for *_, name, c in checked if c.tr is not None]))
    problems.extend(
        filter_length_problems(
            checked,
            high_pass=high_pass,
            low_pass=low_pass,
            confounds_strategy=confounds_strategy,
        )
    )
    warnings.extend(
        grid_warnings([(name, c.affine, c.shape) for *_, name, c in checked if c.shape])
    )
    if problems:
        raise InputError(problems)
    validated = [
        dataclasses.replace(subject, runs=tuple(checked_runs.get(subject.label, ())))
        for subject in subjects
    ]
    return validated, warnings
