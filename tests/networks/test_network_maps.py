"""NetworkMaps: group maps fitted on some subjects, any subject transformed."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.networks import NetworkMaps, builtin_templates, load_group_maps, match_reference_maps


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
    model = NetworkMaps(grid)
    for method in (model.transform, model.dual_regress):
        with pytest.raises(NotFittedError, match="NetworkMaps instance is not fitted yet"):
            method([np.zeros((5, grid.n_voxels))])


def test_scikit_learn_estimator_api(grid, planted, tmp_path):
    names, maps, _ = planted
    path = tmp_path / "melodic_IC.nii.gz"
    nib.save(grid.to_img(maps), path)
    force = {"visual": names.index("visual")}
    model = NetworkMaps(grid, networks=["visual"], force=force, group_maps=path, n_restarts=3)
    assert isinstance(model, BaseEstimator)
    # __init__ stores every parameter unchanged (the list stays a list).
    assert model.grid is grid and model.force is force and model.networks == ["visual"]
    assert model.get_params()["n_restarts"] == 3
    # scikit-learn's repr, changed parameters only (it may wrap lines).
    text = " ".join(repr(NetworkMaps(grid, n_restarts=3)).split())
    assert text == f"NetworkMaps(grid={grid!r}, n_restarts=3)"
    assert model.set_params(n_restarts=2, progress=True) is model
    assert (model.n_restarts, model.progress) == (2, True)
    with pytest.raises(ValueError, match="Invalid parameter 'n_restart'"):
        model.set_params(n_restart=2)
    # clone: equal parameters, object parameters deep-copied, no fitted state.
    model.fit([])
    twin = clone(model)
    assert not hasattr(twin, "components_") and hasattr(model, "components_")
    assert twin.grid is not grid and twin.grid.same_as(grid)
    assert twin.force == force and twin.force is not force
    params = {k: v for k, v in twin.get_params().items() if k not in ("grid", "force")}
    assert params == {k: v for k, v in model.get_params().items() if k not in ("grid", "force")}
    # The clone fits to the very same result.
    twin.fit([])
    np.testing.assert_array_equal(twin.components_, model.components_)
    assert twin.network_components_ == model.network_components_


def test_parameters_are_checked_in_fit(grid):
    bad = NetworkMaps("grid.nii.gz", networks="visual", min_r="high", des_norm=1)
    assert bad.networks == "visual" and bad.min_r == "high"  # stored as given
    with pytest.raises(InputError) as raised:
        bad.fit([])
    problems = raised.value.problems
    assert len(problems) == 4
    assert problems[0] == "grid must be an rsxai.grid.Grid; got str."
    assert "networks must be a non-empty sequence" in problems[1] and "'visual'" in problems[1]
    assert problems[2] == "min_r must be a number; got 'high'."
    assert problems[3] == "des_norm must be True or False; got 1."


def test_reference_maps_find_their_component_in_any_order(grid, planted):
    names, maps, _ = planted
    order = [2, 0, 3, 1]
    matches = match_reference_maps(maps[order], {"visual": maps[names.index("visual")]})
    assert order[matches["visual"]["component"]] == names.index("visual")
    assert matches["visual"]["r"] > 0.99


def test_a_forced_network_is_the_same_network_in_every_fold(grid, planted, tmp_path):
    """Each fold's ICA orders its components anew: a forced index would name another network."""
    names, maps, _ = planted
    forced = names.index("default_mode")  # the index forced on the all-subject maps
    chosen_by_index, chosen_by_map = [], []
    for fold, order in enumerate(([0, 1, 2, 3], [2, 3, 1, 0])):
        path = tmp_path / f"fold-{fold}_maps.nii.gz"
        nib.save(grid.to_img(maps[order]), path)
        common = {"networks": ["default_mode"], "group_maps": path}
        by_index = NetworkMaps(grid, force={"default_mode": forced}, **common).fit([])
        by_map = NetworkMaps(grid, force_maps={"default_mode": maps[forced]}, **common).fit([])
        chosen_by_index.append(order[by_index.network_components_["default_mode"]])
        chosen_by_map.append(order[by_map.network_components_["default_mode"]])
        assert by_map.force_matches_["default_mode"]["r"] > 0.99
    assert chosen_by_map == [forced, forced]
    assert chosen_by_index[1] != forced  # the orders differ: the bare index would drift


def test_force_and_force_maps_cannot_choose_one_network_twice(grid, planted):
    _, maps, _ = planted
    model = NetworkMaps(
        grid, force={"visual": 1}, force_maps={"visual": maps[1], "sensorimotor": maps[0][:5]}
    )
    with pytest.raises(InputError) as error:
        model.fit([])
    message = " ".join(error.value.problems)
    assert "force and force_maps both choose visual" in message
    assert f"force_maps['sensorimotor'] must have shape ({grid.n_voxels},)" in message
