"""A finished FSL ``dual_regression`` folder as the input of the later stages.

FSL's ``dual_regression GROUP_IC 1 DESIGN 0 NPERM OUT SUBJECT_FILES...``
writes, in ``OUT``, one 4D image of stage-2 maps per subject
(``dr_stage2_subject00000.nii.gz``, one volume per component, numbered in the
order of the input list), the same maps merged per component
(``dr_stage2_ic0000.nii.gz``, one volume per subject) and the analysis mask
(``mask.nii.gz``). FSL does not record who the subjects were: a subjects table
(participants.tsv style, one row per subject in the order of the input list)
says so. :func:`read_fsl_dual_regression` checks the folder and the table
together (numbering, count, grids) before any work, reporting every problem
at once; :class:`FSLDualRegression` then reads the maps one subject or one
component at a time, never all subjects' maps at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from rsxai.cohort.file_checks import MNI_MAX_CENTRE_DISTANCE_MM, MNI_MIN_COVERAGE
from rsxai.cohort.map_stack import open_nifti, subjects_cohort
from rsxai.cohort.nifti_scan import mni_placement
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.tables import read_table

if TYPE_CHECKING:
    from rsxai.cohort.cohort import Cohort

SUBJECT_FILE = re.compile(r"^dr_stage2_subject(\d+)\.nii(\.gz)?$")
COMPONENT_FILE = "dr_stage2_ic{index:04d}.nii.gz"
MASK_FILE = "mask.nii.gz"


def is_fsl_dual_regression(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding FSL dual_regression stage-2 subject maps."""
    path = Path(path)
    return path.is_dir() and any(SUBJECT_FILE.match(p.name) for p in path.iterdir())


@dataclass(frozen=True)
class FSLDualRegression:
    """A checked FSL dual_regression folder with its subjects.

    Attributes
    ----------
    folder : Path
    cohort : Cohort
        The subjects (labels, groups, covariates) in input-list order; no runs.
    subject_files : tuple of Path
        ``dr_stage2_subjectNNNNN`` of each subject, in cohort order.
    affine : ndarray of shape (4, 4)
    shape : tuple of int
        The 3D grid shape of the maps.
    n_components : int
        Stage-2 maps per subject (the number of group maps).
    mask_file : Path or None
        FSL's ``mask.nii.gz``, when present.
    """

    folder: Path
    cohort: Cohort
    subject_files: tuple[Path, ...]
    affine: np.ndarray
    shape: tuple[int, int, int]
    n_components: int
    mask_file: Path | None

    def grid(self) -> Grid:
        """The analysis grid: FSL's mask, else voxels non-zero in every subject's maps."""
        if self.mask_file is not None:
            return Grid(np.asarray(nib.load(self.mask_file).dataobj) != 0, self.affine)
        inside = np.ones(self.shape, dtype=bool)
        for path in self.subject_files:
            inside &= np.all(self._subject_volumes(path) != 0, axis=3)
        if not inside.any():
            raise InputError(
                f"{self.folder}: no voxel is non-zero in every subject's stage-2 maps and there "
                f"is no {MASK_FILE}. Copy dual_regression's {MASK_FILE} into the folder."
            )
        return Grid(inside, self.affine)

    def _subject_volumes(self, path: Path) -> np.ndarray:
        try:
            data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        except (OSError, EOFError, ValueError) as error:
            raise InputError(f"{path} is truncated or corrupt ({error}). Copy it again.") from None
        return data.reshape(*self.shape, -1)

    def mean_maps(self, grid: Grid) -> np.ndarray:
        """The subjects' mean stage-2 maps, read one subject at a time.

        Returns
        -------
        maps : ndarray of shape (n_components, n_voxels)
            float32; stand-ins for the group maps when those are not given.
        """
        total = np.zeros((self.n_components, grid.n_voxels))
        for path in self.subject_files:
            maps = grid.from_img_data(self._subject_volumes(path))
            self._check_finite(maps, path)
            total += maps
        return (total / len(self.subject_files)).astype(np.float32)

    def component_maps(self, component: int, grid: Grid) -> np.ndarray:
        """Every subject's stage-2 map of one component.

        Read from ``dr_stage2_icNNNN`` when it matches the subjects, else one
        volume of each subject's file.

        Returns
        -------
        maps : ndarray of shape (n_subjects, n_voxels)
            float32, rows in cohort order.
        """
        merged = self.folder / COMPONENT_FILE.format(index=component)
        n_subjects = len(self.subject_files)
        if merged.is_file():
            img = nib.load(merged)
            if img.shape[:3] == self.shape and img.shape[3:] == (n_subjects,):
                try:
                    maps = grid.from_img_data(np.asarray(img.dataobj, dtype=np.float32))
                except (OSError, EOFError, ValueError):
                    maps = None  # a broken merged copy: the subject files hold the same maps
                if maps is not None:
                    self._check_finite(maps, merged)
                    return maps
        rows = []
        for path in self.subject_files:
            volume = np.asarray(nib.load(path).dataobj[..., component], dtype=np.float32)
            row = grid.from_img_data(volume[..., None])[0]
            self._check_finite(row[None], path)
            rows.append(row)
        return np.stack(rows)

    @staticmethod
    def _check_finite(maps: np.ndarray, path: Path) -> None:
        if not np.isfinite(maps).all():
            raise InputError(
                f"{path} holds NaN or infinite values inside the mask. Replace them "
                "(fslmaths IN -nan OUT) or re-run dual_regression."
            )


