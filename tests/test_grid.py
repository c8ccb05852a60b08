"""The MNI analysis grid and masked <-> volume conversion."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from rsxai.grid import Grid, mni_brain_mask, mni_grid


@pytest.mark.parametrize("voxel_size", [2.0, 3.0, 4.0])
def test_mni_grid_covers_the_fsl_field_of_view(voxel_size):
    affine, shape = mni_grid(voxel_size)
    corner_far = affine @ np.array([*(np.array(shape) - 1), 1.0])
    assert np.allclose(affine[:3, 3], [-90, -126, -72])
    assert np.all(corner_far[:3] >= [90 - 1e-6, 90 - 1e-6, 108 - 1e-6])
    if voxel_size == 2.0:
        assert shape == (91, 109, 91)  # FSL's MNI152 2 mm extents


def test_mni_brain_mask_is_a_brain():
    grid = Grid.mni(4)
    # ~1.4–1.9 litres of brain at 4 mm (64 mm3 per voxel)
    assert 20_000 < grid.n_voxels < 32_000
    centre = grid.world_coordinates().mean(axis=0)
    assert np.all(np.abs(centre - [0, -18, 18]) < 15)
    assert mni_brain_mask(4).dtype == bool


def test_round_trip_between_rows_and_volumes():
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 6, 7), bool)
    mask[1:4, 2:5, 3:6] = True
    grid = Grid(mask, np.diag([3.0, 3.0, 3.0, 1.0]))
    rows = rng.standard_normal((4, grid.n_voxels)).astype(np.float32)
    img = grid.to_img(rows)
    assert img.shape == (5, 6, 7, 4)
    assert np.array_equal(grid.from_img_data(np.asarray(img.dataobj)), rows)
    assert np.all(np.asarray(img.dataobj)[~mask] == 0)
    assert grid.to_img(rows[0]).shape == (5, 6, 7)
    assert grid.bounding_box() == (slice(1, 4), slice(2, 5), slice(3, 6))


def test_bad_values_are_refused():
    grid = Grid(np.ones((2, 2, 2), bool), np.eye(4))
    with pytest.raises(ValueError, match="n_voxels=8"):
        grid.to_img(np.zeros(5))
    with pytest.raises(ValueError, match="mask is empty"):
        Grid(np.zeros((2, 2, 2), bool), np.eye(4))
    with pytest.raises(ValueError, match="voxel_size"):
        mni_grid(0)


def test_deep_copy_is_an_equal_independent_grid():
    # sklearn.base.clone deep-copies the grid of every NetworkMaps it clones.
    grid = Grid.mni(8)
    twin = copy.deepcopy(grid)
    assert twin is not grid and twin.same_as(grid) and twin.n_voxels == grid.n_voxels
    assert twin.mask is not grid.mask and twin.affine is not grid.affine
    assert np.array_equal(twin.mask, grid.mask) and np.array_equal(twin.affine, grid.affine)
    expected = f"<Grid shape={grid.shape}, {grid.n_voxels} voxels of 8 x 8 x 8 mm>"
    assert repr(twin) == repr(grid) == expected
