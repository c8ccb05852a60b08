"""What an option is: its section, name, default, flag, help and checks.

The registry of every option lives in :mod:`rsxai.config.options`; this module only
defines the type, so that registry modules can share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rsxai.exceptions import InputError

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
    minimum : float or None
        Smallest allowed number.
    above : float or None
        Bound every allowed number must exceed (an exclusive minimum).
    kind : type or None
        The value's type when the default does not tell it (a None default).
    also : tuple
        Literal values accepted besides the type (e.g. ``("auto",)`` for a count).
    """

    section: str
    name: str
    default: Any
    help: str
    flag: str | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None
    above: float | None = None
    kind: type | None = None
    also: tuple[Any, ...] = ()

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
        if value in self.also:
            return value
        kind = self.kind or (type(self.default) if self.default is not None else str)
        if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)  # from a flag that also accepts words, e.g. "auto"
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
            expected = " or ".join([kind.__name__, *map(repr, self.also)])
            raise InputError(
                f"{origin}: option {self.key} must be {expected}; got {value!r}."
            ) from None
        if kind is float and not math.isfinite(value):
            raise InputError(
                f"{origin}: option {self.key} must be a finite number; got {value!r}."
            )
        if self.above is not None and not value > self.above:
            raise InputError(
                f"{origin}: option {self.key} must be above {self.above}; got {value!r}."
            )
        if self.minimum is not None and value < self.minimum:
            raise InputError(
                f"{origin}: option {self.key} must be at least {self.minimum}; got {value!r}."
            )
        items = value if isinstance(value, list) else [value]
        if self.choices is not None and any(item not in self.choices for item in items):
            allowed = ", ".join(repr(c) for c in self.choices)
            raise InputError(
                f"{origin}: option {self.key} must be one of {allowed}; got {value!r}."
            )
        return value
