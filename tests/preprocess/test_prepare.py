"""resample_to_grid, common_mask and prepare_subject on small synthetic NIfTI images."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.image import resample_img, smooth_img
from nilearn.signal import clean as nilearn_clean

from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_brain_mask, mni_grid
from rsxai.preprocess import common_mask, load_confounds, prepare_subject, resample_to_grid

FSL_SHAPE = (91, 109, 91)


def fsl_las_affine():
    """FSL's MNI152 2 mm grid: LAS, x decreasing with the first index."""
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [90.0, -126.0, -72.0]
    return affine


def ras_2mm_affine():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90.0, -126.0, -72.0]
    return affine


def world_of_voxels(affine, shape):
    ijk = np.indices(shape).reshape(3, -1).T
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def gaussian_blob(world, centre, sigma=5.0):
    return np.exp(-((world - np.asarray(centre)) ** 2).sum(-1) / (2 * sigma**2))


def whole_grid(voxel_size=4):
    affine, shape = mni_grid(voxel_size)
    return Grid(np.ones(shape, dtype=bool), affine)


# ---------------------------------------------------------------- resample_to_grid


@pytest.mark.parametrize("source_affine", [fsl_las_affine(), ras_2mm_affine()], ids=["LAS", "RAS"])
def test_blob_lands_at_its_mni_coordinate(source_affine):
    centres = [(30.0, -22.0, 40.0), (-46.0, -70.0, 8.0)]  # one per volume
    world = world_of_voxels(source_affine, FSL_SHAPE)
    data = np.stack([gaussian_blob(world, c) for c in centres], axis=-1).astype(np.float32)
    grid = whole_grid(4)
    values = resample_to_grid(nib.Nifti1Image(data, source_affine), grid)
    assert values.shape == (2, grid.n_voxels) and values.dtype == np.float32
    grid_world = grid.world_coordinates()
    for volume, centre in zip(values, centres, strict=True):
        np.testing.assert_array_equal(grid_world[np.argmax(volume)], centre)
        centre_of_mass = volume @ grid_world / volume.sum()
        np.testing.assert_allclose(centre_of_mass, centre, atol=0.5)
        # 4 mm voxel centres lie on the 2 mm lattice: the samples are exact.
        np.testing.assert_allclose(volume, gaussian_blob(grid_world, centre), atol=1e-6)


@pytest.mark.parametrize("source", ["C-ordered array", "Fortran-ordered array", "file"])
def test_identical_grid_passes_through(tmp_path, source):
    rng = np.random.default_rng(0)
    affine, shape = mni_grid(4)
    mask = np.zeros(shape, dtype=bool)
    mask[10:20, 12:30, 5:25] = True
    mask[3, 4, 5] = True  # a voxel apart, to check the order of the columns
    grid = Grid(mask, affine)
    data = rng.normal(size=(*shape, 3)).astype(np.float32)
    data[11, 13, 6, 1] = np.nan  # inside the mask: read as 0
    data[0, 0, 0, :] = np.inf  # outside the mask: never read
    expected = np.nan_to_num(data[mask].T, nan=0.0)
    img = nib.Nifti1Image(np.asfortranarray(data) if source != "C-ordered array" else data, affine)
    if source == "file":
        nib.save(img, tmp_path / "bold.nii.gz")
        img = nib.load(tmp_path / "bold.nii.gz")  # nibabel reads Fortran-ordered arrays
    values = resample_to_grid(img, grid)
    np.testing.assert_array_equal(values, expected)
    assert values.flags.c_contiguous and values.dtype == np.float32
    assert not np.shares_memory(values, data)


