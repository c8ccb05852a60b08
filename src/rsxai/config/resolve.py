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
from pathlib import Path
from typing import Any

import tomli_w

from rsxai.config.options import OPTIONS, STAGES, Option
from rsxai.exceptions import InputError

__all__ = ["OPTIONS", "STAGES", "Config", "Option", "load_config_file", "resolve_config"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


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
