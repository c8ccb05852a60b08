"""FWE over the contrasts of a network: the maximum over contrasts holds the error rate
over both one-sided contrasts at alpha, where thresholding each at alpha does not, and
still finds a one-sided effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rsxai.exceptions import InputError
from rsxai.stats import fwe_over_contrasts, permutation_glm
from rsxai.stats.max_statistic import fwe_p_values
from tests.stats.test_permutation_glm import box_grid, smooth_maps

ONE_SIDED = ("patients>controls", "controls>patients")


def _both(maps, groups, grid, **kwargs):
    return {c: permutation_glm(maps, groups, grid, contrast=c, **kwargs) for c in ONE_SIDED}


def _rank_p(null):
    """Each permutation's p against the null, as if its data were the observed ones."""
    ordered = np.sort(null)
    return (null.size - np.searchsorted(ordered, null, side="left")) / null.size


def test_family_null_is_the_maximum_over_contrasts_and_holds_alpha_over_both():
    rng = np.random.default_rng(11)
    grid = box_grid(6)
    groups = np.r_[np.ones(8), np.zeros(8)]
    maps = smooth_maps(rng, grid, 16)
    n_permutations = 1000
    results = _both(maps, groups, grid, n_permutations=n_permutations, random_state=3)
    family = fwe_over_contrasts(results)
    higher, lower = (results[c] for c in ONE_SIDED)
    # One null maximum per permutation, the larger of the two contrasts' (the same
    # permutations): for voxel t, max(t, -t) = |t|, the two-sided test's null.
    np.testing.assert_array_equal(
        family.null_max_t, np.maximum(higher.null_max_t, lower.null_max_t)
    )
    two_sided = permutation_glm(
        maps, groups, grid, contrast="two-sided", n_permutations=n_permutations, random_state=3
    )
    np.testing.assert_allclose(family.null_max_t, two_sided.null_max_t, rtol=1e-12)
    np.testing.assert_allclose(
        family.null_max_tfce,
        np.maximum(higher.tfce_dh * higher.null_max_tfce, lower.tfce_dh * lower.null_max_tfce),
        rtol=1e-12,
    )
    # Each contrast's p is the fraction of the family maxima at least as large.
    for contrast, result in results.items():
        np.testing.assert_array_equal(
            family.p_fwe_t[contrast], fwe_p_values(result.t, family.null_max_t)
        )
        np.testing.assert_array_equal(
            family.p_fwe_tfce[contrast],
            fwe_p_values(result.tfce_dh * result.tfce, family.null_max_tfce),
        )
        assert np.all(family.p_fwe_tfce[contrast] >= result.p_fwe_tfce)
    # The lowest p of the network is the rank of the observed family maximum.
    for p, null in (
        (family.p_fwe_t, family.null_max_t),
        (family.p_fwe_tfce, family.null_max_tfce),
    ):
        assert min(v.min() for v in p.values()) == pytest.approx(np.mean(null >= null[0]))
    # Under the null hypothesis every permutation is as likely as the observed data: the
    # share of permutations that would give a false positive in either contrast is the
    # error rate. Corrected: the top 5 % of the family maxima, at most alpha. Each contrast
    # at its own 0.05, united (as before): near 2 alpha.
    alpha = 0.05
    for statistic in ("t", "tfce"):
        null = getattr(family, f"null_max_{statistic}")
        assert np.mean(_rank_p(null) <= alpha) <= alpha
        either = np.zeros(n_permutations, dtype=bool)
        for result in results.values():
            either |= _rank_p(getattr(result, f"null_max_{statistic}")) <= alpha
        assert either.mean() > 1.6 * alpha, statistic