def test_matches_nilearn_trilinear_resampling_off_lattice():
    # A rotated 3 mm image whose voxels do not line up with the 4 mm grid, and
    # whose field of view covers only part of the grid.
    rng = np.random.default_rng(1)
    angle = np.deg2rad(10)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    source_affine = np.eye(4)
    source_affine[:3, :3] = 3.0 * rotation
    source_affine[:3, 3] = [-31.0, -29.5, -20.3]
    data = rng.normal(size=(18, 20, 16, 2)).astype(np.float32)
    img = nib.Nifti1Image(data, source_affine)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-40.0, -40.0, -30.0]
    grid = Grid(np.ones((22, 22, 18), dtype=bool), affine)
    values = resample_to_grid(img, grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = resample_img(
            img,
            target_affine=affine,
            target_shape=grid.shape,
            interpolation="linear",
            force_resample=True,
            copy_header=True,
        )
    expected = np.asarray(reference.dataobj)[grid.mask].T
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert (values == 0).all(axis=0).sum() > 100  # grid voxels outside the image's view


def test_non_finite_values_and_outside_voxels_give_zero_not_nan():
    data = np.ones((10, 10, 10), dtype=np.float32)
    data[5, 5, 5] = np.nan
    data[2, 2, 2] = np.inf
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    grid = Grid(np.ones((14, 14, 14), dtype=bool), affine)
    values = resample_to_grid(nib.Nifti1Image(data, affine * np.array([[1], [1], [1], [1]])), grid)
    assert np.isfinite(values).all()
    volume = values[0].reshape(grid.shape)
    assert volume[12, 12, 12] == 0.0  # outside the image
    assert volume[5, 5, 5] == 0.0 and volume[1, 1, 1] == 1.0


def test_unknown_interpolation_is_an_error():
    img = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4))
    with pytest.raises(
        InputError,
        match=r"interpolation must be one of 'continuous', 'linear', 'nearest'; got 'cubic'",
    ):
        resample_to_grid(img, Grid(np.ones((2, 2, 2), bool), np.eye(4)), interpolation="cubic")


# ---------------------------------------------------------------- common_mask

BOXES = {  # world-space boxes (mm): x, y, z ranges
    "a": ((-50, 50), (-80, 40), (-20, 60)),
    "b": ((-30, 60), (-60, 50), (-30, 40)),
    "c": ((-60, 40), (-90, 20), (-10, 70)),
}


def box_mask(path, box, affine, shape):
    world = world_of_voxels(affine, shape)
    inside = np.ones(shape, dtype=bool)
    for axis, (low, high) in enumerate(box):
        inside &= (world[..., axis] >= low) & (world[..., axis] <= high)
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), affine), path)
    return path


def inside_box(world, box):
    return np.all(
        [(world[:, a] >= lo) & (world[:, a] <= hi) for a, (lo, hi) in enumerate(box)], axis=0
    )


@pytest.fixture
def three_masks(tmp_path):
    affine_4mm, shape_4mm = mni_grid(4)
    return [
        box_mask(tmp_path / "sub-01_mask.nii.gz", BOXES["a"], fsl_las_affine(), FSL_SHAPE),
        box_mask(tmp_path / "sub-02_mask.nii.gz", BOXES["b"], ras_2mm_affine(), FSL_SHAPE),
        box_mask(tmp_path / "sub-03_mask.nii.gz", BOXES["c"], affine_4mm, shape_4mm),
    ]


@pytest.mark.parametrize("min_fraction", [1.0, 2 / 3])
def test_common_mask_keeps_voxels_inside_enough_masks_and_the_brain(three_masks, min_fraction):
    grid = common_mask(three_masks, 4, min_fraction=min_fraction)
    affine, shape = mni_grid(4)
    np.testing.assert_array_equal(grid.affine, affine)
    world = whole_grid(4).world_coordinates()
    count = sum(inside_box(world, box).astype(int) for box in BOXES.values())
    expected = (count >= round(min_fraction * 3)).reshape(shape) & mni_brain_mask(4)
    np.testing.assert_array_equal(grid.mask, expected)
    assert 0 < grid.n_voxels < mni_brain_mask(4).sum()


def test_no_subject_mask_gives_the_mni_brain_mask():
    grid = common_mask([], 4)
    np.testing.assert_array_equal(grid.mask, mni_brain_mask(4))
    np.testing.assert_array_equal(grid.affine, mni_grid(4)[0])


def test_disjoint_masks_are_named(tmp_path):
    left = box_mask(
        tmp_path / "left.nii.gz", ((-70, -20), (-60, 20), (0, 40)), fsl_las_affine(), FSL_SHAPE
    )
    right = box_mask(
        tmp_path / "right.nii.gz", ((20, 70), (-60, 20), (0, 40)), fsl_las_affine(), FSL_SHAPE
    )
    with pytest.raises(InputError, match=r"left\.nii\.gz and .*right\.nii\.gz do not overlap"):
        common_mask([left, right], 4)
    # They are fine when one mask is enough.
    assert common_mask([left, right], 4, min_fraction=0.5).n_voxels > 0


def test_mask_outside_mni_space_is_named(tmp_path, three_masks):
    shifted = fsl_las_affine()
    shifted[:3, 3] += 1000.0
    far = box_mask(tmp_path / "native_space_mask.nii.gz", ((-50, 50),) * 3, shifted, FSL_SHAPE)
    with pytest.raises(InputError, match=r"native_space_mask\.nii\.gz: no voxel .*MNI"):
        common_mask([three_masks[0], far], 4)


