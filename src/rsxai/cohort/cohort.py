"""The cohort: who is studied, in which group, from which files; checked before any work.

A :class:`Cohort` is built from a BIDS dataset with fMRIPrep derivatives
(:meth:`Cohort.from_bids`) or from a manifest table
(:meth:`Cohort.from_manifest`); :meth:`Cohort.validate` then opens every
file and raises one :class:`~rsxai.exceptions.InputError` listing every
problem found, one line each, so that a study is fixed in one pass rather than
one failure at a time. The readers are in :mod:`rsxai.cohort.sources`, the
checks in :mod:`rsxai.cohort.checks`. Its records, :class:`~rsxai.cohort.subjects.Subject`
and :class:`~rsxai.cohort.subjects.Run`, are defined in
:mod:`rsxai.cohort.subjects` (and importable from here too).

Examples
--------
>>> cohort = Cohort.from_bids("ds000001", positive_label="ALS").validate()  # doctest: +SKIP
>>> cohort.group_counts, cohort.tr  # doctest: +SKIP
({'ALS': 30, 'HC': 30}, 2.0)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from rsxai.cohort.checks import validated_subjects
from rsxai.cohort.file_checks import TR_TOLERANCE
from rsxai.cohort.sources import bids_records, manifest_options, manifest_records
from rsxai.cohort.subjects import Run, Subject
from rsxai.exceptions import InputError
from rsxai.tables import file_problem

# Run and Subject (rsxai.cohort.subjects) are re-exported: a cohort is built of them.
__all__ = ["MULTI_RUN_CHOICES", "Cohort", "Run", "Subject"]

MULTI_RUN_CHOICES = ("first", "concatenate")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


class Cohort:
    """Two groups of subjects with their BOLD series, labels and covariates.

    Parameters
    ----------
    subjects : iterable of Subject
    positive_label : str
        Group value of the patients (``y == 1``).
    group_column : str, default="group"
        Name of the group column, for messages and outputs.
    excluded : iterable of (str, str)
        Participants left out, with the reason.
    source : str
        Where the cohort was read from.
    warnings : iterable of str
        Warnings met so far. They are collected here, not emitted, so that the
        caller (the command line logs them) shows each exactly once.
    """

    def __init__(
        self,
        subjects: Iterable[Subject],
        *,
        positive_label: str,
        group_column: str = "group",
        excluded: Iterable[tuple[str, str]] = (),
        source: str = "",
        warnings: Iterable[str] = (),
    ):
        self._subjects = tuple(subjects)
        self.positive_label = str(positive_label)
        self.group_column = group_column
        self._excluded = tuple((str(label), str(reason)) for label, reason in excluded)
        self.source = str(source)
        self._warnings = tuple(dict.fromkeys(warnings))

    # ----------------------------------------------------------------- building
    @classmethod
    def from_bids(
        cls,
        root: str | os.PathLike,
        *,
        derivatives: str | os.PathLike | None = None,
        task: str | None = "rest",
        space: str | None = "MNI152NLin2009cAsym",
        session: str | None = None,
        run: str | int | None = None,
        multi_run: str = "first",
        group_column: str = "group",
        positive_label: str | None = None,
        participant_label: str | Iterable[str] | None = None,
        exclude_label: str | Iterable[str] | None = None,
    ) -> Cohort:
        """Read a BIDS dataset's fMRIPrep derivatives and its participants.tsv.

        Parameters
        ----------
        root : path-like
            BIDS root (derivatives in ``derivatives/fmriprep``), a derivatives
            folder, or the fMRIPrep output folder itself.
        derivatives : path-like, optional
            The fMRIPrep output folder, when elsewhere.
        task : str or None, default="rest"
            BIDS task label; None keeps every task.
        space : str or None, default="MNI152NLin2009cAsym"
            Output space, optionally with a resolution: ``"MNI152NLin2009cAsym:res-2"``.
        session, run : str or None
            Keep only this session / run.
        multi_run : {"first", "concatenate"}, default="first"
            With several matching runs per subject, keep the first in (session,
            run) order, or all of them (to be concatenated).
        group_column : str, default="group"
            participants.tsv column holding the group.
        positive_label : str, optional
            Group value of the patients; guessed when there are two groups and
            one of them has a usual control name (HC, control, ...).
        participant_label, exclude_label : str or iterable of str, optional
            Only these participants / not these (``"sub-01"`` or ``"01"``).

        Raises
        ------
        InputError
            Listing every problem found in the tables and file names.
        """
        if multi_run not in MULTI_RUN_CHOICES:
            raise InputError(
                f"multi_run must be one of {', '.join(MULTI_RUN_CHOICES)}; got {multi_run!r}."
            )
        records = bids_records(
            Path(root),
            derivatives=derivatives,
            task=task,
            space=space,
            session=session,
            run=run,
            multi_run=multi_run,
            group_column=group_column,
            positive_label=positive_label,
            participant_label=participant_label,
            exclude_label=exclude_label,
        )
        return cls(**records)

    @classmethod
    def from_manifest(
        cls,
        path: str | os.PathLike,
        *,
        positive_label: str | None = None,
        participant_label: str | Iterable[str] | None = None,
        exclude_label: str | Iterable[str] | None = None,
        group_column: str = "group",
    ) -> Cohort:
        """Read a manifest: ``subject, bold, group[, confounds, mask, tr, <covariates>...]``.

        The delimiter comes from the extension (``.tsv``, ``.csv``) or is sniffed;
        relative paths are relative to the manifest's folder; one row per subject.
        When the ``tr`` cell is empty, the BOLD's same-name JSON sidecar is read.

        Raises
        ------
        InputError
            Listing every problem found in the table.
        """
        records = manifest_records(
            Path(path),
            positive_label=positive_label,
            participant_label=participant_label,
            exclude_label=exclude_label,
            group_column=group_column,
        )
        return cls(**records)

    @classmethod
    def from_path(cls, path: str | os.PathLike, **options) -> Cohort:
        """Read a folder with :meth:`from_bids`, a table file with :meth:`from_manifest`.

        Options that only concern BIDS folders are accepted for a manifest when
        left at their defaults (so one set of options serves both); otherwise
        they are an error.
        """
        path = Path(path)
        if path.is_dir():
            return cls.from_bids(path, **options)
        problem = file_problem(path)
        if problem:
            raise InputError(
                f"{path} {problem}. Give a BIDS dataset, an fMRIPrep derivatives folder or "
                "a manifest TSV/CSV."
            )
        return cls.from_manifest(
            path, **manifest_options(path, options, cls.from_bids, cls.from_manifest)
        )

    # --------------------------------------------------------------- properties
    @property
    def subjects(self) -> tuple[Subject, ...]:
        """The subjects, in label order."""
        return self._subjects

    def __len__(self) -> int:
        return len(self._subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self._subjects)

    def __repr__(self) -> str:
        counts = ", ".join(f"{group}: {n}" for group, n in self.group_counts.items())
        return (
            f"Cohort({self.n_subjects} subjects; {counts}; positive_label={self.positive_label!r})"
        )

    @property
    def labels(self) -> list[str]:
        """Subject labels (without ``sub-``)."""
        return [subject.label for subject in self._subjects]

    @property
    def groups(self) -> list[str]:
        """Group value of each subject."""
        return [subject.group for subject in self._subjects]

    @property
    def y(self) -> np.ndarray:
        """Class of each subject, shape (n_subjects,): 1 for the positive label, else 0."""
        return np.array([group == self.positive_label for group in self.groups], dtype=int)

    def _negative_label_or_none(self) -> str | None:
        others = sorted({group for group in self.groups if group != self.positive_label})
        return others[0] if len(others) == 1 else None

    @property
    def negative_label(self) -> str:
        """Group value of the controls (the one group that is not the positive label)."""
        negative = self._negative_label_or_none()
        if negative is None:
            others = sorted({group for group in self.groups if group != self.positive_label})
            raise ValueError(
                f"The cohort has no single control group (groups other than "
                f"{self.positive_label!r}: {others}); validate() reports why."
            )
        return negative

    @property
    def tr(self) -> float:
        """The TR (s) shared by every run; known once :meth:`validate` has run."""
        trs = [run.tr for subject in self._subjects for run in subject.runs]
        if not trs or any(tr is None for tr in trs):
            raise ValueError("The TR of some runs is not known yet; call validate() first.")
        if max(trs) - min(trs) > TR_TOLERANCE:
            raise ValueError(f"The runs do not share one TR ({min(trs):g} to {max(trs):g} s).")
        return float(np.median(trs))

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return len(self._subjects)

    @property
    def group_counts(self) -> dict[str, int]:
        """Subjects per group: the positive label first."""
        counts = Counter(self.groups)
        order = sorted(counts, key=lambda group: (group != self.positive_label, group))
        return {group: counts[group] for group in order}

    @property
    def covariates(self) -> pd.DataFrame:
        """Covariates, one row per subject (index: labels).

        Columns whose given values are all numbers are float64 (NaN when
        missing); the others are pandas categoricals of strings.
        """
        columns = list(dict.fromkeys(c for s in self._subjects for c in s.covariates))
        frame = pd.DataFrame(index=pd.Index(self.labels, name="participant_id"))
        for column in columns:
            values = [subject.covariates.get(column) for subject in self._subjects]
            values = [None if _is_number(v) and np.isnan(v) else v for v in values]
            if all(_is_number(v) for v in values if v is not None):
                frame[column] = np.array(
                    [np.nan if v is None else float(v) for v in values], dtype=np.float64
                )
            else:
                frame[column] = pd.Categorical([None if v is None else str(v) for v in values])
        return frame

    @property
    def excluded(self) -> list[tuple[str, str]]:
        """Participants left out: (label, reason)."""
        return list(self._excluded)

    @property
    def warnings(self) -> list[str]:
        """Warnings met while reading and validating, one line each."""
        return list(self._warnings)

    def summary(self) -> dict:
        """The cohort for ``summary.json``: size, groups, labels and exclusions."""
        return {
            "n": self.n_subjects,
            "groups": self.group_counts,
            "positive_label": self.positive_label,
            "negative_label": self._negative_label_or_none(),
            "excluded": [{"label": label, "reason": reason} for label, reason in self._excluded],
        }

    # --------------------------------------------------------------- validation
    def validate(
        self,
        *,
        min_volumes: int = 50,
        min_per_group: int = 5,
        check_data: bool = True,
        n_jobs: int = 1,
        progress: bool = False,
        confounds_strategy: dict | None = None,
        high_pass: float | None = None,
        low_pass: float | None = None,
    ) -> Cohort:
        """Check every input; return the cohort with each run's TR and length filled in.

        Header checks (readable NIfTI, 4D, length, MNI placement, TR, mask
        grid, confounds rows) are always done; ``check_data`` also reads every
        image's data (truncated or corrupt stream, NaN, Inf, all zero, empty
        mask), in parallel over runs.

        Parameters
        ----------
        min_volumes : int, default=50
            Fewest volumes a run may have.
        min_per_group : int, default=5
            Fewest subjects a group may have.
        check_data : bool, default=True
        n_jobs : int, default=1
            Runs checked at once (joblib).
        progress : bool, default=False
            Show a progress bar.
        confounds_strategy : dict, optional
            Keyword arguments of :func:`rsxai.preprocess.confounds.load_confounds` that
            preprocessing will use: each confounds table must then hold the
            columns they need, as numbers. None only checks that the tables
            can be read and have one row per volume.
        high_pass, low_pass : float, optional
            Band-pass cut-offs (Hz) preprocessing will apply: runs too short
            for that filter, after censoring, are refused now, not mid-stage.

        Returns
        -------
        Cohort
            A new cohort whose runs have ``tr`` and ``n_volumes`` set and whose
            ``warnings`` add what validation found (different grids, a sidecar
            TR that disagrees with the header).

        Raises
        ------
        InputError
            Listing every problem found, one line each.
        """
        subjects, warnings = validated_subjects(
            self._subjects,
            positive_label=self.positive_label,
            group_column=self.group_column,
            source=self.source,
            min_volumes=min_volumes,
            min_per_group=min_per_group,
            check_data=check_data,
            n_jobs=n_jobs,
            progress=progress,
            confounds_strategy=confounds_strategy,
            high_pass=high_pass,
            low_pass=low_pass,
        )
        return type(self)(
            subjects,
            positive_label=self.positive_label,
            group_column=self.group_column,
            excluded=self._excluded,
            source=self.source,
            warnings=[*self._warnings, *warnings],
        )
