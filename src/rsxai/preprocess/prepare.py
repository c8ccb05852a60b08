"""Per-subject preprocessing of fMRIPrep outputs, and the brain mask shared by all subjects.

A subject's runs are smoothed (optionally), resampled by affine onto the
analysis :class:`~rsxai.grid.Grid`, cleaned one run at a time (own confounds,
detrending, band-pass, z-scoring; :func:`rsxai.preprocess.signal.clean_signals`)
and concatenated in time. No group information is used, so this runs once per
subject, outside any cross-validation fold.

The confound loading (:func:`rsxai.preprocess.confounds.load_confounds`) and the
temporal cleaning live in their own modules and are re-exported here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_brain_mask, mni_grid
from rsxai.preprocess.confounds import load_confounds
from rsxai.preprocess.resampling import interpolation_matrix
from rsxai.preprocess.signal import clean_signals

__all__ = [
    "clean_signals",
    "common_mask",
    "load_confounds",
    "prepare_subject",
    "resample_to_grid",
]

INTERPOLATIONS = {"continuous": 1, "linear": 1, "nearest": 0}
CONFOUND_OPTIONS = ("motion", "wm_csf", "global_signal", "scrub_fd", "min_contiguous")


def resample_to_grid(
    img: nib.spatialimages.SpatialImage | str | os.PathLike,
    grid: Grid,
    *,
    interpolation: str = "continuous",
) -> np.ndarray:
    """Sample a 3D or 4D image in world (MNI) space at the voxels of a grid.

    Voxels are matched by world coordinates through both affines, never by
    array index, so any orientation (e.g. FSL's LAS 2 mm grid) and voxel
    size can be mapped onto the analysis grid. When the image already lies
    on the grid (same shape and affine) its values are taken as they are.

    Parameters
    ----------
    img : nibabel image or path
        3D (X, Y, Z) or 4D (X, Y, Z, T) image.
    grid : Grid
        Target grid; only its mask voxels are computed.
    interpolation : {"continuous", "linear", "nearest"}, default="continuous"
        "continuous" and "linear" are trilinear interpolation (unlike
        nilearn, whose "continuous" is a cubic spline: trilinear is cheaper,
        cannot overshoot at the brain's edge, and is FSL's default for BOLD);
        "nearest" is for label images.

    Returns
    -------
    values : ndarray of shape (T, n_voxels), float32
        T is 1 for a 3D image. Grid voxels that fall outside the image's
        field of view are 0; non-finite image values are read as 0.

    Notes
    -----
    Trilinear sampling at just the mask's voxel centres is used rather than
    :func:`nilearn.image.resample_img`, which resamples the whole bounding
    grid first: 0.8 s instead of 5.8 s for a 120-volume FSL 2 mm run onto the
    4 mm MNI brain mask (29,398 voxels), with identical values. The
    interpolation weights are computed once for all volumes
    (:func:`rsxai.preprocess.resampling.interpolation_matrix`, the values of
    :func:`scipy.ndimage.map_coordinates` with ``mode="constant"``): 0.05-0.09
    s instead of 0.5-0.7 s with a ``map_coordinates`` call per volume for a
    150-volume FSL 2 mm run onto a 26,582-voxel 4 mm mask.
    """
    if interpolation not in INTERPOLATIONS:
        raise InputError(
            f"interpolation must be one of {', '.join(map(repr, INTERPOLATIONS))}; "
            f"got {interpolation!r}."
        )
    img, name = _load(img)
    if len(img.shape) not in (3, 4):
        raise InputError(
            f"{name}: image of shape {img.shape} is neither 3D nor 4D; give a volume "
            "or a 4D time series."
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 3:
        data = data[..., None]

    if data.shape[:3] == grid.shape and np.allclose(img.affine, grid.affine, atol=1e-4):
        values = _masked_time_series(data, grid.mask)
        if not np.isfinite(values).all():
            values = np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return values

    world = grid.world_coordinates()
    source_from_world = np.linalg.inv(img.affine)
    coords = (world @ source_from_world[:3, :3].T + source_from_world[:3, 3]).T
    layout = "F" if data.flags.f_contiguous else "C"
    weights = interpolation_matrix(
        coords, data.shape[:3], order=INTERPOLATIONS[interpolation], layout=layout
    )
    values = _apply_weights(weights, data, layout)
    if not np.isfinite(values).all():
        # A non-finite voxel reached some samples: read it as 0, as the docstring says. A copy:
        # data may be the caller's own array (an in-memory float32 image).
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        values = _apply_weights(weights, data, layout)
    return values


def _apply_weights(weights, data: np.ndarray, layout: str) -> np.ndarray:
    """(T, n_points) float32 samples: one sparse product per volume of the 4D ``data``."""
    values = np.empty((data.shape[3], weights.shape[0]), dtype=np.float32)
    for t in range(data.shape[3]):
        values[t] = weights @ data[..., t].ravel(order=layout)
    return values


def _masked_time_series(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``data[mask].T`` as a new C-contiguous (T, n_voxels) array.

    nibabel returns NIfTI data in Fortran order, each volume contiguous; then
    the (T, X*Y*Z) matrix of the volumes is a C-contiguous view, and taking
    the mask's columns from it gives the result in one pass, 3x faster than
    boolean indexing followed by a transposed copy. Columns follow the mask's
    C order, as ``data[mask]`` does.
    """
    n_time = data.shape[3]
    if not data.flags.f_contiguous:
        return np.ascontiguousarray(data[mask].T)
    columns = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
    return data.reshape(-1, n_time, order="F").T.take(columns, axis=1)


def common_mask(
    mask_paths: Sequence[str | os.PathLike | nib.spatialimages.SpatialImage],
    voxel_size: float,
    *,
    min_fraction: float = 1.0,
) -> Grid:
    """The analysis grid: voxels inside enough subjects' brain masks and the MNI152 brain.

    Parameters
    ----------
    mask_paths : sequence of paths or images
        Subject brain masks (e.g. fMRIPrep ``*_desc-brain_mask.nii.gz``) in
        MNI space, on any grid; non-zero is inside. Empty: the MNI152 brain
        mask alone.
    voxel_size : float
        Voxel edge in mm of the analysis grid :func:`rsxai.grid.mni_grid`.
    min_fraction : float, default=1.0
        A voxel is kept when it is inside at least this fraction of the
        masks (1.0: the intersection; 0: the MNI152 brain mask alone).

    Returns
    -------
    grid : Grid
        Mask on ``mni_grid(voxel_size)``, also restricted to
        :func:`rsxai.grid.mni_brain_mask`.

    Raises
    ------
    InputError
        When a mask is not 3D, or no voxel is left; the message says which
        masks do not overlap.
    """
    if isinstance(mask_paths, (str, os.PathLike)):
        raise InputError(f"mask_paths must be a list of brain-mask images; got {mask_paths!r}.")
    if not 0 <= min_fraction <= 1:
        raise InputError(
            f"min_fraction must be in [0, 1] (1.0 keeps the intersection); got {min_fraction!r}."
        )
    affine, shape = mni_grid(voxel_size)
    if len(mask_paths) == 0:
        return Grid(mni_brain_mask(voxel_size), affine)
    whole_grid = Grid(np.ones(shape, dtype=bool), affine)
    brain = mni_brain_mask(voxel_size)
    count = np.zeros(shape, dtype=np.int32)
    masks, names = [], []
    for path in mask_paths:
        img, name = _load(path)
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise InputError(f"{name}: a brain mask must be 3D; got shape {data.shape}.")
        binary = nib.Nifti1Image((data != 0).astype(np.float32), img.affine)
        # Trilinear then >= 0.5: a grid voxel is inside when mostly inside the mask.
        inside = resample_to_grid(binary, whole_grid)[0].reshape(shape) >= 0.5
        count += inside
        masks.append(np.packbits(inside))
        names.append(name)
    keep = (count >= min_fraction * len(names) - 1e-9) & brain
    if not keep.any():
        raise InputError(_no_overlap_problems(masks, names, brain, shape, voxel_size))
    return Grid(keep, affine)


def prepare_subject(
    runs: Sequence[tuple[str | os.PathLike, str | os.PathLike | None]],
    grid: Grid,
    *,
    tr: float,
    confounds_strategy: dict | None = None,
    smoothing_fwhm: float | None = None,
    high_pass: float | None = 0.01,
    low_pass: float | None = 0.1,
    detrend_order: int = 1,
) -> np.ndarray:
    """Clean one subject's rs-fMRI runs onto the analysis grid and concatenate them.

    Each run, one at a time: smoothed in world mm
    (:func:`nilearn.image.smooth_img`, before resampling) when
    ``smoothing_fwhm`` is given; resampled onto ``grid`` by affine
    (:func:`resample_to_grid`); its confounds loaded
    (:func:`rsxai.preprocess.confounds.load_confounds`); cleaned on its own
    (:func:`rsxai.preprocess.signal.clean_signals`: detrend, band-pass,
    confound regression, z-score, scrubbing). Runs are then concatenated.

    Parameters
    ----------
    runs : sequence of (bold_path, confounds_path or None)
        fMRIPrep preprocessed 4D BOLD in MNI space and its
        ``*_desc-confounds_timeseries.tsv`` (None: no confound regression).
    grid : Grid
        Analysis grid (e.g. from :func:`common_mask`).
    tr : float
        Repetition time in seconds, the same for all runs.
    confounds_strategy : dict, optional
        Keyword arguments of :func:`rsxai.preprocess.confounds.load_confounds`
        (``motion``, ``wm_csf``, ``global_signal``, ``scrub_fd``,
        ``min_contiguous``); None uses its defaults (24 motion parameters,
        white matter and CSF, no scrubbing).
    smoothing_fwhm : float, optional
        Gaussian smoothing FWHM in mm.
    high_pass, low_pass : float or None, default=0.01, 0.1
        Band-pass cut-offs in Hz (None disables a side).
    detrend_order : int, default=1
        Polynomial detrending order.

    Returns
    -------
    signals : ndarray of shape (n_volumes_total, grid.n_voxels), float32
        Runs stacked in the given order (censored volumes dropped). Each run
        is z-scored per voxel, so the whole is zero-mean with unit variance
        per voxel; voxels without signal are 0.

    Raises
    ------
    InputError
        Naming the file and the problem (not 4D, confounds rows not matching
        volumes, a run too short for the filter, ...).
    """
    strategy = dict(confounds_strategy or {})
    unknown = sorted(set(strategy) - set(CONFOUND_OPTIONS))
    if unknown:
        raise InputError(
            f"confounds_strategy has unknown key(s) {unknown}; allowed keys are "
            f"{list(CONFOUND_OPTIONS)}."
        )
    if smoothing_fwhm is not None and not (
        isinstance(smoothing_fwhm, (int, float, np.number)) and smoothing_fwhm >= 0
    ):
        raise InputError(
            f"smoothing_fwhm must be None or a FWHM in mm >= 0; got {smoothing_fwhm!r}."
        )
    if isinstance(runs, (str, os.PathLike)) or len(runs) == 0:
        raise InputError("runs must be a non-empty list of (bold_path, confounds_path) pairs.")

    cleaned_runs = []
    for run in runs:
        bold_path, confounds_path = run
        img, name = _load(bold_path)
        if len(img.shape) != 4 or img.shape[3] < 2:
            raise InputError(
                f"{name} is not a 4D time series (shape {img.shape}); rs-fMRI must be 4D "
                "(x, y, z, time). Give the 4D preprocessed BOLD series."
            )
        _warn_if_tr_differs(img, tr, name)
        if smoothing_fwhm:
            # Lazy: nilearn's image and plotting modules take about 1 s to import.
            from nilearn.image import smooth_img

            img = smooth_img(img, smoothing_fwhm)
        signals = resample_to_grid(img, grid)
        del img
        confounds = sample_mask = None
        if confounds_path is not None:
            confounds, sample_mask = load_confounds(confounds_path, **strategy)
            if confounds.shape[0] != signals.shape[0]:
                raise InputError(
                    f"{confounds_path} has {confounds.shape[0]} rows but {name} has "
                    f"{signals.shape[0]} volumes; give the confounds file of this run."
                )
        try:
            cleaned_runs.append(
                clean_signals(
                    signals,
                    tr=tr,
                    confounds=confounds,
                    sample_mask=sample_mask,
                    detrend_order=detrend_order,
                    high_pass=high_pass,
                    low_pass=low_pass,
                )
            )
        except InputError as error:
            raise InputError([f"{name}: {problem}" for problem in error.problems]) from error
        del signals
    return np.concatenate(cleaned_runs, axis=0)


def _load(img) -> tuple[nib.spatialimages.SpatialImage, str]:
    """The image and a name for messages."""
    if isinstance(img, (str, os.PathLike)):
        if not os.path.isfile(img):
            raise InputError(f"{img}: file not found.")
        try:
            return nib.load(img), str(img)
        except Exception as error:  # nibabel raises several types for unreadable files
            raise InputError(f"{img}: cannot be read as a NIfTI image ({error}).") from error
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InputError(f"expected a NIfTI image or a path to one; got {type(img).__name__}.")
    name = img.get_filename() or "in-memory image"
    return img, str(name)


def _warn_if_tr_differs(img, tr: float, name: str) -> None:
    zooms = img.header.get_zooms()
    header_tr = float(zooms[3]) if len(zooms) > 3 else 0.0
    if header_tr > 0 and not np.isclose(header_tr, tr, rtol=0.01):
        warnings.warn(
            f"{name}: the header's repetition time is {header_tr:g} but tr={tr:g} s is used; "
            "check that tr is right (in seconds).",
            stacklevel=3,
        )


def _no_overlap_problems(masks, names, brain, shape, voxel_size) -> list[str]:
    """Explain why no voxel survives common_mask: masks outside the brain, or disjoint pairs."""
    n_grid = int(np.prod(shape))
    unpacked = [np.unpackbits(m, count=n_grid).astype(bool).reshape(shape) for m in masks]
    problems = [
        f"{name}: no voxel of this mask falls inside the MNI152 brain on the {voxel_size:g} mm "
        "grid; is the mask in MNI space (check its affine)?"
        for name, mask in zip(names, unpacked, strict=True)
        if not (mask & brain).any()
    ]
    if problems:
        return problems
    disjoint = [
        f"{names[i]} and {names[j]} do not overlap inside the MNI152 brain."
        for i in range(len(unpacked))
        for j in range(i + 1, len(unpacked))
        if not (unpacked[i] & unpacked[j] & brain).any()
    ]
    if disjoint:
        return [
            *disjoint[:20],
            "The brain masks have no voxel in common; check that all are in the same "
            "(MNI) space, or lower min_fraction.",
        ]
    return [
        f"every pair of the {len(names)} brain masks overlaps, but no voxel is inside enough "
        "of them together with the MNI152 brain; lower min_fraction."
    ]
