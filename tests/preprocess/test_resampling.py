"""The sparse interpolation weights against scipy.ndimage.map_coordinates, the reference."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from rsxai.grid import Grid
from rsxai.preprocess import resample_to_grid
from rsxai.preprocess.resampling import interpolation_matrix

SHAPE = (9, 7, 6)


def _map_coordinates(volume, coords, order):
    return ndimage.map_coordinates(volume, coords, order=order, mode="constant", cval=0.0)


def _edge_coordinates(rng):
    """Random points in and around the volume, plus points exactly on and just past its edges."""
    last = np.array(SHAPE)[:, None] - 1.0
    random = rng.uniform(-0.6, last + 0.6, size=(3, 400))
    on_voxels = rng.integers(0, np.array(SHAPE)[:, None], size=(3, 50)).astype(float)
    edges = np.array(
        [
            [0, 0, 0],
            [8, 6, 5],  # the last voxel
            [8, 3.5, 2.25],
            [0, 6, 5],
            [-1e-9, 2, 2],  # just outside
            [8 + 1e-9, 2, 2],
            [4, 6 + 1e-6, 2],
            [4, 3, -0.5],
            [3.5, 2.5, 4.5],  # ties for nearest
        ]
    ).T
    return np.concatenate([random, on_voxels, edges], axis=1)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("layout", ["F", "C"])
def test_weights_give_map_coordinates_values(order, layout):
    rng = np.random.default_rng(0)
    volume = rng.standard_normal(SHAPE)
    coords = _edge_coordinates(rng)
    weights = interpolation_matrix(coords, SHAPE, order=order, layout=layout)
    expected = _map_coordinates(volume, coords, order)
    np.testing.assert_allclose(weights @ volume.ravel(order=layout), expected, atol=1e-12)
    # Points outside the volume sample nothing; inside, weights sum to 1 (8 at most per point).
    outside = np.any((coords < 0) | (coords > np.array(SHAPE)[:, None] - 1), axis=0)
    assert outside.sum() > 50 and (~outside).sum() > 200
    row_sums = weights.sum(axis=1)
    np.testing.assert_allclose(row_sums[~outside], 1.0)
    assert np.all(row_sums[outside] == 0)
    assert np.diff(weights.indptr).max() <= (1 if order == 0 else 8)


def test_axis_of_length_one_matches_map_coordinates():
    rng = np.random.default_rng(1)
    shape = (5, 1, 4)
    volume = rng.standard_normal(shape)
    coords = np.vstack(
        [
            rng.uniform(-0.5, 4.5, 60),
            np.r_[np.zeros(50), rng.uniform(-1, 1, 10)],
            rng.uniform(0, 3, 60),
        ]
    )
    for order in (0, 1):
        weights = interpolation_matrix(coords, shape, order=order)
        np.testing.assert_allclose(
            weights @ volume.ravel(order="F"), _map_coordinates(volume, coords, order), atol=1e-12
        )


def test_bad_options_are_errors():
    with pytest.raises(ValueError, match="order must be 0"):
        interpolation_matrix(np.zeros((3, 1)), SHAPE, order=3)
    with pytest.raises(ValueError, match="layout must be"):
        interpolation_matrix(np.zeros((3, 1)), SHAPE, layout="A")


def _oblique_las_affine():
    """LAS 3 mm voxels rotated 10 degrees about z and 5 about x: no axis is along the grid's."""
    a, b = np.deg2rad(10), np.deg2rad(5)
    rotate_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rotate_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rotate_z @ rotate_x @ np.diag([-3.0, 3.0, 3.0])
    affine[:3, 3] = [14.0, -12.0, -9.0]
    return affine


def _reference(data, affine, grid, order, clean=True):
    """The former per-volume map_coordinates implementation of resample_to_grid."""
    data = data.astype(np.float32)
    if clean:
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    source_from_world = np.linalg.inv(affine)
    world = grid.world_coordinates()
    coords = (world @ source_from_world[:3, :3].T + source_from_world[:3, 3]).T
    return np.stack([_map_coordinates(data[..., t], coords, order) for t in range(data.shape[3])])


@pytest.fixture
def oblique_run(tmp_path):
    """A 4D run (10 x 9 x 8 x 5) on an oblique LAS affine, with NaN and inf voxels, on disk."""
    rng = np.random.default_rng(2)
    data = (100 + 10 * rng.standard_normal((10, 9, 8, 5))).astype(np.float32)
    data[4, 4, 3, 2] = np.nan
    data[5, 3, 4, :] = np.inf
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(data, _oblique_las_affine()), path)
    return path, data


@pytest.fixture
def partly_outside_grid():
    """A 2 mm RAS grid whose box reaches well past the run's field of view on every side."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-30.0, -26.0, -16.0]
    mask = np.zeros((24, 22, 20), dtype=bool)
    mask[::2, 1::2, :] = True  # a sparse mask: samples in and out of the field of view
    mask[3:20, 4:18, 5:15] = True
    return Grid(mask, affine)


@pytest.mark.parametrize("interpolation", ["continuous", "nearest"])
@pytest.mark.parametrize("from_file", [True, False])
def test_resample_to_grid_matches_map_coordinates(
    oblique_run, partly_outside_grid, interpolation, from_file
):
    path, data = oblique_run
    # From the file, nibabel's data are Fortran-ordered; in memory, the C-ordered array as given.
    img = nib.load(path) if from_file else nib.Nifti1Image(data, _oblique_las_affine())
    values = resample_to_grid(img, partly_outside_grid, interpolation=interpolation)
    order = 0 if interpolation == "nearest" else 1
    # img.affine: the file keeps the affine in float32, which moves points near the edges.
    expected = _reference(data, img.affine, partly_outside_grid, order)
    assert values.dtype == np.float32 and values.shape == (5, partly_outside_grid.n_voxels)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(values).all()
    # ... although the NaN and inf voxels do reach some samples.
    assert not np.isfinite(_reference(data, img.affine, partly_outside_grid, order, False)).all()
    # Part of the grid is outside the field of view (0) and part inside (about 100).
    assert 0.1 < np.mean(values == 0) < 0.9 and np.median(values[values != 0]) > 50
    if not from_file:  # the caller's array is not changed by the NaN/inf clean-up
        assert np.isnan(data[4, 4, 3, 2]) and np.isinf(data[5, 3, 4, 0])


def test_resample_to_grid_of_finite_data_is_unchanged_by_the_clean_up_branch(
    partly_outside_grid,
):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((10, 9, 8, 3)).astype(np.float32)
    img = nib.Nifti1Image(np.asfortranarray(data), _oblique_las_affine())
    values = resample_to_grid(img, partly_outside_grid)
    expected = _reference(data, _oblique_las_affine(), partly_outside_grid, 1)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
