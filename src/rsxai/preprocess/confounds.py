"""Confound regressors and censoring masks from fMRIPrep confounds files.

:func:`load_confounds` reads one ``*_desc-confounds_timeseries.tsv`` and
returns the regressors of a denoising strategy plus the volumes to keep. It
reproduces what :func:`nilearn.interfaces.fmriprep.load_confounds` returns
for the same strategy (same columns, same values, same sample mask), without
needing the BOLD file to sit next to the TSV under BIDS names, and it rebuilds
derivative and squared columns that older fMRIPrep versions did not write.

With the defaults (24 motion parameters, white matter and CSF, no global
signal, no scrubbing) it is nilearn's ``load_confounds_strategy("simple")``.
"""

from __future__ import annotations

import csv
import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from rsxai.exceptions import InputError
from rsxai.tables import file_problem, table_layout

MOTION_BASE = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
# Suffixes fMRIPrep appends to a base regressor, for each motion model.
MOTION_SUFFIXES = {
    "24": ("", "_derivative1", "_power2", "_derivative1_power2"),
    "12": ("", "_derivative1"),
    "6": ("",),
    "none": (),
}
WM_CSF = ("white_matter", "csf")
GLOBAL_SIGNAL = "global_signal"
FRAMEWISE_DISPLACEMENT = "framewise_displacement"


def confound_columns(
    *, motion: str | int = "24", wm_csf: bool = True, global_signal: bool = False
) -> list[str]:
    """Names of the regressors :func:`load_confounds` returns, in its column order.

    Parameters
    ----------
    motion : {"24", "12", "6", "none"}, default="24"
        Motion model (see :func:`load_confounds`).
    wm_csf : bool, default=True
        Whether the mean white-matter and CSF signals are included.
    global_signal : bool, default=False
        Whether the global signal is included.

    Returns
    -------
    columns : list of str
        fMRIPrep column names, e.g. ``trans_x``, ``trans_x_derivative1``,
        ``trans_x_power2``, ``trans_x_derivative1_power2``, ..., ``white_matter``.
    """
    motion = _check_motion(motion)
    columns = [base + suffix for suffix in MOTION_SUFFIXES[motion] for base in MOTION_BASE]
    if wm_csf:
        columns += list(WM_CSF)
    if global_signal:
        columns.append(GLOBAL_SIGNAL)
    return columns


