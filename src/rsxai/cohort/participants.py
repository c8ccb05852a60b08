"""Participant tables: reading participants.tsv and manifests into rows, and subject labels.

Both tables are read as text (pandas with ``dtype=str`` and no NA guessing)
so that a label such as ``007`` or a group called ``NA`` survives unchanged;
BIDS marks a missing value with ``n/a``, which is the only missing marker
(with an empty cell) recognised here. Deciding the group labels and typing
the covariates of the rows read is done by :mod:`rsxai.cohort.participant_values`
(``resolve_groups`` and ``type_covariates`` stay importable from here).
"""

from __future__ import annotations

import errno
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# Re-exported: rsxai.cohort.map_stack imports them from here.
from rsxai.cohort.participant_values import resolve_groups as resolve_groups
from rsxai.cohort.participant_values import type_covariates as type_covariates
from rsxai.exceptions import InputError
from rsxai.tables import is_missing, read_table

# Manifest columns that describe a run rather than the participant.
PATH_COLUMNS = ("bold", "confounds", "mask", "tr")
_BIDS_LABEL = re.compile(r"[A-Za-z0-9]+")


def strip_subject_prefix(value: object) -> str:
    """``"sub-01"`` or ``"01"`` (or 1) -> ``"01"``; surrounding spaces are dropped."""
    return str(value).strip().removeprefix("sub-")


def is_bids_label(label: str) -> bool:
    """True for a BIDS label: letters and digits only (no ``_``, ``-``, ``/``, ``.`` or space)."""
    return _BIDS_LABEL.fullmatch(label) is not None


def label_problem(label: str, where: str) -> str | None:
    """A one-line message when ``label`` is not a BIDS label, else None."""
    if is_bids_label(label):
        return None
    return (
        f"{where}: subject label {label!r} is not a BIDS label (letters and digits only after "
        "'sub-'; no '_', '-', '.', '/' or spaces). Rename the subject."
    )


def normalise_labels(labels: str | Iterable[object] | None, *, option: str) -> list[str]:
    """Labels from ``participant_label`` / ``exclude_label``, without ``sub-``.

    Parameters
    ----------
    labels : str, iterable or None
        One label or several, each ``"sub-01"`` or ``"01"``.
    option : str
        The option's name, for messages.

    Raises
    ------
    InputError
        Listing every label that is not a BIDS label.
    """
    if labels is None:
        return []
    if isinstance(labels, (str, int)):
        labels = [labels]
    normalised = [strip_subject_prefix(label) for label in labels]
    problems = [label_problem(label, option) for label in normalised]
    if any(problems):
        raise InputError([problem for problem in problems if problem])
    return list(dict.fromkeys(normalised))


def _require_columns(table: pd.DataFrame, path: Path, required: Iterable[str], fix: str) -> None:
    absent = [column for column in required if column not in table.columns]
    if absent:
        raise InputError(
            f"{path}: no column {', '.join(map(repr, absent))} (columns found: "
            f"{', '.join(table.columns)}). {fix}"
        )


@dataclass(frozen=True)
class ParticipantRow:
    """One subject's row: group and other values as text (None when missing)."""

    label: str
    group: str | None
    values: Mapping[str, str | None] = field(default_factory=dict)
    bold: Path | None = None
    confounds: Path | None = None
    mask: Path | None = None
    tr: float | None = None


def read_rows(
    table: pd.DataFrame, path: Path, id_column: str, group_column: str, skip: set[str]
) -> tuple[dict[str, tuple[int, ParticipantRow]], list[str], list[str]]:
    covariates = [c for c in table.columns if c not in skip | {id_column, group_column}]
    rows: dict[str, tuple[int, ParticipantRow]] = {}
    problems = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        label = strip_subject_prefix(record[id_column])
        problem = label_problem(label, f"{path} line {line}")
        if problem:
            problems.append(problem)
            continue
        if label in rows:
            problems.append(
                f"{path} line {line}: subject sub-{label} already appears on line "
                f"{rows[label][0]}. Keep one row per subject."
            )
            continue
        group = record[group_column].strip()
        values = {c: (None if is_missing(record[c]) else record[c].strip()) for c in covariates}
        rows[label] = (line, ParticipantRow(label, None if is_missing(group) else group, values))
    return rows, covariates, problems


