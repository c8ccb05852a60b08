"""The records of a cohort: one participant (:class:`Subject`) and one BOLD run (:class:`Run`).

Frozen dataclasses holding what was found for each participant: label,
group, covariates, and per run the BOLD series with its mask, confounds, TR
and length. :class:`rsxai.cohort.Cohort` holds a tuple of them; the readers
(:mod:`rsxai.cohort.sources`) create them and the checks
(:mod:`rsxai.cohort.checks`) read them. They are apart from
:mod:`rsxai.cohort` because they are plain records with no reading or
checking logic: the readers and the checks use them without needing the
:class:`~rsxai.cohort.Cohort` class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = ["Run", "Subject"]


def _optional_path(value: str | os.PathLike | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class Run:
    """One preprocessed BOLD series and its companions.

    Parameters
    ----------
    bold : Path
        4D BOLD series in MNI space.
    mask : Path or None
        Its brain mask, on the same grid.
    confounds : Path or None
        Its confounds table (one row per volume).
    tr : float or None
        Repetition time (s): from the sidecar (or manifest) at discovery, from
        the NIfTI header after :meth:`rsxai.cohort.Cohort.validate` when none was given.
    n_volumes : int or None
        Number of volumes, filled in by :meth:`rsxai.cohort.Cohort.validate`.
    session, run : str or None
        BIDS session and run labels, when the file names have them.
    """

    bold: Path
    mask: Path | None
    confounds: Path | None
    tr: float | None
    n_volumes: int | None
    session: str | None = None
    run: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "bold", Path(self.bold))
        object.__setattr__(self, "mask", _optional_path(self.mask))
        object.__setattr__(self, "confounds", _optional_path(self.confounds))

    def describe(self) -> str:
        """``"ses-1 run-2"``, or ``""`` for a run without session or run label."""
        parts = [f"ses-{self.session}"] if self.session is not None else []
        if self.run is not None:
            parts.append(f"run-{self.run}")
        return " ".join(parts)


@dataclass(frozen=True)
class Subject:
    """One participant: label, group and runs.

    Parameters
    ----------
    label : str
        BIDS label, without ``sub-``.
    group : str
        Value of the group column.
    runs : tuple of Run
        The runs used, in (session, run) order; one with ``multi_run="first"``.
    covariates : mapping of str to object
        Other participant columns: float (NaN when missing) or str (None when missing).
    """

    label: str
    group: str
    runs: tuple[Run, ...]
    covariates: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "covariates", MappingProxyType(dict(self.covariates)))