def load_confounds(
    path: str | os.PathLike,
    *,
    motion: str | int = "24",
    wm_csf: bool = True,
    global_signal: bool = False,
    scrub_fd: float | None = None,
    min_contiguous: int = 5,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load nuisance regressors and the volumes to keep from an fMRIPrep confounds TSV.

    Parameters
    ----------
    path : str or path-like
        fMRIPrep ``*_desc-confounds_timeseries.tsv`` (or the older
        ``*_desc-confounds_regressors.tsv``) of one run.
    motion : {"24", "12", "6", "none"}, default="24"
        Head-motion model: "6" the rigid-body parameters ``trans_x`` ...
        ``rot_z``; "12" adds their temporal derivatives (``*_derivative1``);
        "24" adds the squares of both (``*_power2``,
        ``*_derivative1_power2``), Friston's 24-parameter model. Missing
        derivative or squared columns are computed from the base parameters
        the way fMRIPrep does (backward difference, element-wise square).
    wm_csf : bool, default=True
        Add the mean white-matter and CSF signals (``white_matter``, ``csf``).
    global_signal : bool, default=False
        Add the mean whole-brain signal (``global_signal``).
    scrub_fd : float or None, default=None
        Framewise-displacement threshold in mm; volumes with
        ``framewise_displacement > scrub_fd`` are censored, and so are the
        segments left between censored volumes that are shorter than
        ``min_contiguous`` (nilearn's "scrubbing" rule). None censors nothing
        for motion.
    min_contiguous : int, default=5
        Shortest run of kept volumes allowed between censored ones when
        scrubbing (nilearn's ``scrub``); 0 keeps every uncensored volume.

    Returns
    -------
    confounds : ndarray of shape (n_volumes, n_confounds), float64
        Regressors in the order of :func:`confound_columns`, demeaned over
        the kept volumes as nilearn does. A value missing at the first volume
        ("n/a", "NaN" or an empty cell; fMRIPrep writes n/a for derivatives
        there) takes its value at the second volume, as in nilearn; a missing
        value at any later volume is an error. Shape (n_volumes, 0) when nothing is selected.
    sample_mask : ndarray of int or None
        Indices of the volumes to keep, shape (n_kept,), or None when no
        volume is censored. Volumes fMRIPrep flags as non-steady-state
        (``non_steady_state_outlier*`` columns) are always censored, as in
        nilearn.

    Raises
    ------
    InputError
        When an option value is not allowed, the file cannot be read, or a
        column the strategy needs is missing or holds missing values past the
        first row (one line per kind of problem, naming the columns).
    """
    motion = _check_motion(motion)
    problems = _check_scrub_options(scrub_fd, min_contiguous)
    if problems:
        raise InputError(problems)
    path = Path(path)
    table = _read_table(path)
    n_volumes = len(table)

    columns = confound_columns(motion=motion, wm_csf=wm_csf, global_signal=global_signal)
    needs = {
        column: f"motion={motion!r}" for column in columns[: 6 * len(MOTION_SUFFIXES[motion])]
    }
    needs.update({column: "wm_csf=True" for column in WM_CSF if column in columns})
    if global_signal:
        needs[GLOBAL_SIGNAL] = "global_signal=True"
    if scrub_fd is not None:
        needs[FRAMEWISE_DISPLACEMENT] = f"scrub_fd={scrub_fd!r}"

    _check_numeric(
        table, [*needs, *(c for c in table.columns if c.startswith("non_steady"))], path
    )
    _add_expansions(table, columns)
    # Expansions are computed from their base column, so a missing base is
    # the one thing to report (once, not once per expansion).
    missing = [
        column for column in needs if column not in table.columns and _base_name(column) == column
    ]
    if missing:
        raise InputError(
            f"{path}: column(s) {', '.join(map(repr, missing))} are missing; "
            f"{', '.join(dict.fromkeys(needs[column] for column in missing))} need(s) them. "
            "Choose a strategy without them or give the fMRIPrep confounds file that has them."
        )

    try:
        selected = table[columns].to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"{path}: the columns {columns} must hold numbers (or n/a); {error}. "
            "Give fMRIPrep's confounds TSV unchanged."
        ) from error
    if n_volumes > 1:
        # fMRIPrep writes "n/a" for derivatives at the first volume; nilearn
        # copies the second volume's value there, and so do we. "n/a", "NaN" and an
        # empty cell are all read as NaN, so they follow this one rule alike.
        first_nan = np.isnan(selected[0])
        selected[0, first_nan] = selected[1, first_nan]
    # Infinite values (or squares too large for float64) would turn the demeaned
    # regressors into NaN, as surely as a missing value.
    bad_rows = ~np.isfinite(selected)
    if bad_rows.any():
        # One line for the file, not one per column: a run with leading n/a rows
        # has them in every column.
        bad_columns = [columns[j] for j in np.flatnonzero(bad_rows.any(axis=0))]
        volumes = np.flatnonzero(bad_rows.any(axis=1)).tolist()
        shown = ", ".join(map(repr, bad_columns[:8])) + (
            f" and {len(bad_columns) - 8} more" if len(bad_columns) > 8 else ""
        )
        raise InputError(
            f"{path}: column(s) {shown} have missing (n/a, NaN or empty) or infinite values at "
            f"volume(s) {volumes[:10]}{' ...' if len(volumes) > 10 else ''}; only the first "
            "volume (row) may be missing (it takes the second volume's value, as in nilearn). "
            "Check the file or choose a strategy without these columns."
        )

    censored = np.zeros(n_volumes, dtype=bool)
    if scrub_fd is not None:
        fd = table[FRAMEWISE_DISPLACEMENT].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            outliers = np.flatnonzero(fd > scrub_fd)  # NaN (first volume) is never an outlier
        if outliers.size and min_contiguous > 0:
            outliers = _drop_short_segments(outliers, n_volumes, min_contiguous)
        censored[outliers] = True
    for column in table.columns:
        if column.startswith("non_steady_state"):
            censored |= table[column].to_numpy() != 0

    sample_mask = None if not censored.any() else np.flatnonzero(~censored)
    if sample_mask is not None and sample_mask.size == 0:
        reason = "marked non-steady-state" + (
            "" if scrub_fd is None else f" or with framewise displacement > {scrub_fd} mm"
        )
        raise InputError(
            f"{path}: every one of the {n_volumes} volumes is censored ({reason}); "
            + ("raise scrub_fd or " if scrub_fd is not None else "")
            + "leave this run out."
        )
    kept = slice(None) if sample_mask is None else sample_mask
    selected -= selected[kept].mean(axis=0)
    return selected, sample_mask


def _check_motion(motion: str | int) -> str:
    value = str(motion)
    if value not in MOTION_SUFFIXES:
        raise InputError(
            f"motion must be one of {', '.join(repr(m) for m in MOTION_SUFFIXES)}; got {motion!r}."
        )
    return value


def _check_scrub_options(scrub_fd, min_contiguous) -> list[str]:
    problems = []
    if scrub_fd is not None and (
        isinstance(scrub_fd, bool)
        or not isinstance(scrub_fd, (int, float, np.number))
        or not np.isfinite(scrub_fd)
        or scrub_fd <= 0
    ):
        problems.append(
            f"scrub_fd must be None or a framewise displacement in mm above 0 (0.5 is usual); "
            f"got {scrub_fd!r}."
        )
    if (
        isinstance(min_contiguous, bool)
        or not isinstance(min_contiguous, (int, np.integer))
        or min_contiguous < 0
    ):
        problems.append(
            f"min_contiguous must be an integer number of volumes >= 0 (5 is usual); "
            f"got {min_contiguous!r}."
        )
    return problems


def _read_table(path: Path) -> pd.DataFrame:
    problem = file_problem(path)
    if problem:
        raise InputError(
            f"{path}: this confounds file {problem}. Give fMRIPrep's "
            "*_desc-confounds_timeseries.tsv of this run, or no confounds file."
        )
    try:
        _, problems = table_layout(path, "\t")
        if problems:
            raise InputError(problems)
        with warnings.catch_warnings():
            # index_col=False: trailing tabs (checked empty above) are dropped rather than
            # turning the first column into an index that shifts every regressor.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            # pandas reads fMRIPrep's "n/a" as NaN by default, as nilearn relies on.
            table = pd.read_csv(path, sep="\t", index_col=False)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        csv.Error,
        OSError,
    ) as error:
        raise InputError(
            f"{path}: cannot be read as a tab-separated confounds table "
            f"({' '.join(str(error).split())}). "
            "Give fMRIPrep's *_desc-confounds_timeseries.tsv."
        ) from error
    if len(table) == 0:
        raise InputError(f"{path}: the confounds table has no rows; give the run's full TSV.")
    return table


def _check_numeric(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    """Raise when a column used holds text: expansions and censoring need numbers."""
    found = []
    for column in dict.fromkeys(columns):
        if column not in table.columns or pd.api.types.is_numeric_dtype(table[column]):
            continue
        values = table[column]
        text = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        found.append(f"{column!r} ({text.iloc[0]!r} at volume {text.index[0]})")
    if found:
        # One line for the file, naming every column.
        raise InputError(
            f"{path}: column(s) {', '.join(found)} hold text; they must hold numbers (or n/a). "
            "Give fMRIPrep's confounds TSV unchanged."
        )


def _add_expansions(table: pd.DataFrame, columns: list[str]) -> None:
    """Compute missing ``_derivative1`` / ``_power2`` columns from the base regressor.

    fMRIPrep's derivative is the backward difference (n/a at the first
    volume) and ``_power2`` the element-wise square; older versions wrote
    only some of these columns.
    """
    for column in columns:
        if column in table.columns:
            continue
        if column.endswith("_power2"):
            source = column[: -len("_power2")]
            if source.endswith("_derivative1") and source not in table.columns:
                _add_derivative(table, source)
            if source in table.columns:
                table[column] = table[source] ** 2
        elif column.endswith("_derivative1"):
            _add_derivative(table, column)


def _base_name(column: str) -> str:
    return column.replace("_derivative1", "").replace("_power2", "")


def _add_derivative(table: pd.DataFrame, column: str) -> None:
    base = column[: -len("_derivative1")]
    if base in table.columns:
        table[column] = table[base].diff()


def _drop_short_segments(outliers: np.ndarray, n_volumes: int, min_contiguous: int) -> np.ndarray:
    """Also censor runs of kept volumes shorter than ``min_contiguous``.

    The rule of nilearn's ``optimize_scrub`` (Power et al. 2014): the segment
    before the first outlier, the one after the last, and every segment in
    between are censored when they hold fewer than ``min_contiguous`` volumes.

    Parameters
    ----------
    outliers : ndarray of int, shape (n_outliers,)
        Sorted indices of volumes above the motion threshold (at least one).
    n_volumes : int
    min_contiguous : int

    Returns
    -------
    outliers : ndarray of int
        Sorted indices of all censored volumes.
    """
    censored = np.zeros(n_volumes, dtype=bool)
    censored[outliers] = True
    bounds = np.concatenate(([-1], outliers, [n_volumes]))
    for before, after in itertools.pairwise(bounds):
        if 0 < after - before - 1 < min_contiguous:
            censored[before + 1 : after] = True
    return np.flatnonzero(censored)
