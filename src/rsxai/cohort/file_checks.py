"""Checks of each input file: BOLD series, brain mask, confounds table.

Each check returns one-line messages that name the file, the problem and the
fix, so that a cohort can report every problem at once
(:class:`rsxai.exceptions.InputError`). Header checks read a few hundred
bytes; :func:`scan_image_data` streams the whole data block once, which is
the only way to find a truncated gzip stream, NaN or Inf values.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from rsxai.cohort.nifti_scan import header_tr, mni_placement, scan_image_data
from rsxai.exceptions import InputError
from rsxai.preprocess import load_confounds
from rsxai.tables import file_problem

# What nibabel raises on a file that is not a readable image.
UNREADABLE_IMAGE_ERRORS = (
    ImageFileError,
    HeaderDataError,
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    struct.error,
)
# An image whose field of view is centred further than this from the MNI box
# centre, or covers less than this fraction of the MNI box, is not in MNI space.
MNI_MAX_CENTRE_DISTANCE_MM = 40.0
MNI_MIN_COVERAGE = 0.5
# TRs closer than this (s) are the same TR.
TR_TOLERANCE = 1e-3
# A TR read from a header outside this range (s) is a unit error, not a TR.
_PLAUSIBLE_TR = (0.05, 30.0)

_REPROCESS = "re-run fMRIPrep for this subject (or copy the file again), or exclude the subject"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def error_reason(error: BaseException, path: Path) -> str:
    """A library's error as one line for a message that names ``path`` already.

    nibabel's texts repeat the path and may span lines ("... - could the file
    be damaged?"); a problem must stay one line.
    """
    text = " ".join(str(error).split()).replace(f"File {path}", "the file")
    return text.replace(str(path), "the file") or type(error).__name__


def usable_affine(affine: np.ndarray) -> bool:
    """True when an affine is finite and maps voxels onto a 3D volume (not singular)."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        return False
    # A determinant of (nearly) 0: voxel axes of no length or in one plane, a broken header.
    return abs(np.linalg.det(affine[:3, :3])) > 1e-12


