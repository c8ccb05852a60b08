"""Every option of a run, defined once: its TOML key, default, command-line flag and help.

The configuration file (TOML), the command line and the resolved
``OUTPUT_DIR/rsxai.toml`` are all generated from :data:`OPTIONS`, so an option
cannot exist in one place and be missing in another. Precedence: built-in
defaults, then the configuration file, then command-line flags.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from rsxai.exceptions import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

STAGES: tuple[str, ...] = (
    "preprocess",
    "ica",
    "dual_regression",
    "stats",
    "classify",
    "explain",
    "report",
)


@dataclass(frozen=True)
class Option:
    """One configurable option.

    Parameters
    ----------
    section, name : str
        TOML table and key (``[section] name = …``).
    default : object
        Built-in default; its type is the option's type (a list means a list of str).
    help : str
        One sentence for ``--help`` and the documentation.
    flag : str or None
        Command-line flag; None for options set only in the configuration file.
    choices : tuple or None
        Allowed values.
    nullable : bool
        Whether "" / None ("not set") is allowed besides the default's type.
    """

    section: str
    name: str
    default: Any
    help: str
    flag: str | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None

    @property
    def key(self) -> str:
        """``section.name``."""
        return f"{self.section}.{self.name}"

    def check(self, value: Any, origin: str) -> Any:
        """Return ``value`` converted to the option's type or raise a message."""
        if value is None or value == "":
            if self.nullable:
                return None
            raise InputError(
                f"{origin}: option {self.key} must be set; its default is {self.default!r}."
            )
        kind = type(self.default) if self.default is not None else str
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            if kind is list:
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, (list, tuple)):
                    raise TypeError
                value = [str(v) for v in value]
            elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            elif not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
                raise TypeError
        except TypeError:
            raise InputError(
                f"{origin}: option {self.key} must be {kind.__name__}; got {value!r}."
            ) from None
        if self.minimum is not None and value < self.minimum:
            raise InputError(
                f"{origin}: option {self.key} must be at least {self.minimum}; got {value!r}."
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise InputError(
                f"{origin}: option {self.key} must be one of {allowed}; got {value!r}."
            )
        return value


OPTIONS: tuple[Option, ...] = (
    # --- input: which data, which subjects, which labels ---------------------------------------
    Option(
        "input",
        "derivatives",
        None,
        "fMRIPrep derivatives folder, when not in INPUT/derivatives/fmriprep.",
        flag="--derivatives",
        nullable=True,
    ),
    Option("input", "task", "rest", "BIDS task label of the resting-state runs.", flag="--task"),
    Option(
        "input",
        "space",
        "MNI152NLin2009cAsym",
        "BIDS space of the preprocessed BOLD.",
        flag="--space",
    ),
    Option(
        "input",
        "session",
        None,
        "Only this session (default: all).",
        flag="--session",
        nullable=True,
    ),
    Option("input", "run", None, "Only this run (default: all).", flag="--run", nullable=True),
    Option(
        "input",
        "multi_run",
        "first",
        "Several runs or sessions per subject: keep the first or concatenate all.",
        flag="--multi-run",
        choices=("first", "concatenate"),
    ),
    Option(
        "input",
        "participant_label",
        [],
        "Only these participants (labels with or without 'sub-').",
        flag="--participant-label",
    ),
    Option("input", "exclude_label", [], "Leave out these participants.", flag="--exclude-label"),
    Option(
        "input",
        "group_column",
        "group",
        "participants.tsv column holding the group.",
        flag="--group-column",
    ),
    Option(
        "input",
        "positive_label",
        None,
        "Group value of the patients (default: the group "
        "that is not a usual control name such as HC or control).",
        flag="--positive-label",
        nullable=True,
    ),
    Option(
        "input",
        "min_volumes",
        50,
        "Fewest volumes a subject may have.",
        flag="--min-volumes",
        minimum=3,
    ),
    Option(
        "input",
        "min_per_group",
        5,
        "Fewest subjects a group may have.",
        flag="--min-per-group",
        minimum=1,
    ),
    Option(
        "input",
        "check_data",
        True,
        "Read every image's data before any work (NaN, Inf, "
        "all-zero, truncated files), not only the headers.",
        flag="--check-data",
    ),
    # --- run: how the run is carried out ---------------------------------------------------------
    Option(
        "run",
        "random_seed",
        0,
        "Seed of every random choice (same seed, same outputs).",
        flag="--random-seed",
    ),
    Option(
        "run",
        "n_jobs",
        1,
        "Parallel worker processes on this machine (-1: all cores).",
        flag="--n-jobs",
        minimum=-1,
    ),
    Option(
        "run", "stop_after", "report", "Last stage to run.", flag="--stop-after", choices=STAGES
    ),
)

OPTIONS_BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(option.section for option in OPTIONS))