def test_error_rate_over_both_contrasts_on_null_data():
    # 100 null data sets (5x5x5 box, 8 + 8 subjects, 100 permutations): the number with
    # any voxel of either contrast at p_FWE <= alpha must lie in the central 99 % interval
    # of Binomial(100, alpha). Measured (seed 5): 5 (max-t) and 8 (TFCE) of 100 at 0.05,
    # 29 and 33 at 0.25; each contrast thresholded at 0.25 on its own: 52 and 52, far
    # above the interval's 37 (the expected 1 - 0.75^2 = 44 %).
    n_datasets = 100
    rng = np.random.default_rng(5)
    grid = box_grid(5)
    groups = np.r_[np.ones(8), np.zeros(8)]
    corrected = {"t": [], "tfce": []}
    per_contrast = {"t": [], "tfce": []}
    for seed in range(n_datasets):
        maps = smooth_maps(rng, grid, 16)
        results = _both(maps, groups, grid, n_permutations=100, random_state=seed)
        family = fwe_over_contrasts(results)
        corrected["t"].append(min(p.min() for p in family.p_fwe_t.values()))
        corrected["tfce"].append(min(p.min() for p in family.p_fwe_tfce.values()))
        per_contrast["t"].append(min(r.p_fwe_t.min() for r in results.values()))
        per_contrast["tfce"].append(min(r.p_fwe_tfce.min() for r in results.values()))
    for alpha in (0.05, 0.25):
        low, high = stats.binom.interval(0.99, n_datasets, alpha)
        for statistic, values in corrected.items():
            n_rejected = int((np.array(values) <= alpha).sum())
            assert low <= n_rejected <= high, (statistic, alpha, n_rejected, (low, high))
    high = stats.binom.interval(0.99, n_datasets, 0.25)[1]
    for statistic, values in per_contrast.items():
        assert (np.array(values) <= 0.25).sum() > high, statistic


def test_planted_one_sided_effect_is_still_found():
    rng = np.random.default_rng(4)
    grid = box_grid(10)
    groups = np.r_[np.ones(20), np.zeros(20)]
    distance = np.linalg.norm(np.argwhere(grid.mask) - [5, 5, 5], axis=1)
    blob = distance <= 2.5
    maps = smooth_maps(rng, grid, 40)
    maps[groups == 1] += 1.2 * blob
    results = _both(maps, groups, grid, n_permutations=300, random_state=0)
    family = fwe_over_contrasts(results)
    near = distance <= 2.5 + 2.0
    found = family.p_fwe_tfce["patients>controls"] <= 0.05
    assert found[blob].mean() > 0.9
    assert not found[~near].any()
    assert (family.p_fwe_t["patients>controls"][blob] <= 0.05).any()
    for p in (family.p_fwe_t, family.p_fwe_tfce):
        assert p["controls>patients"].min() > 0.05
    # TFCE maxima are compared as dh * TFCE, which does not depend on the height step: a
    # finer step for the contrast without an effect (its raw TFCE sums double) leaves the
    # effect's p-values as they were. Compared raw, that contrast would set the maxima.
    finer = permutation_glm(
        maps,
        groups,
        grid,
        contrast="controls>patients",
        n_permutations=300,
        random_state=0,
        tfce_dh=results["controls>patients"].tfce_dh / 2,
    )
    again = fwe_over_contrasts({**results, "controls>patients": finer})
    np.testing.assert_allclose(
        again.p_fwe_tfce["patients>controls"], family.p_fwe_tfce["patients>controls"], atol=0.02
    )
    assert (again.p_fwe_tfce["patients>controls"][blob] <= 0.05).mean() > 0.9


def test_a_single_contrast_keeps_its_own_p_values():
    rng = np.random.default_rng(2)
    grid = box_grid(5)
    groups = np.r_[np.ones(6), np.zeros(6)]
    result = permutation_glm(smooth_maps(rng, grid, 12), groups, grid, n_permutations=50)
    family = fwe_over_contrasts({"patients>controls": result})
    assert family.n_contrasts == 1
    np.testing.assert_array_equal(family.p_fwe_t["patients>controls"], result.p_fwe_t)
    np.testing.assert_array_equal(family.p_fwe_tfce["patients>controls"], result.p_fwe_tfce)


def test_contrasts_under_other_permutations_or_mixed_tfce_are_refused():
    rng = np.random.default_rng(2)
    grid = box_grid(5)
    groups = np.r_[np.ones(6), np.zeros(6)]
    maps = smooth_maps(rng, grid, 12)
    higher = permutation_glm(maps, groups, grid, n_permutations=50, random_state=0)
    lower = permutation_glm(
        maps, groups, grid, contrast="controls>patients", n_permutations=50, random_state=1
    )
    with pytest.raises(InputError, match="same permutations for every contrast"):
        fwe_over_contrasts({"patients>controls": higher, "controls>patients": lower})
    no_tfce = permutation_glm(
        maps, groups, grid, contrast="controls>patients", n_permutations=50, tfce=False
    )
    with pytest.raises(InputError, match="TFCE was computed for 'patients>controls' only"):
        fwe_over_contrasts({"patients>controls": higher, "controls>patients": no_tfce})
    with pytest.raises(InputError, match="at least one contrast"):
        fwe_over_contrasts({})