def load_image(path: Path, prefix: str, kind: str) -> tuple[nib.Nifti1Image | None, list[str]]:
    """Load a NIfTI header (no data), or say why it cannot be loaded."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        return None, [f"{prefix}: {kind} file {path} {problem}. Check the path, or {_REPROCESS}."]
    try:
        img = nib.load(path)
    except UNREADABLE_IMAGE_ERRORS as error:
        return None, [
            f"{prefix}: {kind} file {path} is not a readable NIfTI image "
            f"({error_reason(error, path)}); {_REPROCESS}."
        ]
    if not isinstance(img, nib.Nifti1Pair):
        return None, [
            f"{prefix}: {kind} file {path} is a {type(img).__name__}, not a NIfTI image. "
            "Convert it to NIfTI (.nii.gz)."
        ]
    return img, []


@dataclass(frozen=True)
class BoldCheck:
    """Result of :func:`check_bold`.

    Attributes
    ----------
    problems, warnings : tuple of str
    n_volumes : int or None
        Number of volumes (None when the header could not be read).
    tr : float or None
        TR (s) from the header.
    affine : ndarray of shape (4, 4) or None
    shape : tuple of 3 int or None
        Spatial shape.
    """

    problems: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    n_volumes: int | None = None
    tr: float | None = None
    affine: np.ndarray | None = None
    shape: tuple[int, int, int] | None = None


def check_bold(path: Path, *, prefix: str, min_volumes: int, check_data: bool) -> BoldCheck:
    """Check one BOLD series: readable, 4D, long enough, in MNI space, and its data.

    Parameters
    ----------
    path : Path
    prefix : str
        How messages start, e.g. ``"sub-01"`` or ``"sub-01 ses-1 run-2"``.
    min_volumes : int
        Fewest volumes accepted.
    check_data : bool
        Also stream the data: truncated or corrupt stream, NaN, Inf, all zero.
    """
    img, problems = load_image(path, prefix, "BOLD")
    if img is None:
        return BoldCheck(tuple(problems))
    header, shape = img.header, img.shape
    if any(n <= 0 for n in shape):  # nibabel reads negative lengths from a corrupt header
        return BoldCheck(
            (
                f"{prefix}: {path} has shape {_shape_text(shape)}: an axis of length 0 or less "
                f"holds no data; {_REPROCESS}.",
            )
        )
    if len(shape) != 4:
        return BoldCheck(
            (
                f"{prefix}: {path} is {len(shape)}D (shape {_shape_text(shape)}); rs-fMRI must be "
                "4D (x, y, z, time). Give the 4D preprocessed BOLD series.",
            )
        )
    n_volumes = int(shape[3])
    if n_volumes < min_volumes:
        problems.append(
            f"{prefix}: {path} has {n_volumes} volumes, fewer than min_volumes={min_volumes}; "
            "ICA and dual regression need a longer series. Exclude the subject or lower "
            "min_volumes (--min-volumes)."
        )
    if np.dtype(header.get_data_dtype()).kind not in "biuf":
        problems.append(
            f"{prefix}: {path} stores {header.get_data_dtype()} values, not real numbers. "
            "Convert it to float32."
        )
    if header["sform_code"] == 0 and header["qform_code"] == 0:
        problems.append(
            f"{prefix}: {path} has no orientation (sform_code and qform_code are 0), so it "
            "cannot be placed in MNI space. Give the image as written by fMRIPrep."
        )
    elif not usable_affine(img.affine):
        problems.append(
            f"{prefix}: {path} has an unusable affine (non-finite values, or voxel axes that do "
            "not span 3D space), so it cannot be placed in MNI space. Give the image as written "
            "by fMRIPrep."
        )
    else:
        distance, coverage = mni_placement(img.affine, shape)
        # Written as "not (...)" so that a NaN distance or coverage is not taken for MNI.
        if not (distance <= MNI_MAX_CENTRE_DISTANCE_MM and coverage >= MNI_MIN_COVERAGE):
            problems.append(
                f"{prefix}: {path} does not look like it is in MNI space: its field of view is "
                f"centred {distance:.0f} mm from the MNI brain box's centre and covers "
                f"{coverage:.0%} of it. Give BOLD normalised to MNI152 (fMRIPrep "
                "--output-spaces MNI152NLin2009cAsym)."
            )
    if not path.name.endswith(".gz"):
        expected = int(img.dataobj.offset) + math.prod(shape) * header.get_data_dtype().itemsize
        if path.stat().st_size < expected:
            problems.append(
                f"{prefix}: {path} is truncated ({path.stat().st_size} bytes, its header "
                f"describes {expected}); {_REPROCESS}."
            )
            check_data = False
    if check_data and np.dtype(header.get_data_dtype()).kind in "biuf":
        problems.extend(_data_problems(img, path, prefix, n_volumes))
    return BoldCheck(
        tuple(problems),
        n_volumes=n_volumes,
        tr=header_tr(header),
        affine=np.asarray(img.affine),
        shape=tuple(int(n) for n in shape[:3]),
    )


def _data_problems(img: nib.Nifti1Image, path: Path, prefix: str, n_volumes: int) -> list[str]:
    try:
        scan = scan_image_data(img)
    except (EOFError, OSError, zlib.error) as error:
        return [
            f"{prefix}: {path} is truncated or corrupt ({error_reason(error, path)}); "
            f"{_REPROCESS}."
        ]
    problems = []
    if scan.n_nan or scan.n_inf:
        problems.append(
            f"{prefix}: {path} contains {scan.n_nan} NaN and {scan.n_inf} infinite values in "
            f"{len(scan.bad_volumes)} of {n_volumes} volumes (first: volume "
            f"{scan.bad_volumes[0]}); they would spread through every later stage. Re-run "
            "preprocessing, or replace them (e.g. nilearn.image.math_img('np.nan_to_num(img)', "
            "img=...))."
        )
    if scan.all_zero:
        problems.append(f"{prefix}: {path} is all zeros: the image is empty; {_REPROCESS}.")
    return problems


def check_mask(
    path: Path,
    *,
    prefix: str,
    bold_affine: np.ndarray | None,
    bold_shape: tuple[int, int, int] | None,
    check_data: bool,
) -> list[str]:
    """Check a brain mask: readable, on its BOLD's grid and (with ``check_data``) not empty."""
    img, problems = load_image(path, prefix, "mask")
    if img is None:
        return problems
    shape = img.shape[:3] if len(img.shape) == 3 or math.prod(img.shape[3:]) == 1 else None
    if shape is None:
        return [
            f"{prefix}: mask {path} has shape {_shape_text(img.shape)}; a brain mask is 3D. "
            "Give the desc-brain_mask image."
        ]
    if bold_affine is not None and (
        tuple(shape) != tuple(bold_shape) or not np.allclose(img.affine, bold_affine, atol=1e-3)
    ):
        problems.append(
            f"{prefix}: mask {path} is on a different grid (shape {_shape_text(shape)}) from its "
            f"BOLD series (shape {_shape_text(bold_shape)}, or a different affine). Give the "
            "mask written with this BOLD series (same space and resolution)."
        )
    if np.dtype(img.get_data_dtype()).kind not in "biuf":
        return [
            *problems,
            f"{prefix}: mask {path} stores {img.get_data_dtype()} values, not 0/1 numbers. "
            "Give the desc-brain_mask image (or convert it to uint8).",
        ]
    # Only a mask on its BOLD's grid is read: a mask of any other (e.g. corrupt, huge)
    # shape is already reported, and its data would be of no use.
    if check_data and not problems and bold_shape is not None:
        try:
            data = np.asarray(img.dataobj)
        except (EOFError, OSError, ValueError, zlib.error) as error:
            return [
                *problems,
                f"{prefix}: mask {path} is truncated or corrupt ({error_reason(error, path)}); "
                f"{_REPROCESS}.",
            ]
        if not np.any(data):
            problems.append(
                f"{prefix}: mask {path} is empty (no voxel inside the brain); {_REPROCESS}."
            )
    return problems