# ---------------------------------------------------------------- prepare_subject

TR = 2.0
BOLD_AFFINE = np.array([[-2.0, 0, 0, 22], [0, 2, 0, -24], [0, 0, 2, -24], [0, 0, 0, 1]])
BOLD_SHAPE = (24, 24, 24)  # x 22..-24, y and z -24..22 mm


@pytest.fixture
def small_grid():
    # 4 mm voxels from -20 to 24 mm: the last plane lies outside the BOLD field of view.
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-20.0, -20.0, -20.0]
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[1:, 2:10, 2:10] = True
    return Grid(mask, affine)


def write_bold_run(folder, name, n_volumes, seed, fd_spike=None):
    """A 4D BOLD run with drifts and motion-driven signal, and its fMRIPrep confounds TSV."""
    rng = np.random.default_rng(seed)
    motion = np.cumsum(rng.normal(0, 0.05, (n_volumes, 6)), axis=0)
    wm_csf = np.cumsum(rng.normal(0, 1, (n_volumes, 2)), axis=0)
    neural = np.cumsum(rng.normal(size=(*BOLD_SHAPE, n_volumes)), axis=-1)
    drift = rng.normal(0, 0.5, BOLD_SHAPE)[..., None] * np.arange(n_volumes)
    loadings = rng.normal(0, 5, (*BOLD_SHAPE, 8))
    data = 1000 + neural + drift + loadings @ np.hstack([motion, wm_csf]).T
    img = nib.Nifti1Image(data.astype(np.float32), BOLD_AFFINE)
    img.header.set_zooms((2.0, 2.0, 2.0, TR))
    bold = folder / f"{name}_bold.nii.gz"
    nib.save(img, bold)
    table = pd.DataFrame(
        motion, columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    )
    table["white_matter"], table["csf"] = wm_csf.T
    fd = np.full(n_volumes, 0.1)
    fd[0] = np.nan
    if fd_spike is not None:
        fd[fd_spike] = 1.5
    table["framewise_displacement"] = fd
    confounds = folder / f"{name}_desc-confounds_timeseries.tsv"
    table.to_csv(confounds, sep="\t", index=False, na_rep="n/a")
    return bold, confounds


def grand_mean_scaled(cleaned, signals):
    """FEAT's grand-mean scaling: the run's median non-zero intensity becomes 10,000.

    ``cleaned`` is demeaned first: nilearn leaves a trace of each voxel's mean
    after filtering when it does not z-score; rsxai removes it.
    """
    return (cleaned - cleaned.mean(axis=0)) * 10000.0 / np.median(signals[signals != 0])


