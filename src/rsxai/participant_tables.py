"""Participant tables: participants.tsv and manifests, group labels and covariates.

Both tables are read as text (pandas with ``dtype=str`` and no NA guessing)
so that a label such as ``007`` or a group called ``NA`` survives unchanged;
BIDS marks a missing value with ``n/a``, which is the only missing marker
(with an empty cell) recognised here.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rsxai.exceptions import InputError

# Group names taken to mean "healthy controls" when positive_label is not given.
CONTROL_NAMES = frozenset({"hc", "control", "controls", "ctrl", "con", "healthy", "nc", "hv"})
MISSING_VALUES = frozenset({"n/a", ""})
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


def _missing(value: str) -> bool:
    return value.strip().lower() in MISSING_VALUES


def read_table(path: Path, *, delimiter: str | None = None) -> pd.DataFrame:
    """A delimited text table as strings, header stripped of spaces.

    The delimiter is a tab for ``.tsv``, a comma for ``.csv``, otherwise sniffed.

    Raises
    ------
    InputError
        When the file cannot be read or has no rows.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())
    try:
        if delimiter is None:
            with open(path, encoding="utf-8-sig", newline="") as stream:
                delimiter = csv.Sniffer().sniff(stream.read(4096), delimiters=",\t;").delimiter
        table = pd.read_csv(
            path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
    except (OSError, UnicodeDecodeError, csv.Error, pd.errors.ParserError) as error:
        raise InputError(
            f"{path}: cannot read this table ({error}). Give a UTF-8 tab- or comma-separated "
            "file with a header row."
        ) from error
    except pd.errors.EmptyDataError as error:
        raise InputError(
            f"{path}: the table is empty. Give a header row and one row per subject."
        ) from error
    table.columns = [str(column).strip() for column in table.columns]
    if table.empty:
        raise InputError(f"{path}: the table has a header but no rows. Add one row per subject.")
    return table


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


def _rows(
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
        values = {c: (None if _missing(record[c]) else record[c].strip()) for c in covariates}
        rows[label] = (line, ParticipantRow(label, None if _missing(group) else group, values))
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
    rows, covariates, problems = _rows(table, path, "participant_id", group_column, set())
    return {label: row for label, (_, row) in rows.items()}, covariates, problems


def _manifest_path(value: str, folder: Path) -> Path | None:
    if _missing(value):
        return None
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else folder / path


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
    rows, covariates, problems = _rows(table, path, "subject", group_column, set(PATH_COLUMNS))
    records = table.to_dict("records")
    manifest_rows = {}
    for label, (line, row) in rows.items():
        record = records[line - 2]
        bold = _manifest_path(record["bold"], path.parent)
        if bold is None:
            problems.append(f"{path} line {line}: sub-{label} has no bold path. Fill the cell.")
            continue
        tr = None
        if not _missing(record["tr"]):
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
            bold=bold,
            confounds=_manifest_path(record["confounds"], path.parent),
            mask=_manifest_path(record["mask"], path.parent),
            tr=tr,
        )
    return manifest_rows, covariates, problems


def _is_control(group: str) -> bool:
    return group.strip().lower() in CONTROL_NAMES


def resolve_groups(
    groups: Mapping[str, str],
    positive_label: object | None,
    *,
    source: str,
    group_column: str = "group",
) -> tuple[str, str | None, list[str]]:
    """Decide the positive (patient) and negative (control) group labels.

    Parameters
    ----------
    groups : mapping of str to str
        Subject label to group value, for the subjects kept.
    positive_label : object or None
        The patient group's value; None guesses it when there are exactly two
        groups and one of them has a usual control name (hc, control, ...).
    source : str
        The table's path, for messages.
    group_column : str
        The group column's name, for messages.

    Returns
    -------
    positive_label : str
    negative_label : str or None
        None when only one group is present (``problems`` says so).
    problems : list of str
        One line per subject whose group is neither label, or for a single group.

    Raises
    ------
    InputError
        When the positive label is not given and cannot be guessed, or is not a
        value of the group column.
    """
    values = sorted(set(groups.values()))
    found = ", ".join(
        f"{value!r} ({sum(g == value for g in groups.values())})" for value in values
    )
    where = f"{source} column {group_column!r}"
    if positive_label is None:
        controls = [value for value in values if _is_control(value)]
        if len(values) != 2 or len(controls) != 1:
            raise InputError(
                f"{where}: cannot tell which group is the patient group (groups found: "
                f"{found or 'none'}). Pass --positive-label (Python: positive_label=) with the "
                "patient group's value."
            )
        positive = next(value for value in values if value != controls[0])
    else:
        positive = str(positive_label).strip()
        if positive not in values:
            raise InputError(
                f"positive_label: {positive!r} is not a value of {where} (groups found: "
                f"{found or 'none'}). Pass one of these values (case matters)."
            )
    others = [value for value in values if value != positive]
    if not others:
        return (
            positive,
            None,
            [
                f"{where}: every subject is in group {positive!r}; rsxai compares two groups. "
                "Add the control subjects or check the filters (participant_label, task, space)."
            ],
        )
    if len(others) == 1:
        return positive, others[0], []
    controls = [value for value in others if _is_control(value)]
    if len(controls) != 1:
        return (
            positive,
            None,
            [
                f"{where}: {len(values)} groups ({found}) and no single control group among them; "
                "rsxai compares two groups. Keep two groups (exclude_label) or relabel the column."
            ],
        )
    negative = controls[0]
    problems = [
        f"sub-{label}: group {group!r} in {where} is neither the positive label {positive!r} nor "
        f"the control label {negative!r}; rsxai compares exactly two groups. Exclude the subject "
        f"(--exclude-label {label}) or correct its group."
        for label, group in groups.items()
        if group not in (positive, negative)
    ]
    return positive, negative, problems


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def type_covariates(
    rows: Mapping[str, Mapping[str, str | None]], columns: Iterable[str], *, source: str
) -> tuple[dict[str, dict[str, object]], list[str]]:
    """Turn text covariates into floats (numeric columns) or strings (the others).

    Parameters
    ----------
    rows : mapping of str to mapping of str to (str or None)
        Subject label to its raw values (None = missing), for the subjects kept.
    columns : iterable of str
        Covariate columns, in table order.
    source : str
        The table's path, for messages.

    Returns
    -------
    covariates : dict of str to dict of str to object
        Subject label to ``{column: value}``; float (NaN when missing) for a
        column whose every given value is a finite number, else str (None when
        missing).
    warnings : list of str
        One per column with missing values (naming the subjects), and one per
        column that mixes numbers with text.
    """
    covariates: dict[str, dict[str, object]] = {label: {} for label in rows}
    warnings = []
    for column in columns:
        given = {label: values[column] for label, values in rows.items()}
        missing = [label for label, value in given.items() if value is None]
        numbers = {label: _number(value) for label, value in given.items() if value is not None}
        numeric = all(number is not None for number in numbers.values())
        if not numeric and any(number is not None for number in numbers.values()):
            text = {label: given[label] for label, number in numbers.items() if number is None}
            warnings.append(
                f"{source}: column {column!r} mixes numbers and text ("
                + ", ".join(f"sub-{label}: {value!r}" for label, value in list(text.items())[:5])
                + "); it is used as a categorical covariate. Write n/a for missing values "
                "if it is meant to be numeric."
            )
        for label, value in given.items():
            if numeric:
                covariates[label][column] = math.nan if value is None else numbers[label]
            else:
                covariates[label][column] = value
        if missing:
            warnings.append(
                f"{source}: column {column!r} has no value (n/a or empty) for "
                f"{len(missing)} subject(s): {', '.join('sub-' + label for label in missing)}; "
                "they are kept, with a missing value for this covariate."
            )
    return covariates, warnings
