"""Finding preprocessed BOLD series in an fMRIPrep derivatives folder.

fMRIPrep names its outputs by BIDS entities
(``sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz``),
so the file names alone say which series, mask, confounds table and sidecar
belong together. pybids would index every file of the dataset (and read every
sidecar) into a database, which takes minutes on thousands of subjects; here
only ``sub-*/[ses-*/]func`` folders are listed with :func:`os.scandir` and
names are split on ``_`` and ``-``, which indexes 2,000 subjects in well under
a second and reads no image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rsxai.exceptions import InputError

IMAGE_EXTENSIONS = (".nii.gz", ".nii")
_EXTENSIONS = (*IMAGE_EXTENSIONS, ".tsv", ".json")

# Entities that name an output space rather than the acquisition: a mask
# shares them with its BOLD series, the confounds table (one per acquisition,
# whatever the output space) does not have them.
SPACE_ENTITIES = frozenset({"space", "res", "den", "cohort"})


def parse_bids_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """Split a BIDS file name into entities, suffix and extension.

    Parameters
    ----------
    name : str
        A file name such as ``sub-01_task-rest_desc-preproc_bold.nii.gz``.

    Returns
    -------
    entities : dict of str to str
        Entity key to value, in file-name order (``{"sub": "01", "task": "rest", ...}``).
    suffix : str
        The part after the last ``_`` (``"bold"``).
    extension : str
        ``".nii.gz"``, ``".nii"``, ``".tsv"`` or ``".json"``.

    None is returned for any name that is not a BIDS name with one of these
    extensions (reports, figures, CIFTI, GIFTI, logs...).
    """
    extension = next((ext for ext in _EXTENSIONS if name.endswith(ext)), None)
    if extension is None:
        return None
    *pairs, suffix = name[: -len(extension)].split("_")
    if not pairs or not suffix.isalnum():
        return None
    entities: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("-")
        if not sep or not key or not value or key in entities:
            return None
        entities[key] = value
    if "sub" not in entities:
        return None
    return entities, suffix, extension


@dataclass(frozen=True)
class BoldSeries:
    """One preprocessed BOLD series found in the derivatives, with its companions.

    Parameters
    ----------
    bold : Path
        The ``desc-preproc_bold`` image.
    entities : tuple of (str, str)
        The BOLD file's entities, in file-name order.
    mask : Path or None
        The ``desc-brain_mask`` image with the same entities, if any.
    confounds : Path or None
        The ``desc-confounds_timeseries.tsv`` (or older ``_regressors.tsv``) of the
        same acquisition, if any.
    sidecar : Path or None
        The BOLD file's same-name JSON sidecar, if any.
    """

    bold: Path
    entities: tuple[tuple[str, str], ...]
    mask: Path | None = None
    confounds: Path | None = None
    sidecar: Path | None = None

    def entity(self, key: str) -> str | None:
        """Value of one entity (``"ses"``, ``"run"``, ``"task"``...), None if absent."""
        return dict(self.entities).get(key)

    @property
    def acquisition(self) -> tuple[tuple[str, str], ...]:
        """Entities naming the acquisition (all but desc and the output-space entities)."""
        return tuple(
            (key, value)
            for key, value in self.entities
            if key != "desc" and key not in SPACE_ENTITIES
        )

    def describe(self) -> str:
        """Short description of the series, e.g. ``task-rest space-T1w``."""
        return " ".join(
            f"{key}-{value}" for key, value in self.entities if key not in {"sub", "desc"}
        )


def natural_key(value: str | None) -> tuple[int, int, str]:
    """Sort key for BIDS labels: None first, then numbers by value (2 before 10), then text."""
    if value is None:
        return (0, 0, "")
    return (1, int(value), value) if value.isdigit() else (2, 0, value)


def series_order(series: BoldSeries) -> tuple:
    """Sort key: session, run, then the remaining entities and the file name."""
    return (
        natural_key(series.entity("ses")),
        natural_key(series.entity("run")),
        series.acquisition,
        series.bold.name,
    )


def _subfolders(path: Path, prefix: str) -> list[tuple[str, Path]]:
    try:
        with os.scandir(path) as entries:
            return sorted(
                (entry.name[len(prefix) :], Path(entry.path))
                for entry in entries
                if entry.name.startswith(prefix) and entry.is_dir()
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def _index_func_folder(func: Path, subject_folder_label: str) -> list[BoldSeries]:
    try:
        with os.scandir(func) as entries:
            names = [entry.name for entry in entries if entry.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    bolds, masks, confounds, sidecars = [], {}, {}, {}
    for name in names:
        parsed = parse_bids_name(name)
        if parsed is None:
            continue
        entities, suffix, extension = parsed
        if entities["sub"] != subject_folder_label:
            continue
        ordered = tuple(entities.items())
        desc = entities.pop("desc", None)
        # Sorted, so that companions match whatever order their entities are written in.
        key = tuple(sorted(entities.items()))
        if extension in IMAGE_EXTENSIONS:
            if suffix == "bold" and desc == "preproc":
                bolds.append((name, key, ordered))
            elif suffix == "mask" and desc == "brain":
                masks.setdefault(key, func / name)
        elif (
            extension == ".tsv" and desc == "confounds" and suffix in ("timeseries", "regressors")
        ):
            # fMRIPrep >= 20.2 writes _timeseries, older versions _regressors.
            if suffix == "timeseries" or key not in confounds:
                confounds[key] = func / name
        elif extension == ".json" and suffix == "bold" and desc == "preproc":
            sidecars[key] = func / name
    found = []
    for name, key, ordered in bolds:
        acquisition_key = tuple(item for item in key if item[0] not in SPACE_ENTITIES)
        found.append(
            BoldSeries(
                bold=func / name,
                entities=ordered,
                mask=masks.get(key),
                confounds=confounds.get(acquisition_key),
                sidecar=sidecars.get(key),
            )
        )
    return found


def index_derivatives(derivatives: Path) -> dict[str, list[BoldSeries]]:
    """Every preprocessed BOLD series of every subject folder, unfiltered.

    Parameters
    ----------
    derivatives : Path
        The fMRIPrep output folder (holding ``sub-*`` folders).

    Returns
    -------
    index : dict of str to list of BoldSeries
        Subject-folder label (text after ``sub-``, not yet checked) to the
        ``desc-preproc_bold`` series found in ``func/`` and ``ses-*/func/``,
        sorted by :func:`series_order`. Subjects without any such series map to
        an empty list.
    """
    index = {}
    for label, folder in _subfolders(Path(derivatives), "sub-"):
        series = _index_func_folder(folder / "func", label)
        for _, session_folder in _subfolders(folder, "ses-"):
            series.extend(_index_func_folder(session_folder / "func", label))
        index[label] = sorted(series, key=series_order)
    return index


@dataclass(frozen=True)
class SeriesFilter:
    """Which BOLD series to keep: task, output space (and resolution), session, run.

    Parameters accept BIDS values with or without their key (``"ses-1"`` or
    ``"1"``); ``space`` may carry a resolution the fMRIPrep way,
    ``"MNI152NLin2009cAsym:res-2"``. None keeps any value.
    """

    task: str | None = "rest"
    space: str | None = "MNI152NLin2009cAsym"
    session: str | None = None
    run: str | int | None = None

    def _wanted(self) -> dict[str, str]:
        space, _, resolution = ("" if self.space is None else str(self.space)).partition(":")
        given = {
            "task": self.task,
            "space": space or None,
            "res": resolution or None,
            "ses": self.session,
            "run": self.run,
        }
        return {
            key: str(value).removeprefix(f"{key}-")
            for key, value in given.items()
            if value is not None
        }

    def matches(self, series: BoldSeries) -> bool:
        """True when the series has every requested entity value."""
        for key, value in self._wanted().items():
            found = series.entity(key)
            if found is None:
                return False
            if key in ("run", "res") and found.isdigit() and value.isdigit():
                if int(found) != int(value):
                    return False
            elif found != value:
                return False
        return True

    def describe(self) -> str:
        """The filter as BIDS entities, e.g. ``task-rest space-MNI152NLin2009cAsym``."""
        return " ".join(f"{key}-{value}" for key, value in self._wanted().items()) or "any"


def locate_fmriprep(root: Path, derivatives: str | os.PathLike | None = None) -> Path:
    """The folder holding fMRIPrep's ``sub-*`` folders.

    Parameters
    ----------
    root : Path
        A BIDS dataset root, a ``derivatives`` folder or the fMRIPrep folder itself.
    derivatives : path-like, optional
        The fMRIPrep folder given explicitly; a relative path that does not
        exist from the working directory is taken relative to ``root``.

    Raises
    ------
    InputError
        When no folder with ``sub-*`` folders is found.
    """
    root = Path(root)
    if derivatives is not None:
        path = Path(derivatives)
        if not path.is_absolute() and not path.exists():
            path = root / path
        if not path.is_dir():
            raise InputError(
                f"derivatives: {path} is not a folder. Give the fMRIPrep output folder "
                "(the one holding the sub-* folders)."
            )
        return path
    for candidate in (root / "derivatives" / "fmriprep", root / "fmriprep", root):
        if _subfolders(candidate, "sub-"):
            return candidate
    raise InputError(
        f"{root}: no sub-* folders in {root / 'derivatives' / 'fmriprep'}, {root / 'fmriprep'} "
        f"or {root}. Give a BIDS root whose fMRIPrep outputs are in derivatives/fmriprep, the "
        "fMRIPrep output folder itself, or its path with derivatives=."
    )


def participants_file(root: Path, derivatives: Path) -> Path | None:
    """participants.tsv at the BIDS root, in the derivatives folder, or in the BIDS root above.

    Returns None when there is none.
    """
    root, derivatives = Path(root).absolute(), Path(derivatives).absolute()
    candidates = [root, derivatives]
    for folder in (root, derivatives):
        # A derivatives folder handed in directly: the BIDS root is above "derivatives".
        for path in (folder, *folder.parents[:2]):
            if path.name == "derivatives":
                candidates.append(path.parent)
    for folder in dict.fromkeys(candidates):
        # exists(), not is_file(): a participants.tsv that is a folder or unreadable is
        # reported by read_table rather than passed over.
        if (folder / "participants.tsv").exists():
            return folder / "participants.tsv"
    return None


def read_sidecar_tr(sidecar: Path) -> tuple[float | None, str | None]:
    """RepetitionTime (s) from a BOLD JSON sidecar.

    Returns
    -------
    tr : float or None
        None when the sidecar has no RepetitionTime or cannot be used.
    problem : str or None
        A one-line message when the sidecar is unreadable or its value is not a
        positive number of seconds.
    """
    try:
        with open(sidecar, encoding="utf-8") as stream:
            content = json.load(stream)
    except (OSError, ValueError, RecursionError) as error:
        # RecursionError: JSON nested deeper than Python's recursion limit.
        return None, (
            f"{sidecar}: cannot read this JSON sidecar ({' '.join(str(error).split())}). Fix "
            "the JSON or delete the file (the TR is then read from the NIfTI header)."
        )
    value = content.get("RepetitionTime") if isinstance(content, Mapping) else None
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 100:
        return None, (
            f"{sidecar}: RepetitionTime is {value!r}; it must be the TR in seconds (e.g. 2.0). "
            "Correct the sidecar."
        )
    return float(value), None