def reference_run(bold, confounds_path, grid, smoothing_fwhm=None, **strategy):
    """Our resampling, then nilearn's own cleaning (not z-scored), then grand-mean scaling."""
    img = smooth_img(bold, smoothing_fwhm) if smoothing_fwhm else bold
    signals = resample_to_grid(img, grid).astype(np.float64)
    confounds, sample_mask = load_confounds(confounds_path, **strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nilearn_clean(
            signals,
            detrend=True,
            standardize=False,
            confounds=confounds,
            sample_mask=sample_mask,
            low_pass=0.1,
            high_pass=0.01,
            t_r=TR,
        )
    return grand_mean_scaled(cleaned, signals)


def assert_close_to(actual, expected):
    """Equal to 1e-5 of the reference's standard deviation (float32 output)."""
    np.testing.assert_allclose(actual, expected, atol=1e-5 * expected.std())


def test_prepare_subject_cleans_and_concatenates_runs(tmp_path, small_grid):
    runs = [write_bold_run(tmp_path, "run-1", 60, 0), write_bold_run(tmp_path, "run-2", 50, 1)]
    signals = prepare_subject(runs, small_grid, tr=TR)
    assert signals.shape == (110, small_grid.n_voxels) and signals.dtype == np.float32
    assert np.isfinite(signals).all()

    outside = small_grid.world_coordinates()[:, 0] > 22  # beyond the BOLD field of view
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(signals[:, outside], 0.0)
    for block in (signals[:60], signals[60:]):
        np.testing.assert_allclose(block[:, ~outside].mean(0), 0, atol=1e-3)
        # Not z-scored: each voxel keeps its own amplitude.
        std = block[:, ~outside].std(0, ddof=1)
        assert std.max() > 2 * std.min()

    expected = np.vstack([reference_run(b, c, small_grid) for b, c in runs])
    inside = ~outside
    assert_close_to(signals[:, inside], expected[:, inside])
    # In units of 10,000 / the run's median intensity: a run twice as bright
    # (another scanner gain) gives the same series.
    bright = tmp_path / "bright_bold.nii.gz"
    img = nib.load(runs[1][0])
    nib.save(nib.Nifti1Image(2.0 * np.asarray(img.dataobj), img.affine, img.header), bright)
    np.testing.assert_allclose(
        prepare_subject([(bright, runs[1][1])], small_grid, tr=TR),
        signals[60:],
        atol=1e-5 * np.abs(signals).max(),
    )
    # Each run alone gives its own block: runs are cleaned separately.
    np.testing.assert_array_equal(prepare_subject(runs[1:], small_grid, tr=TR), signals[60:])


def test_prepare_subject_smoothing_and_scrubbing(tmp_path, small_grid):
    bold, confounds = write_bold_run(tmp_path, "run-1", 60, 2, fd_spike=30)
    strategy = {"motion": "6", "scrub_fd": 0.5, "min_contiguous": 0}
    signals = prepare_subject(
        [(bold, confounds)], small_grid, tr=TR, confounds_strategy=strategy, smoothing_fwhm=6.0
    )
    assert signals.shape == (59, small_grid.n_voxels)  # volume 30 censored
    inside = small_grid.world_coordinates()[:, 0] < 22
    expected = reference_run(bold, confounds, small_grid, smoothing_fwhm=6.0, **strategy)
    assert_close_to(signals[:, inside], expected[:, inside])
    unsmoothed = prepare_subject(
        [(bold, confounds)], small_grid, tr=TR, confounds_strategy=strategy
    )
    assert np.abs(unsmoothed - signals).max() > 0.5 * signals.std()


def test_prepare_subject_without_confounds(tmp_path, small_grid):
    bold, _ = write_bold_run(tmp_path, "run-1", 60, 3)
    signals = prepare_subject([(bold, None)], small_grid, tr=TR)
    raw = resample_to_grid(bold, small_grid).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nilearn_clean(
            raw, detrend=True, standardize=False, low_pass=0.1, high_pass=0.01, t_r=TR
        )
    expected = grand_mean_scaled(cleaned, raw)
    inside = small_grid.world_coordinates()[:, 0] < 22
    assert_close_to(signals[:, inside], expected[:, inside])


def test_prepare_subject_errors(tmp_path, small_grid):
    bold, confounds = write_bold_run(tmp_path, "run-1", 60, 4)
    _, short_confounds = write_bold_run(tmp_path, "run-2", 50, 5)
    volume = tmp_path / "anat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), volume)
    with pytest.raises(
        InputError, match=r"anat\.nii\.gz is not a 4D time series.*4x4x4|anat\.nii\.gz is not a 4D"
    ):
        prepare_subject([(volume, None)], small_grid, tr=TR)
    with pytest.raises(
        InputError, match=r"run-2_desc-confounds_timeseries\.tsv has 50 rows but .*60 volumes"
    ):
        prepare_subject([(bold, short_confounds)], small_grid, tr=TR)
    with pytest.raises(InputError, match=r"unknown key\(s\) \['fd'\]; allowed keys are"):
        prepare_subject([(bold, confounds)], small_grid, tr=TR, confounds_strategy={"fd": 0.5})
    with pytest.raises(InputError, match=r"run-1_bold\.nii\.gz: low_pass=0\.3 Hz .*tr=2"):
        prepare_subject([(bold, confounds)], small_grid, tr=TR, low_pass=0.3)
    with pytest.warns(UserWarning, match=r"header's repetition time is 2 but tr=3"):
        prepare_subject([(bold, confounds)], small_grid, tr=3.0)
    img = nib.load(bold)
    demeaned = tmp_path / "demeaned_bold.nii.gz"
    data = np.asarray(img.dataobj)
    demeaned_data = data - data.mean(-1, keepdims=True) - 1.0
    nib.save(nib.Nifti1Image(demeaned_data, img.affine, img.header), demeaned)
    with pytest.raises(
        InputError, match=r"demeaned_bold\.nii\.gz: the median intensity .* is -[.0-9]+; the grand"
    ):
        prepare_subject([(demeaned, None)], small_grid, tr=TR)