def read_participants(
    path: Path, *, group_column: str = "group"
) -> tuple[dict[str, ParticipantRow], list[str], list[str]]:
    """Read a BIDS participants.tsv.

    Returns
    -------
    rows : dict of str to ParticipantRow
        Label (without ``sub-``) to its row, in file order.
    covariate_columns : list of str
        Every column but participant_id and the group column.
    problems : list of str
        Rows with an unsafe or duplicate participant_id (left out of ``rows``).

    Raises
    ------
    InputError
        When the file is unreadable or lacks participant_id or the group column.
    """
    table = read_table(path, delimiter="\t")
    _require_columns(
        table,
        path,
        ["participant_id", group_column],
        f"participants.tsv needs participant_id and the group column (group_column="
        f"{group_column!r}); pass --group-column to name another column.",
    )
    rows, covariates, problems = read_rows(table, path, "participant_id", group_column, set())
    return {label: row for label, (_, row) in rows.items()}, covariates, problems


def _manifest_path(value: str, folder: Path) -> tuple[Path | None, str | None]:
    """The path in a manifest cell (None when empty), and why it cannot be used (or None)."""
    if is_missing(value):
        return None, None
    if any(ord(character) < 32 for character in value.strip()):
        # Usually a quote left open, which makes one cell of several lines.
        return Path(value.strip()), "it holds a line break or another control character"
    path = Path(value.strip())
    try:
        path = path.expanduser()
    except RuntimeError as error:  # "~name" of an unknown user
        return path, str(error)
    path = path if path.is_absolute() else folder / path
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass  # a missing file is reported by Cohort.validate, with the other file checks
    except (OSError, ValueError) as error:  # a name too long, a NUL character...
        if getattr(error, "errno", None) == errno.ELOOP:
            return path, None  # a symbolic link loop too (file_checks names it)
        return path, getattr(error, "strerror", None) or str(error)
    return path, None


def read_manifest(
    path: Path, *, group_column: str = "group"
) -> tuple[dict[str, ParticipantRow], list[str], list[str]]:
    """Read a manifest: ``subject, bold, group[, confounds, mask, tr, <covariates>...]``.

    Relative paths are taken relative to the manifest's folder; ``group_column``
    names the group column when it is not ``group``.

    Returns
    -------
    rows : dict of str to ParticipantRow
        Label to row (with ``bold``, ``confounds``, ``mask``, ``tr`` set), in file order.
    covariate_columns : list of str
    problems : list of str
        One line per bad row (unsafe or duplicate subject, no bold path, bad TR).
    """
    path = Path(path)
    table = read_table(path)
    _require_columns(
        table,
        path,
        ["subject", "bold", group_column],
        f"A manifest needs the columns subject, bold and {group_column} (optional: confounds, "
        "mask, tr, then covariates).",
    )
    for optional in ("confounds", "mask", "tr"):
        if optional not in table.columns:
            table[optional] = ""
    rows, covariates, problems = read_rows(table, path, "subject", group_column, set(PATH_COLUMNS))
    records = table.to_dict("records")
    manifest_rows = {}
    for label, (line, row) in rows.items():
        record = records[line - 2]
        files, unusable = {}, []
        for column in ("bold", "confounds", "mask"):
            files[column], reason = _manifest_path(record[column], path.parent)
            if reason:
                shown = record[column].strip()
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                unusable.append(
                    f"{path} line {line}: the {column} path {shown!r} cannot be used ({reason}). "
                    "Correct the cell."
                )
        if unusable:
            problems.extend(unusable)
            continue
        if files["bold"] is None:
            problems.append(f"{path} line {line}: sub-{label} has no bold path. Fill the cell.")
            continue
        tr = None
        if not is_missing(record["tr"]):
            try:
                tr = float(record["tr"])
            except ValueError:
                tr = math.nan
            if not 0 < tr < 100:
                problems.append(
                    f"{path} line {line}: tr {record['tr']!r} is not a TR in seconds (e.g. 2.0). "
                    "Correct it or leave it empty to read the TR from the image."
                )
                continue
        manifest_rows[label] = ParticipantRow(
            label,
            row.group,
            row.values,
            bold=files["bold"],
            confounds=files["confounds"],
            mask=files["mask"],
            tr=tr,
        )
    return manifest_rows, covariates, problems