def check_confounds(
    path: Path, *, prefix: str, n_volumes: int | None, strategy: dict | None = None
) -> list[str]:
    """Check a confounds table: readable as preprocessing will read it, one row per volume.

    Parameters
    ----------
    path : Path
    prefix : str
        How messages start, e.g. ``"sub-01"``.
    n_volumes : int or None
        Volumes of the BOLD series (None: unknown, not compared).
    strategy : dict, optional
        Keyword arguments of :func:`rsxai.preprocess.confounds.load_confounds`: the columns
        this strategy needs are checked too. None checks only that the table
        can be read.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem:
        return [f"{prefix}: confounds file {path} {problem}. Check the path, or {_REPROCESS}."]
    try:
        # The very reader preprocessing uses: a file it would reject is rejected now.
        confounds, _ = load_confounds(path, **(strategy or {"motion": "none", "wm_csf": False}))
    except InputError as error:
        return [f"{prefix}: confounds file {problem}" for problem in error.problems]
    if n_volumes is not None and len(confounds) != n_volumes:
        return [
            f"{prefix}: confounds file {path} has {len(confounds)} rows but its BOLD series has "
            f"{n_volumes} volumes; there must be one row per volume. Give the confounds of "
            "this very series (same task, session and run)."
        ]
    return []


@dataclass(frozen=True)
class RunCheck:
    """Result of :func:`check_run`: a BOLD series with its mask and confounds.

    Attributes
    ----------
    problems, warnings : tuple of str
    n_volumes : int or None
    tr : float or None
        The TR used (s): the one given (sidecar or manifest), else the header's.
    affine : ndarray of shape (4, 4) or None
    shape : tuple of 3 int or None
    """

    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    n_volumes: int | None
    tr: float | None
    affine: np.ndarray | None
    shape: tuple[int, int, int] | None


def check_run(
    bold: Path,
    mask: Path | None,
    confounds: Path | None,
    given_tr: float | None,
    *,
    prefix: str,
    min_volumes: int,
    check_data: bool,
    confounds_strategy: dict | None = None,
) -> RunCheck:
    """Check one run: its BOLD series, TR, brain mask and confounds table.

    Parameters
    ----------
    bold, mask, confounds : Path (mask and confounds may be None)
    given_tr : float or None
        TR from the BOLD sidecar or the manifest; compared with the header's.
    prefix : str
        How messages start, e.g. ``"sub-01"``.
    min_volumes : int
    check_data : bool
        Also read the BOLD and mask data.
    confounds_strategy : dict, optional
        Keyword arguments of :func:`rsxai.preprocess.confounds.load_confounds`; the
        confounds table must hold what this strategy needs.
    """
    result = check_bold(Path(bold), prefix=prefix, min_volumes=min_volumes, check_data=check_data)
    problems, warnings = list(result.problems), []
    tr = given_tr
    if result.n_volumes is not None:
        if given_tr is None:
            tr = result.tr
            if tr is None or not _PLAUSIBLE_TR[0] <= tr <= _PLAUSIBLE_TR[1]:
                problems.append(
                    f"{prefix}: {bold} has no usable TR (header pixdim[4] gives {tr} s and there "
                    "is no sidecar RepetitionTime). Add RepetitionTime (s) to the BOLD's JSON "
                    "sidecar, or a tr column to the manifest."
                )
                tr = None
        elif result.tr is not None and abs(result.tr - given_tr) > TR_TOLERANCE:
            warnings.append(
                f"{prefix}: the TR given for {bold} (sidecar or manifest: {given_tr:g} s) differs "
                f"from its NIfTI header's ({result.tr:g} s); {given_tr:g} s is used. Check "
                "which one is right."
            )
    if mask is not None:
        problems.extend(
            check_mask(
                Path(mask),
                prefix=prefix,
                bold_affine=result.affine,
                bold_shape=result.shape,
                check_data=check_data,
            )
        )
    if confounds is not None:
        problems.extend(
            check_confounds(
                Path(confounds),
                prefix=prefix,
                n_volumes=result.n_volumes,
                strategy=confounds_strategy,
            )
        )
    return RunCheck(
        tuple(problems), tuple(warnings), result.n_volumes, tr, result.affine, result.shape
    )
