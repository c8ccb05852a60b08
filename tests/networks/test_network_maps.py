"""NetworkMaps: group maps fitted on some subjects, any subject transformed."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.networks.network_maps import NetworkMaps, load_group_maps
from rsxai.networks.templates import builtin_templates


@pytest.fixture(scope="module")
def grid():
    return Grid.mni(8)


@pytest.fixture(scope="module")
def planted(grid):
    """Group maps = built-in templates of 4 networks (shuffled), and subjects mixing them."""
    templates = builtin_templates(grid)
    names = ["auditory", "visual", "default_mode", "sensorimotor"]
    maps = np.stack([templates.maps[templates.names.index(n)] for n in names])
    rng = np.random.default_rng(0)

    def subject(seed: int) -> np.ndarray:
        local = np.random.default_rng(seed)
        timecourses = local.standard_normal((80, len(names)))
        data = timecourses @ maps + 0.5 * local.standard_normal((80, grid.n_voxels))
        return (data - data.mean(0)) / data.std(0)

    return names, maps + 0.01 * rng.standard_normal(maps.shape), subject


def test_imported_group_maps_are_labelled_and_used(grid, planted, tmp_path):
    names, maps, subject = planted
    path = tmp_path / "melodic_IC.nii.gz"
    nib.save(grid.to_img(maps), path)
    model = NetworkMaps(grid, group_maps=path).fit([])
    assert model.ica_ is None
    assert model.network_components_ == {
        "sensorimotor": names.index("sensorimotor"),
        "visual": names.index("visual"),
    }
    out = model.transform([subject(1), lambda: subject(2)])
    assert out.shape == (2, 2, grid.n_voxels) and out.dtype == np.float32
    # Each subject's stage-2 visual map resembles the planted visual map.
    visual = maps[names.index("visual")]
    assert np.corrcoef(out[0, 1], visual)[0, 1] > 0.8


def test_fit_never_touches_held_out_subjects(grid, planted):
    _, _, subject = planted
    touched = []

    def loader(seed):
        def load():
            touched.append(seed)
            return subject(seed)

        return load

    model = NetworkMaps(grid, n_components=4, n_restarts=2, min_r=0.1)
    model.fit([loader(s) for s in range(4)])
    assert sorted(set(touched)) == [0, 1, 2, 3]
    touched.clear()
    model.transform([loader(10)])
    assert touched == [10]  # transform reads only the subject it is given
    assert model.components_.shape == (4, grid.n_voxels)


def test_group_maps_errors(grid, tmp_path):
    flat = tmp_path / "three_d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), flat)
    with pytest.raises(InputError, match="must be 4D"):
        load_group_maps(flat, grid)
    far = tmp_path / "far.nii.gz"
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = 5000.0  # kilometres away from MNI space
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5, 2), np.float32), affine), far)
    with pytest.raises(InputError, match="do not overlap the analysis brain mask"):
        load_group_maps(far, grid)
    with pytest.raises(InputError, match="cannot read the group maps"):
        load_group_maps(tmp_path / "missing.nii.gz", grid)


def test_transform_before_fit(grid):
    with pytest.raises(RuntimeError, match="not fitted"):
        NetworkMaps(grid).transform([np.zeros((5, grid.n_voxels))])