def _subject_files(folder: Path) -> dict[int, Path]:
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = SUBJECT_FILE.match(path.name)
        if match:
            files.setdefault(int(match.group(1)), path)
    return files


def _numbering_problems(files: dict[int, Path], folder: Path, cohort: Cohort | None) -> list:
    """Gaps in the numbering, and a count different from the subjects table."""
    problems = []
    n_expected = cohort.n_subjects if cohort is not None else max(files) + 1
    labels = cohort.labels if cohort is not None else None
    missing = [i for i in range(n_expected) if i not in files]
    if missing:
        named = [
            f"dr_stage2_subject{i:05d}" + (f" (sub-{labels[i]})" if labels else "")
            for i in missing[:8]
        ]
        problems.append(
            f"{folder}: {len(missing)} subject map file(s) missing: {', '.join(named)}"
            f"{', ...' if len(missing) > 8 else ''}. Re-run dual_regression for every subject, "
            "or remove the missing subjects from the subjects table and renumber the files "
            "(row i of the table is the subject of file i, the order of dual_regression's "
            "input list)."
        )
    extra = sorted(i for i in files if i >= n_expected)
    if extra and cohort is not None:
        problems.append(
            f"{folder} has {len(files)} dr_stage2_subject files but the subjects table has "
            f"{cohort.n_subjects} rows (no row for {', '.join(files[i].name for i in extra[:4])}"
            f"{', ...' if len(extra) > 4 else ''}). Give one row per subject map, in the order "
            "of dual_regression's input list."
        )
    return problems


def _header_problems(files: list[Path], folder: Path) -> tuple[list, tuple | None]:
    """Every subject file readable, on one grid with one number of maps; the reference header."""
    problems, reference = [], None
    for path in files:
        img, open_problems = open_nifti(path, "subject maps")
        problems += open_problems
        if img is None:
            continue
        shape = img.shape if len(img.shape) == 4 else (*img.shape[:3], 1)
        if len(img.shape) not in (3, 4) or img.get_data_dtype().kind not in "biuf":
            problems.append(
                f"{path} has shape {'x'.join(map(str, img.shape))} and type "
                f"{img.get_data_dtype()}; stage-2 maps are 4D real numbers (one volume per "
                "component). Give the files dual_regression wrote."
            )
            continue
        if reference is None:
            reference = (path, shape, img.affine)
            if img.header["sform_code"] == 0 and img.header["qform_code"] == 0:
                problems.append(
                    f"{path} has no orientation (sform and qform codes are 0); it cannot be "
                    "placed in MNI space. Give the maps as FSL wrote them."
                )
            else:
                distance, coverage = mni_placement(img.affine, shape)
                if distance > MNI_MAX_CENTRE_DISTANCE_MM or coverage < MNI_MIN_COVERAGE:
                    problems.append(
                        f"{path} does not look like it is in MNI space (field of view centred "
                        f"{distance:.0f} mm from the MNI box, covering {coverage:.0%} of it). "
                        "Give maps in MNI152 space."
                    )
        elif shape != reference[1] or not np.allclose(img.affine, reference[2], atol=1e-3):
            problems.append(
                f"{path} has shape {'x'.join(map(str, shape))} but {reference[0].name} has "
                f"{'x'.join(map(str, reference[1]))} (or another affine); every subject's maps "
                "must come from one dual_regression run. Give the folder of a single run."
            )
    return problems, reference


