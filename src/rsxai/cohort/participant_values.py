"""What participant table values mean: the patient and control groups, and covariate types.

:func:`resolve_groups` decides which value of the group column is the
patient group and which the control group (guessing from usual control names
such as ``HC`` when not told); :func:`type_covariates` makes each covariate
column numeric or categorical. Both work on the text values that
:mod:`rsxai.cohort.participants` read, and are apart from it because they
interpret values rather than read files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from rsxai.exceptions import InputError

__all__ = ["CONTROL_NAMES", "resolve_groups", "type_covariates"]

# Group names taken to mean "healthy controls" when positive_label is not given.
CONTROL_NAMES = frozenset({"hc", "control", "controls", "ctrl", "con", "healthy", "nc", "hv"})


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