class Section(Mapping):
    """The resolved options of one TOML table; read as attributes or as a mapping."""

    def __init__(self, name: str, values: Mapping[str, Any]):
        self._name = name
        self._values = dict(values)

    def __getattr__(self, item: str) -> Any:
        try:
            return self._values[item]
        except KeyError:
            raise AttributeError(f"[{self._name}] has no option {item!r}") from None

    def __getitem__(self, item: str) -> Any:
        return self._values[item]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {self._values!r})"


class Config:
    """A fully resolved configuration: one :class:`Section` per TOML table.

    Build it with :func:`resolve_config`; ``config.input.task`` reads an option.
    """

    def __init__(self, values: Mapping[str, Mapping[str, Any]]):
        self._sections = {name: Section(name, values.get(name, {})) for name in SECTIONS}

    def __getattr__(self, item: str) -> Section:
        try:
            return self._sections[item]
        except KeyError:
            raise AttributeError(f"no configuration section {item!r}") from None

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict, ``None`` values left out (TOML has no null)."""
        return {
            name: {k: v for k, v in section.items() if v is not None}
            for name, section in self._sections.items()
        }

    def to_toml(self) -> str:
        """The configuration as TOML text, loadable with :func:`load_config_file`."""
        header = (
            "# rsxai configuration, fully resolved (defaults < configuration file < flags).\n"
            "# Options left out are not set. Give it back with --config to repeat the run.\n"
        )
        return header + tomli_w.dumps(self.to_dict())

    def fingerprint(self, *sections: str) -> str:
        """Stable hash of some sections, used to decide whether a stage output is reusable."""
        chosen = {name: dict(self._sections[name]) for name in sections}
        text = json.dumps(chosen, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check a TOML configuration file.

    Returns
    -------
    values : dict
        ``{section: {name: value}}`` for the options the file sets.

    Raises
    ------
    InputError
        Listing every unknown section or option, every wrong type or value.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{path}: configuration file not found. Check the --config path."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the configuration file ({error}).") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML ({error}). Fix the syntax.") from None
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for section, table in raw.items():
        if section not in SECTIONS or not isinstance(table, dict):
            problems.append(
                f"{path}: unknown section [{section}]; known sections: {', '.join(SECTIONS)}."
            )
            continue
        for name, value in table.items():
            option = OPTIONS_BY_KEY.get(f"{section}.{name}")
            if option is None:
                known = ", ".join(o.name for o in OPTIONS if o.section == section)
                problems.append(f"{path}: unknown option {name!r} in [{section}]; known: {known}.")
                continue
            try:
                values.setdefault(section, {})[name] = option.check(value, str(path))
            except InputError as error:
                problems.extend(error.problems)
    if problems:
        raise InputError(problems)
    return values


def resolve_config(
    file_values: Mapping[str, Mapping[str, Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the configuration file, then flags.

    Parameters
    ----------
    file_values : mapping, optional
        ``{section: {name: value}}`` from :func:`load_config_file`.
    overrides : mapping, optional
        ``{"section.name": value}`` from the command line or Python callers.
    """
    values = {s: {o.name: o.default for o in OPTIONS if o.section == s} for s in SECTIONS}
    for section, table in (file_values or {}).items():
        values[section].update(table)
    problems: list[str] = []
    for key, value in (overrides or {}).items():
        option = OPTIONS_BY_KEY.get(key)
        if option is None:
            problems.append(f"unknown option {key!r}; known: {', '.join(OPTIONS_BY_KEY)}.")
            continue
        try:
            values[option.section][option.name] = option.check(value, option.flag or key)
        except InputError as error:
            problems.extend(error.problems)
    if problems:
        raise InputError(problems)
    return Config(values)
