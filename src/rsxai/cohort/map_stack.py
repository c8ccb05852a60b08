"""A user's stack of subject maps and its subjects table, read and checked together.

The input of ``rsxai stats`` and ``rsxai classify`` (:mod:`rsxai.pipeline.stack`):
one 4D NIfTI image with one volume per subject (e.g. FSL ``dual_regression``'s
``dr_stage2_ic0003.nii.gz``) and a TSV or CSV table with one row per volume,
in order (``participant_id`` or ``subject``, the group, covariates: a
participants.tsv). :func:`read_map_stack` checks both before any work and
reports every problem at once, each naming the file, the problem and the fix;
the table is read with the cohort's own functions (group labels, the patient
group guessed from usual control names, typed covariates).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from rsxai.cohort.cohort import Cohort, Subject
from rsxai.cohort.file_checks import (
    MNI_MAX_CENTRE_DISTANCE_MM,
    MNI_MIN_COVERAGE,
    UNREADABLE_IMAGE_ERRORS,
    error_reason,
    usable_affine,
)
from rsxai.cohort.nifti_scan import mni_placement
from rsxai.cohort.participants import is_bids_label, read_rows, resolve_groups, type_covariates
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.tables import read_table

if TYPE_CHECKING:
    import pandas as pd

    from rsxai.cohort.cohort import Cohort

#: The mask used when none is given (FSL's dual_regression zeroes the maps outside its mask).
DEFAULT_MASK_RULE = "voxels non-zero in every volume of the stack, no other mask"

_FSL_FIX = (
    "Give a NIfTI (.nii or .nii.gz) image, e.g. FSL dual_regression's dr_stage2_ic0003.nii.gz"
)


@dataclass(frozen=True)
class MapStack:
    """A user's stack of subject maps and its subjects, checked.

    Attributes
    ----------
    network : str
        Name used in the output file names (``network-<name>``).
    maps : ndarray of shape (n_subjects, n_voxels)
        float32 maps inside the mask, rows in the order of ``cohort``.
    grid : Grid
        The mask and the stack's affine.
    cohort : Cohort
        Subjects (labels, groups, ``y``, covariates) in volume order; no runs.
    mask_rule : str
        How the mask was chosen.
    """

    network: str
    maps: np.ndarray
    grid: Grid
    cohort: Cohort
    mask_rule: str


def network_name(stack: Path, given: str | None = None) -> tuple[str, list[str]]:
    """The network's name: ``given``, else from the file name; and any problem.

    ``network-visual_...`` gives ``visual``; FSL's ``dr_stage2_ic0003.nii.gz``
    gives ``ic0003``; otherwise the file name's letters and digits.
    """
    if given is not None:
        if is_bids_label(given):
            return given, []
        return given, [
            f"--network-name: {given!r} cannot be used in file names (letters and digits only). "
            "Give e.g. --network-name visual."
        ]
    stem = re.sub(r"\.nii(\.gz)?$", "", Path(stack).name)
    entity = re.search(r"(?:^|_)network-([A-Za-z0-9]+)", stem)
    name = (
        entity.group(1) if entity else re.sub(r"[^A-Za-z0-9]", "", stem.removeprefix("dr_stage2_"))
    )
    if not name:
        return name, [
            f"STACK {stack}: no network name can be made from the file name; give one "
            "with --network-name (letters and digits)."
        ]
    return name, []


def subjects_cohort(
    table: pd.DataFrame,
    path: Path,
    group_column: str,
    positive_label: str | None,
    min_per_group: int,
) -> Cohort:
    """The subjects table as a cohort without runs, in row order; raise every problem."""
    id_column = next((c for c in ("participant_id", "subject") if c in table.columns), None)
    if id_column is None or group_column not in table.columns:
        raise InputError(
            f"SUBJECTS {path}: needs the columns participant_id (or subject) and "
            f"{group_column!r} (found: {', '.join(table.columns)}), then any covariates, one "
            "row per volume of the stack; --group-column names another group column."
        )
    rows, covariate_columns, problems = read_rows(table, path, id_column, group_column, set())
    problems += [
        f"{path} line {line}: sub-{label} has no value in column {group_column!r}. Give its "
        "group; a row cannot be left out while its volume is in the stack."
        for label, (line, row) in rows.items()
        if row.group is None
    ]
    groups = {label: row.group for label, (_, row) in rows.items() if row.group is not None}
    positive = None
    if len(set(groups.values())) == 1:
        # Said here, not by resolve_groups, which would first ask for --positive-label.
        problems.append(
            f"{path} column {group_column!r}: every subject is in group "
            f"{next(iter(groups.values()))!r}; rsxai compares two groups. Give the other "
            "group's subjects (rows and volumes)."
        )
    elif groups:
        try:
            positive, _, group_problems = resolve_groups(
                groups, positive_label, source=str(path), group_column=group_column
            )
            problems += group_problems
        except InputError as error:
            problems += error.problems
    counts = {group: list(groups.values()).count(group) for group in sorted(set(groups.values()))}
    problems += [
        f"{path}: group {group!r} has {count} subject(s), fewer than min_per_group="
        f"{min_per_group}; cross-validation and permutation statistics need more. Add "
        "subjects or lower --min-per-group."
        for group, count in counts.items()
        if count < min_per_group
    ]
    if problems:
        raise InputError(problems)
    covariates, warnings = type_covariates(
        {label: row.values for label, (_, row) in rows.items()},
        covariate_columns,
        source=str(path),
    )
    return Cohort(
        [Subject(label, row.group, (), covariates[label]) for label, (_, row) in rows.items()],
        positive_label=positive,
        group_column=group_column,
        source=str(path),
        warnings=warnings,
    )


def open_nifti(path: Path, what: str) -> tuple[nib.Nifti1Image | None, list[str]]:
    """The NIfTI image at ``path`` (header only), or None and why; ``what`` names it."""
    if not path.is_file():
        return None, [f"{what} {path}: file not found. Check the path."]
    try:
        img = nib.load(path)
    except UNREADABLE_IMAGE_ERRORS as error:
        reason = error_reason(error, path)
        return None, [f"{what} {path}: not a readable NIfTI image ({reason}). {_FSL_FIX}."]
    if not isinstance(img, nib.Nifti1Pair):
        return None, [f"{what} {path}: a {type(img).__name__}, not a NIfTI image. {_FSL_FIX}."]
    return img, []


def _stack_header_problems(
    img: nib.Nifti1Image, path: Path, n_rows: int | None, subjects: Path
) -> list[str]:
    shape = img.shape
    if len(shape) != 4:
        return [
            f"STACK {path} is {len(shape)}D (shape {'x'.join(map(str, shape))}); give a 4D "
            "stack with one volume per subject (dual_regression's dr_stage2_icNNNN.nii.gz, or "
            "the subject maps joined with fslmerge -t)."
        ]
    if any(n <= 0 for n in shape):  # nibabel reads negative lengths from a corrupt header
        return [
            f"STACK {path} has shape {'x'.join(map(str, shape))}: an axis of length 0 or less "
            "holds no map. Give the 4D stack of subject maps."
        ]
    problems = []
    if n_rows is not None and shape[3] != n_rows:
        problems.append(
            f"STACK {path} has {shape[3]} volumes but SUBJECTS {subjects} has {n_rows} rows; "
            "row i must be the subject of volume i (dual_regression keeps the order of its "
            "input list). Give one row per volume, in order."
        )
    if img.get_data_dtype().kind not in "biuf":
        problems.append(
            f"STACK {path} stores {img.get_data_dtype()} values, not real numbers. "
            "Convert it to float32."
        )
    if img.header["sform_code"] == 0 and img.header["qform_code"] == 0:
        problems.append(
            f"STACK {path} has no orientation (sform and qform codes are 0), so it "
            "cannot be placed in MNI space. Give the maps as FSL wrote them."
        )
    elif not usable_affine(img.affine):
        problems.append(
            f"STACK {path} has an unusable affine (non-finite values, or voxel axes that do not "
            "span 3D space), so it cannot be placed in MNI space. Give the maps as FSL wrote them."
        )
    else:
        distance, coverage = mni_placement(img.affine, shape)
        if not (distance <= MNI_MAX_CENTRE_DISTANCE_MM and coverage >= MNI_MIN_COVERAGE):
            problems.append(
                f"STACK {path} does not look like it is in MNI space (its field of view is "
                f"centred {distance:.0f} mm from the MNI box's centre and covers {coverage:.0%} "
                "of it); peaks and atlas labels would be wrong. Give maps in MNI152 space."
            )
    return problems


def _mask_header_problems(img: nib.Nifti1Image, path: Path, stack: nib.Nifti1Image) -> list[str]:
    if img.get_data_dtype().kind not in "biuf":
        return [
            f"MASK {path} stores {img.get_data_dtype()} values, not 0/1 numbers. Give a 3D "
            "mask of 0 and 1 (e.g. dual_regression's mask.nii.gz)."
        ]
    shape = img.shape
    if len(shape) > 3 and np.prod(shape[3:]) != 1:
        return [
            f"MASK {path} has shape {'x'.join(map(str, shape))}; a mask is 3D. "
            "Give a 3D mask (e.g. dual_regression's mask.nii.gz)."
        ]
    if tuple(shape[:3]) != tuple(stack.shape[:3]) or not np.allclose(
        img.affine, stack.affine, atol=1e-3
    ):
        return [
            f"MASK {path} is on a different grid (shape {'x'.join(map(str, shape[:3]))}) from "
            f"the stack (shape {'x'.join(map(str, stack.shape[:3]))}, or another affine). Give "
            "a mask on the stack's grid (dual_regression's mask.nii.gz is), or resample it "
            "(nilearn.image.resample_to_img(mask, stack, interpolation='nearest'))."
        ]
    return []


def _data_problems(data: np.ndarray, path: Path, names: list[str]) -> list[str]:
    """NaN or infinite values, and volumes that are all zeros, named by subject."""
    problems = []
    nonfinite = ~np.isfinite(data).all(axis=(0, 1, 2))
    if nonfinite.any():
        bad = [names[i] for i in np.flatnonzero(nonfinite)]
        problems.append(
            f"STACK {path} holds NaN or infinite values in {len(bad)} volume(s) "
            f"({', '.join(bad[:8])}{', ...' if len(bad) > 8 else ''}); they would spread "
            "through every test. Replace them (fslmaths STACK -nan OUT) or re-make the maps."
        )
    empty = ~np.any(data != 0, axis=(0, 1, 2))
    if empty.any():
        problems.append(
            f"STACK {path}: volume(s) of {', '.join(names[i] for i in np.flatnonzero(empty))} "
            "are all zeros, an empty map. Re-make them or leave those subjects out (stack and "
            "table alike)."
        )
    return problems


def read_map_stack(
    stack: str | Path,
    subjects: str | Path,
    *,
    mask: str | Path | None = None,
    network: str | None = None,
    group_column: str = "group",
    positive_label: str | None = None,
    min_per_group: int = 5,
    check_cohort: Callable[[Cohort], None] | None = None,
) -> MapStack:
    """Read a 4D stack of subject maps with its subjects table; check both first.

    Parameters
    ----------
    stack : str or Path
        4D NIfTI, one volume per subject, in MNI space (any grid).
    subjects : str or Path
        TSV or CSV, one row per volume in order: ``participant_id`` (or
        ``subject``), the group column, then covariates (as participants.tsv).
    mask : str or Path, optional
        3D mask on the stack's grid; default: :data:`DEFAULT_MASK_RULE`.
    network : str, optional
        Name in the output file names; default: from the stack's file name.
    group_column, positive_label, min_per_group
        As the ``[input]`` options of ``rsxai run``; the patient group is
        guessed when the other group has a usual control name.
    check_cohort : callable, optional
        Further checks of the cohort (covariates, folds) raising InputError.

    Returns
    -------
    MapStack

    Raises
    ------
    InputError
        Listing every problem found, one line each (file, problem, fix).
    """
    stack, subjects = Path(stack), Path(subjects)
    name, problems = network_name(stack, network)
    cohort, n_rows = None, None
    try:
        if not subjects.is_file():
            raise InputError(
                f"SUBJECTS {subjects}: file not found. Give a TSV or CSV table with one row per "
                "volume of the stack."
            )
        table = read_table(subjects)
        n_rows = len(table)
        cohort = subjects_cohort(table, subjects, group_column, positive_label, min_per_group)
        if check_cohort is not None:
            check_cohort(cohort)
    except InputError as error:
        problems += error.problems
    img, open_problems = open_nifti(stack, "STACK")
    problems += open_problems
    if img is not None:
        problems += _stack_header_problems(img, stack, n_rows, subjects)
    # The data can be read (for NaN, empty volumes) whatever else is wrong,
    # as long as the stack is a 4D array of numbers.
    readable = (
        img is not None
        and len(img.shape) == 4
        and all(n > 0 for n in img.shape)
        and img.get_data_dtype().kind in "biuf"
    )
    inside, rule = None, DEFAULT_MASK_RULE
    if mask is not None:
        mask_img, mask_problems = open_nifti(Path(mask), "MASK")
        if mask_img is not None and readable:
            mask_problems += _mask_header_problems(mask_img, Path(mask), img)
        # The mask is read only onto a readable stack, whose grid it was checked against.
        if mask_img is not None and readable and not mask_problems:
            try:
                inside = np.asarray(mask_img.dataobj).reshape(img.shape[:3]) != 0
            except (EOFError, OSError, ValueError, zlib.error) as error:
                reason = error_reason(error, Path(mask))
                mask_problems.append(f"MASK {mask} is truncated or corrupt ({reason}).")
            rule = f"given: {mask}"
        problems += mask_problems
    if not readable:
        raise InputError(problems)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (EOFError, OSError, ValueError, zlib.error) as error:
        raise InputError(
            [
                *problems,
                f"STACK {stack} is truncated or corrupt ({error_reason(error, stack)}). "
                "Copy it again.",
            ]
        ) from None
    except MemoryError:
        # A corrupt header can claim any size; a real stack this large needs a coarser grid.
        raise InputError(
            [
                *problems,
                f"STACK {stack}: its header describes {'x'.join(map(str, img.shape))} values, "
                "more than fit in memory. Check the file, or give the maps on a coarser grid.",
            ]
        ) from None
    n_volumes = data.shape[3]
    names = (
        [f"sub-{label}" for label in cohort.labels]
        if cohort is not None and cohort.n_subjects == n_volumes
        else [f"volume {i}" for i in range(n_volumes)]
    )
    data_problems = _data_problems(data, stack, names)
    problems += data_problems
    if mask is None and not data_problems:
        inside = np.all(data != 0, axis=3)
    if inside is not None and not inside.any():
        problems.append(
            f"MASK {mask} is empty; give a mask with brain voxels."
            if mask is not None
            else f"STACK {stack}: no voxel is non-zero in every volume. Give --mask."
        )
    if problems:
        raise InputError(problems)
    grid = Grid(inside, img.affine)
    return MapStack(name, grid.from_img_data(data), grid, cohort, rule)
