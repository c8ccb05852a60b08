"""Group explanation maps, agreement with the group statistics, localisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rsxai.explain import agreement, group_maps, localisation
from rsxai.explain.group_metrics import normalise_maps


def test_normalise_maps_gives_absolute_shares_and_flags_empty_maps():
    maps = np.array([[1.0, -3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    normalised, empty = normalise_maps(maps)
    np.testing.assert_allclose(normalised[0], [0.125, 0.375, 0.0, 0.5])
    np.testing.assert_allclose(normalised[2], [0.25] * 4)
    assert np.isnan(normalised[1]).all()
    np.testing.assert_array_equal(empty, [False, True, False])


def test_group_maps_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    n, v = 12, 300
    maps = rng.normal(size=(n, v)) * rng.uniform(0.1, 50, size=(n, 1))  # scales differ
    correct = rng.random(n) < 0.6
    result = group_maps(maps, correct)

    shares = np.abs(maps) / np.abs(maps).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result["meanall"], shares.mean(axis=0))
    np.testing.assert_allclose(result["meancorrect"], shares[correct].mean(axis=0))
    expected_t = stats.ttest_1samp(shares, popmean=1 / v, axis=0).statistic
    np.testing.assert_allclose(result["tstat"], expected_t, rtol=1e-10)
    assert (result["n_all"], result["n_correct"], result["n_empty"]) == (n, correct.sum(), 0)


def test_group_tstat_finds_planted_concentration_and_nothing_in_noise():
    rng = np.random.default_rng(1)
    n, v = 20, 2000
    noise = rng.random((n, v))
    null_t = group_maps(noise, np.ones(n, bool))["tstat"]
    # Maps independent across voxels: |t| beyond the 0.1 % critical value is rare.
    critical = stats.t.ppf(1 - 0.0005, df=n - 1)
    assert np.mean(np.abs(null_t) > critical) < 0.01

    planted = noise.copy()
    planted[:, :20] += 3.0
    t = group_maps(planted, np.ones(n, bool))["tstat"]
    assert (t[:20] > critical).all()
    assert np.mean(np.abs(t[20:]) > critical) < 0.05


def test_group_maps_leave_out_empty_maps_and_handle_no_correct_subject():
    rng = np.random.default_rng(2)
    maps = rng.random((5, 50))
    maps[3] = 0.0
    result = group_maps(maps, np.zeros(5, bool))
    assert result["n_empty"] == 1 and result["n_all"] == 4 and result["n_correct"] == 0
    assert np.isnan(result["meancorrect"]).all()
    shares = maps[[0, 1, 2, 4]] / maps[[0, 1, 2, 4]].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result["meanall"], shares.mean(axis=0))
    assert np.isclose(result["meanall"].sum(), 1.0)


def test_group_maps_reject_bad_input():
    with pytest.raises(ValueError, match="correct must be a bool array"):
        group_maps(np.ones((3, 4)), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        group_maps(np.array([[1.0, np.nan]]), np.array([True]))


def test_agreement_spearman_matches_scipy_against_absolute_t():
    rng = np.random.default_rng(3)
    v = 500
    t_map = rng.normal(size=v) * 3
    group = np.abs(t_map) + rng.normal(scale=1.0, size=v)
    significant = np.abs(t_map) > 6
    result = agreement(group, t_map, significant)
    expected = stats.spearmanr(group, np.abs(t_map)).statistic
    assert result["spearman_r"] == pytest.approx(expected)
    assert result["n_voxels"] == v and result["n_significant"] == significant.sum()
    assert result["reason"] == ""


def test_agreement_inside_the_network_region_sees_what_the_brain_hides():
    # Outside the network, relevance and |t| are unrelated noise that swamps the
    # whole-brain ranks; inside it, relevance follows |t|.
    rng = np.random.default_rng(4)
    v = 2000
    region = np.zeros(v, dtype=bool)
    region[:150] = True
    t_map = rng.normal(size=v)
    group = rng.normal(size=v)
    group[region] = np.abs(t_map[region]) + rng.normal(scale=0.3, size=region.sum())
    result = agreement(group, t_map, np.abs(t_map) > 10, region=region)
    expected = stats.spearmanr(group[region], np.abs(t_map[region])).statistic
    assert result["spearman_region"] == pytest.approx(expected)
    assert result["spearman_region"] > 0.7 > 0.3 > result["spearman_r"]
    assert result["n_region"] == 150
    assert np.isnan(agreement(group, t_map, np.abs(t_map) > 10)["spearman_region"])


def test_agreement_dice_is_one_when_top_voxels_are_the_significant_ones():
    v = 400
    group = np.linspace(0.0, 1.0, v)  # highest relevance at the end
    significant = np.zeros(v, bool)
    significant[-20:] = True  # 5 % of 400
    t_map = np.where(significant, 8.0, 0.5)
    result = agreement(group, t_map, significant, top_fraction=0.05)
    assert result["n_top"] == 20
    assert result["dice"] == 1.0
    assert result["dice_chance"] == pytest.approx(2 * 20 * 20 / 400 / 40)


def test_agreement_dice_partial_overlap_by_hand():
    group = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    significant = np.zeros(10, bool)
    significant[[1, 5, 6]] = True
    result = agreement(group, np.arange(10.0), significant, top_fraction=0.2)
    # Top 2 voxels: 0 and 1; overlap {1}: 2 * 1 / (2 + 3).
    assert result["n_top"] == 2
    assert result["dice"] == pytest.approx(0.4)


def test_agreement_without_significant_voxels_is_nan_with_a_reason():
    rng = np.random.default_rng(4)
    result = agreement(rng.random(100), rng.normal(size=100), np.zeros(100, bool))
    assert np.isnan(result["dice"]) and np.isnan(result["dice_chance"])
    assert "no FWE-significant voxel" in result["reason"]
    assert result["n_significant"] == 0
    assert np.isfinite(result["spearman_r"])


def test_agreement_ignores_non_finite_voxels():
    rng = np.random.default_rng(5)
    group, t_map = rng.random(60), rng.normal(size=60)
    t_map[:10] = np.nan
    result = agreement(group, t_map, np.abs(t_map) > 1.5)
    assert result["n_voxels"] == 50
    expected = stats.spearmanr(group[10:], np.abs(t_map[10:])).statistic
    assert result["spearman_r"] == pytest.approx(expected)


def test_agreement_all_nan_group_map_explains_itself():
    result = agreement(np.full(30, np.nan), np.ones(30), np.ones(30, bool))
    assert np.isnan(result["spearman_r"]) and np.isnan(result["dice"])
    assert "finite" in result["reason"]


def test_agreement_rejects_mismatched_shapes_and_non_bool_mask():
    with pytest.raises(ValueError, match="t_map"):
        agreement(np.ones(5), np.ones(4), np.ones(5, bool))
    with pytest.raises(ValueError, match="fwe_significant must be a bool"):
        agreement(np.ones(5), np.ones(5), np.ones(5))


def test_localisation_ratio_near_one_for_random_maps_and_large_when_concentrated():
    rng = np.random.default_rng(6)
    n, v = 40, 1000
    region = np.zeros(v, bool)
    region[100:150] = True  # 5 % of voxels
    random_maps = rng.random((n, v))
    result = localisation(random_maps, region)
    assert result["region_share"] == pytest.approx(0.05)
    assert result["mean_mass_ratio"] == pytest.approx(1.0, abs=0.05)
    assert result["pointing_hit_rate"] < 0.2  # chance is 0.05

    concentrated = random_maps * 0.1
    concentrated[:, region] += 1.0
    result = localisation(concentrated, region)
    manual = concentrated[:, region].sum(axis=1) / concentrated.sum(axis=1)
    np.testing.assert_allclose(result["mass_inside"], manual)
    assert result["mean_mass_ratio"] > 10
    assert result["pointing_hit_rate"] == 1.0


def test_localisation_pointing_game_with_tolerance_and_ties():
    mask = np.ones((8, 8, 8), bool)
    ijk = np.argwhere(mask)
    region_volume = np.zeros((8, 8, 8), bool)
    region_volume[1:3, 1:3, 1:3] = True
    region = region_volume[mask]

    peak_near = np.zeros((8, 8, 8))
    peak_near[4, 2, 2] = 1.0  # 2 voxels from the region along x
    maps = peak_near[mask]
    assert localisation(maps, region)["pointing_hit"][0] == 0.0
    tolerant = localisation(maps, region, voxel_ijk=ijk, tolerance=2)
    assert tolerant["pointing_hit"][0] == 1.0
    assert tolerant["pointing_chance"] > tolerant["region_share"]

    flat = np.ones(mask.sum())
    flat_result = localisation(flat, region)
    assert flat_result["pointing_hit"][0] == pytest.approx(region.mean())
    assert flat_result["mass_ratio"][0] == pytest.approx(1.0)


def test_localisation_empty_maps_are_nan_and_counted():
    region = np.zeros(20, bool)
    region[:5] = True
    maps = np.vstack([np.zeros(20), np.r_[np.ones(5), np.zeros(15)]])
    result = localisation(maps, region)
    assert np.isnan(result["mass_inside"][0]) and np.isnan(result["pointing_hit"][0])
    assert result["n_empty"] == 1 and result["n_maps"] == 2
    assert result["mean_mass_inside"] == 1.0 and result["pointing_hit_rate"] == 1.0


def test_localisation_rejects_bad_region_and_missing_coordinates():
    with pytest.raises(ValueError, match="at least one True"):
        localisation(np.ones(10), np.zeros(10, bool))
    with pytest.raises(ValueError, match="voxel_ijk"):
        localisation(np.ones(10), np.ones(10, bool), tolerance=1.0)
