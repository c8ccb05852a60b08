"""TSV/CSV tables read as BIDS means them, with the layout problems pandas hides made errors.

Used by the cohort readers (participants.tsv, manifests) and by the confound
loading of preprocessing, so it sits below both.
"""

from __future__ import annotations

import csv
import errno
import os
import stat
import warnings
from pathlib import Path

import pandas as pd

from rsxai.exceptions import InputError

MISSING_VALUES = frozenset({"n/a", ""})


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING_VALUES


_FILE_TYPES = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a usable input file, as words that follow the path; None if usable.

    One rule for every input file (BOLD, mask, confounds, manifest,
    participants.tsv, sidecar): it must exist, be a regular file (after
    following symbolic links), be readable by this user and not be empty.

    Returns
    -------
    str or None
        E.g. ``"does not exist"``, ``"is a directory, not a file"``, ``"is not a
        regular file (a character device)"``, ``"is a symbolic link loop"``,
        ``"cannot be read (permission denied)"``, ``"is empty (0 bytes)"``.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "does not exist" if not os.path.islink(path) else "is a broken symbolic link"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop (it resolves to itself)"
        if isinstance(error, PermissionError):
            return "cannot be reached (permission denied on a folder above it)"
        return f"cannot be used ({error.strerror or type(error).__name__})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_TYPES if test(info.st_mode)), "special file")
        return f"is not a regular file ({kind})"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as error:
        return f"cannot be read ({error.strerror or type(error).__name__})"
    if info.st_size == 0:
        return "is empty (0 bytes)"
    return None


def read_table(path: Path, *, delimiter: str | None = None) -> pd.DataFrame:
    """A delimited text table as strings, header stripped of spaces.

    The delimiter is a tab for ``.tsv``, a comma for ``.csv``, otherwise sniffed.

    Raises
    ------
    InputError
        When the file is not usable (:func:`file_problem`), cannot be read or has no rows.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path} {problem}. Give a tab- or comma-separated table.")
    if delimiter is None:
        delimiter = {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())
    try:
        if delimiter is None:
            with open(path, encoding="utf-8-sig", newline="") as stream:
                delimiter = csv.Sniffer().sniff(stream.read(4096), delimiters=",\t;").delimiter
        header, problems = table_layout(path, delimiter)
        if problems:
            raise InputError(problems)
        with warnings.catch_warnings():
            # index_col=False: fields past the header (checked empty above: trailing
            # delimiters) are dropped rather than taken as an index that shifts every value.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            table = pd.read_csv(
                path,
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
                index_col=False,
            )
    except (OSError, UnicodeDecodeError, csv.Error, pd.errors.ParserError) as error:
        raise InputError(
            f"{path}: cannot read this table ({' '.join(str(error).split())}). Give a UTF-8 "
            "tab- or comma-separated file with a header row."
        ) from error
    except pd.errors.EmptyDataError as error:
        raise InputError(
            f"{path}: the table is empty. Give a header row and one row per subject."
        ) from error
    if len(header) == len(table.columns):
        # A column without a name (a trailing delimiter on the header line) holding no
        # value is layout, not data; pandas would call it "Unnamed: <i>".
        unnamed = [
            column
            for name, column in zip(header, table.columns, strict=True)
            if not name and not table[column].str.strip().any()
        ]
        table = table.drop(columns=unnamed)
    table.columns = [str(column).strip() for column in table.columns]
    if table.empty:
        raise InputError(f"{path}: the table has a header but no rows. Add one row per subject.")
    return table


def table_layout(path: Path, delimiter: str) -> tuple[list[str], list[str]]:
    """The header's names, and problems of layout that pandas would not report.

    Returns the stripped header names and one message per problem: repeated
    column names, nameless columns holding values, rows with more non-empty
    fields than the header.

    pandas renames a repeated column (``group.1``) and, when the rows have
    more fields than the header, silently takes the first fields as an index
    so that every value moves one column over.
    """
    with open(path, encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream, delimiter=delimiter)
        rows = [(reader.line_num, fields) for fields in reader if fields]
    if not rows:
        return [], []
    header = [name.strip() for name in rows[0][1]]
    problems = []
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        problems.append(
            f"{path}: column(s) {', '.join(map(repr, repeated))} appear more than once in the "
            "header. Keep one column of each name."
        )
    nameless = [
        index + 1
        for index, name in enumerate(header)
        if not name
        and any(len(fields) > index and fields[index].strip() for _, fields in rows[1:])
    ]
    if nameless:
        problems.append(
            f"{path}: column(s) {', '.join(map(str, nameless))} hold values but have no name in "
            "the header. Name them, or delete them."
        )
    long_rows = [
        line
        for line, fields in rows[1:]
        if len(fields) > len(header) and any(field.strip() for field in fields[len(header) :])
    ]
    if long_rows:
        shown = ", ".join(map(str, long_rows[:5])) + (", ..." if len(long_rows) > 5 else "")
        problems.append(
            f"{path} line(s) {shown}: more values than the header has columns "
            f"({len(header)}). Check the delimiter ({delimiter!r}) and quoting, or name the "
            "extra columns in the header."
        )
    return header, problems
