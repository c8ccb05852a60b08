"""Cluster tables and region rankings: blobs planted at known MNI coordinates are found
with their sizes, peaks and labels; nothing is found where nothing was planted;
6- versus 26-connectivity; clusters of opposite sign are kept apart."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rsxai.anatomy import cluster_table, label_coordinates, top_regions
from rsxai.anatomy.atlas import NO_LABEL, grid_labels
from rsxai.anatomy.clusters import cluster_columns
from rsxai.grid import Grid

# 2 mm voxels; x in [-50, 48], y in [-100, 18], z in [0, 78] mm.
AFFINE = np.array([[2.0, 0, 0, -50.0], [0, 2.0, 0, -100.0], [0, 0, 2.0, 0.0], [0, 0, 0, 1.0]])
SHAPE = (50, 60, 40)
MOTOR = np.array([-38.0, -26.0, 54.0])  # left postcentral / precentral
VISUAL = np.array([10.0, -88.0, 6.0])  # right calcarine


@pytest.fixture(scope="module")
def grid():
    mask = np.ones(SHAPE, dtype=bool)
    mask[:, :, :2] = False  # a mask that is not the whole box
    return Grid(mask, AFFINE)


def ball(grid, centre, radius_mm):
    """Masked voxels within radius_mm of centre (mm) and their distance to it."""
    distance = np.linalg.norm(grid.world_coordinates() - centre, axis=1)
    return distance <= radius_mm, distance


def planted_map(grid):
    """A positive ball of radius 6 mm at MOTOR and a negative one of radius 4 mm at VISUAL."""
    motor, d_motor = ball(grid, MOTOR, 6.0)
    visual, d_visual = ball(grid, VISUAL, 4.0)
    stat = np.zeros(grid.n_voxels)
    stat[motor] = 6.0 - 0.5 * d_motor[motor]
    stat[visual] = -(5.0 - 0.5 * d_visual[visual])
    return stat, motor, visual


def test_planted_blobs_are_found_with_sizes_peaks_and_labels(grid):
    stat, motor, visual = planted_map(grid)
    table = cluster_table(stat, motor | visual, grid)
    assert list(table.columns) == cluster_columns()
    assert len(table) == 2
    assert table["cluster_id"].tolist() == [1, 2]
    # Sorted by size: the 6 mm ball first; sizes counted independently.
    assert table["size_voxels"].tolist() == [motor.sum(), visual.sum()]
    assert motor.sum() > visual.sum() > 1
    np.testing.assert_allclose(table["size_mm3"], table["size_voxels"] * 8.0)
    np.testing.assert_array_equal(table.loc[0, ["peak_x", "peak_y", "peak_z"]], MOTOR)
    np.testing.assert_array_equal(table.loc[1, ["peak_x", "peak_y", "peak_z"]], VISUAL)
    assert table["peak_stat"].tolist() == [6.0, -5.0]  # the negative blob's peak is its minimum
    expected = label_coordinates([MOTOR, VISUAL], "harvard_oxford")
    assert table["peak_label_harvard_oxford"].tolist() == expected["label"].tolist()
    assert table["peak_label_harvard_oxford"].tolist() == [
        "Left Postcentral Gyrus",
        "Right Intracalcarine Cortex",
    ]
    np.testing.assert_array_equal(
        table["peak_probability_harvard_oxford"], expected["probability"]
    )
    assert table["peak_label_aal"].tolist() == ["Postcentral_L", "Calcarine_R"]


def test_regions_text_gives_the_share_of_each_region(grid):
    stat, motor, _ = planted_map(grid)
    table = cluster_table(stat, motor, grid, atlases=("aal",), min_region_percent=0.0)
    assert list(table.columns) == cluster_columns(("aal",))
    parts = [
        re.fullmatch(r"(.+) (\d+)%", part) for part in table.loc[0, "regions_aal"].split("; ")
    ]
    assert all(parts)
    shares = {match.group(1): int(match.group(2)) for match in parts}
    # Against a direct count over the AAL labels of the ball's voxels.
    labels = grid_labels(grid, "aal")
    codes, counts = np.unique(labels.codes[motor], return_counts=True)
    expected = {
        labels.names[c]: round(100 * n / motor.sum()) for c, n in zip(codes, counts, strict=True)
    }
    assert shares == expected
    assert next(iter(shares)) == "Postcentral_L"  # largest first
    assert abs(sum(shares.values()) - 100) <= len(shares)  # rounding only
    # With the default threshold small regions are left out but the largest stays.
    default = cluster_table(stat, motor, grid, atlases=("aal",))
    kept = default.loc[0, "regions_aal"].split("; ")
    assert kept[0].startswith("Postcentral_L")
    assert all(int(part.rsplit(" ", 1)[1][:-1]) >= 5 for part in kept)


def test_nothing_significant_gives_an_empty_table_with_the_columns(grid):
    rng = np.random.default_rng(0)
    stat = rng.standard_normal(grid.n_voxels)
    table = cluster_table(
        stat, np.zeros(grid.n_voxels, dtype=bool), grid, p_fwe=np.ones(grid.n_voxels)
    )
    assert table.empty
    assert list(table.columns) == [*cluster_columns(), "min_p_fwe"]
    assert table["size_voxels"].dtype == np.int64
    assert table["peak_x"].dtype == np.float64


def test_connectivity_6_splits_what_26_joins_on_corner_and_edge_contacts(grid):
    significant = np.zeros(SHAPE, dtype=bool)
    significant[10:12, 10:12, 10:12] = True  # a 2 x 2 x 2 cube
    significant[12:14, 12:14, 12:14] = True  # touches the first by one corner
    significant[30:32, 30:32, 30:32] = True  # a third cube ...
    significant[32:34, 32:34, 30:32] = True  # ... touching it along an edge
    significant = significant[grid.mask]
    stat = np.where(significant, 3.0, 0.0)
    sizes = {
        connectivity: cluster_table(
            stat, significant, grid, connectivity=connectivity, atlases=()
        )["size_voxels"].tolist()
        for connectivity in (6, 18, 26)
    }
    assert sizes[26] == [16, 16]
    assert sizes[18] == [16, 8, 8]  # the edge joins, the corner does not
    assert sizes[6] == [8, 8, 8, 8]


def test_clusters_of_opposite_sign_are_kept_apart(grid):
    significant = np.zeros(SHAPE, dtype=bool)
    significant[20:26, 20:24, 20:24] = True
    values = np.zeros(SHAPE)
    values[20:23, 20:24, 20:24] = 4.0  # faces touch at x index 22 / 23
    values[23:26, 20:24, 20:24] = -4.5
    values[21, 21, 21] = 5.0
    table = cluster_table(values[grid.mask], significant[grid.mask], grid, atlases=())
    assert table["size_voxels"].tolist() == [48, 48]
    assert sorted(table["peak_stat"].tolist()) == [-4.5, 5.0]
    peak = table.loc[table["peak_stat"] == 5.0, ["peak_x", "peak_y", "peak_z"]].to_numpy()[0]
    np.testing.assert_array_equal(peak, AFFINE[:3, :3] @ [21, 21, 21] + AFFINE[:3, 3])


def test_min_p_fwe_is_the_smallest_p_of_each_cluster(grid):
    stat, motor, visual = planted_map(grid)
    rng = np.random.default_rng(1)
    p = rng.uniform(0.001, 0.05, grid.n_voxels)
    table = cluster_table(stat, motor | visual, grid, atlases=(), p_fwe=p)
    assert table["min_p_fwe"].tolist() == [p[motor].min(), p[visual].min()]


def test_invalid_inputs_name_the_parameter(grid):
    stat = np.zeros(grid.n_voxels)
    significant = np.zeros(grid.n_voxels, dtype=bool)
    with pytest.raises(ValueError, match="connectivity must be one of"):
        cluster_table(stat, significant, grid, connectivity=8)
    with pytest.raises(ValueError, match="stat must have shape"):
        cluster_table(stat[:-1], significant, grid)
    with pytest.raises(ValueError, match="significant must be a boolean"):
        cluster_table(stat, significant.astype(int), grid)
    with pytest.raises(ValueError, match="atlases must be among"):
        cluster_table(stat, significant, grid, atlases=("talairach",))
    with pytest.raises(ValueError, match="rank_by must be one of"):
        top_regions(stat, grid, rank_by="median")


def test_top_regions_ranks_by_mean_or_sum_as_asked(grid):
    labels = grid_labels(grid, "harvard_oxford")
    names = list(labels.names)
    small = labels.codes == names.index("Left Putamen")
    large = labels.codes == names.index("Left Precentral Gyrus")
    assert 5 <= small.sum() < large.sum() / 2
    values = np.zeros(grid.n_voxels)
    values[small] = 3.0  # concentrated
    values[large] = 1.0  # diffuse but larger in total
    values[labels.codes == 0] = 100.0  # unlabelled voxels never form a region
    by_mean = top_regions(values, grid, n=3)
    assert by_mean["region"].tolist()[:2] == ["Left Putamen", "Left Precentral Gyrus"]
    assert by_mean["rank"].tolist() == [1, 2, 3]
    by_sum = top_regions(values, grid, n=2, rank_by="sum")
    assert by_sum["region"].tolist() == ["Left Precentral Gyrus", "Left Putamen"]
    row = by_sum.iloc[0]
    assert row["n_voxels"] == large.sum()
    assert row["sum"] == pytest.approx(values[large].sum())
    assert row["mean"] == pytest.approx(1.0)
    assert NO_LABEL not in set(top_regions(values, grid, n=200)["region"])
    # Regions with fewer voxels than min_voxels are not ranked.
    strict = top_regions(values, grid, n=200, min_voxels=int(small.sum()) + 1)
    assert "Left Putamen" not in set(strict["region"])