def _group_maps_problems(path: Path, n_components: int) -> list[str]:
    img, problems = open_nifti(path, "--group-maps")
    n_maps = 1 if img is None or len(img.shape) == 3 else int(np.prod(img.shape[3:]))
    if img is not None and n_maps != n_components:
        problems.append(
            f"--group-maps {path} has {n_maps} maps but the dual_regression folder has "
            f"{n_components} stage-2 maps per subject; give the melodic_IC.nii.gz that "
            "dual_regression was run with."
        )
    return problems


def read_fsl_dual_regression(
    folder: str | Path,
    subjects: str | Path | None,
    *,
    group_column: str = "group",
    positive_label: str | None = None,
    min_per_group: int = 5,
    group_maps: str | Path | None = None,
) -> FSLDualRegression:
    """Check an FSL dual_regression folder and its subjects table together.

    Parameters
    ----------
    folder : str or Path
        dual_regression's output folder (``dr_stage2_subjectNNNNN.nii.gz``,
        optionally ``dr_stage2_icNNNN.nii.gz`` and ``mask.nii.gz``).
    subjects : str or Path or None
        TSV or CSV, one row per subject in the order of dual_regression's
        input list: ``participant_id`` (or ``subject``), the group column,
        then covariates.
    group_column, positive_label, min_per_group
        As the ``[input]`` options of ``rsxai run``.
    group_maps : str or Path, optional
        MELODIC's ``melodic_IC.nii.gz``: checked to hold one map per stage-2 map.

    Returns
    -------
    FSLDualRegression

    Raises
    ------
    InputError
        Listing every problem found: missing or extra subject files, a table
        of another length, files on different grids, unreadable files.
    """
    folder = Path(folder)
    files = _subject_files(folder) if folder.is_dir() else {}
    if not files:
        raise InputError(
            f"{folder}: no dr_stage2_subjectNNNNN.nii.gz file; not an FSL dual_regression "
            "output folder. Give the folder dual_regression wrote (its last argument before "
            "the subject list)."
        )
    problems, cohort = [], None
    if subjects is None:
        problems.append(
            f"{folder} is an FSL dual_regression folder, which does not say who the subjects "
            "are: give --subjects TABLE (TSV or CSV: participant_id, group, covariates), one "
            "row per subject in the order of dual_regression's input list."
        )
    else:
        subjects = Path(subjects)
        try:
            if not subjects.is_file():
                raise InputError(f"--subjects {subjects}: file not found. Check the path.")
            cohort = subjects_cohort(
                read_table(subjects), subjects, group_column, positive_label, min_per_group
            )
        except InputError as error:
            problems += error.problems
    problems += _numbering_problems(files, folder, cohort)
    ordered = [files[i] for i in sorted(files)]
    header_problems, reference = _header_problems(ordered, folder)
    problems += header_problems
    mask_file = folder / MASK_FILE
    if not mask_file.is_file():
        mask_file = None
    elif reference is not None:
        mask = nib.load(mask_file)
        if mask.shape[:3] != reference[1][:3] or not np.allclose(
            mask.affine, reference[2], atol=1e-3
        ):
            problems.append(
                f"{mask_file} is on another grid than the subject maps; it is not this run's "
                "mask. Remove it (rsxai then uses the voxels non-zero in every map) or copy "
                "the right one."
            )
    if group_maps is not None and reference is not None:
        problems += _group_maps_problems(Path(group_maps), reference[1][3])
    if problems:
        raise InputError(problems)
    _, shape, affine = reference
    return FSLDualRegression(
        folder=folder,
        cohort=cohort,
        subject_files=tuple(ordered),
        affine=np.asarray(affine, dtype=np.float64),
        shape=tuple(int(n) for n in shape[:3]),
        n_components=int(shape[3]),
        mask_file=mask_file,
    )
