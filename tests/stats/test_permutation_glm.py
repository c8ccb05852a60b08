"""Permutation GLM: t against scipy and OLS, null distributions against a literal
Freedman–Lane loop, FWE control on null data, detection of a planted effect."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.stats import draw_permutations, permutation_glm
from rsxai.stats.max_statistic import fwe_p_values
from tests.stats.test_tfce import literal_tfce

RESULT_MAPS = ("t", "tfce", "p_uncorrected", "p_fwe_t", "p_fwe_tfce")


def box_grid(n=8):
    return Grid(np.ones((n, n, n), dtype=bool), np.diag([4.0, 4.0, 4.0, 1.0]))


def smooth_maps(rng, grid, n_subjects, sigma=1.0):
    volumes = ndimage.gaussian_filter(
        rng.standard_normal((n_subjects, *grid.shape)), (0, sigma, sigma, sigma)
    )
    maps = volumes[:, grid.mask]
    return maps / maps.std()


def ols_t(data, design, contrast):
    """Plain OLS t of a contrast, voxel by voxel (the statsmodels formula)."""
    beta, *_ = np.linalg.lstsq(design, data, rcond=None)
    residuals = data - design @ beta
    dof = design.shape[0] - np.linalg.matrix_rank(design)
    sigma2 = (residuals**2).sum(axis=0) / dof
    scale = contrast @ np.linalg.inv(design.T @ design) @ contrast
    return (contrast @ beta) / np.sqrt(sigma2 * scale)


def test_t_equals_scipy_ttest_without_covariates():
    rng = np.random.default_rng(0)
    grid = box_grid(6)
    maps = smooth_maps(rng, grid, 23)
    groups = np.r_[np.ones(11), np.zeros(12)]
    rng.shuffle(groups)
    expected = stats.ttest_ind(maps[groups == 1], maps[groups == 0], equal_var=True).statistic
    result = permutation_glm(maps, groups, grid, n_permutations=20, tfce=False)
    np.testing.assert_allclose(result.t, expected, rtol=1e-10)
    assert result.permutation_scheme == "group labels"
    assert result.design_columns == ("intercept", "group")
    assert result.dof == 21
    flipped = permutation_glm(maps, groups, grid, n_permutations=20, contrast="controls>patients")
    np.testing.assert_allclose(flipped.t, -expected, rtol=1e-10)
    np.testing.assert_array_equal(flipped.contrast, [0.0, -1.0])


def test_t_with_covariates_equals_ols_reference():
    rng = np.random.default_rng(1)
    grid = box_grid(6)
    n = 30
    groups = np.r_[np.ones(15), np.zeros(15)]
    covariates = pd.DataFrame(
        {
            "age": 50 + 10 * rng.standard_normal(n) + 5 * groups,
            "site": rng.choice(["oxford", "milan", "paris"], size=n),
            "sex": pd.Categorical(rng.choice(["F", "M"], size=n), categories=["M", "F"]),
        }
    )
    maps = smooth_maps(rng, grid, n) + 0.05 * covariates["age"].to_numpy()[:, None]
    result = permutation_glm(maps, groups, grid, covariates=covariates, n_permutations=20)
    # An independent coding: pandas' own dummies, first level dropped.
    dummies = pd.get_dummies(covariates[["site", "sex"]], drop_first=True, dtype=float)
    design = np.column_stack([np.ones(n), groups, covariates["age"], dummies])
    contrast = np.r_[0.0, 1.0, np.zeros(design.shape[1] - 2)]
    np.testing.assert_allclose(result.t, ols_t(maps, design, contrast), rtol=1e-9)
    assert result.design_columns == (
        "intercept",
        "group",
        "age",
        "site[oxford]",
        "site[paris]",
        "sex[F]",
    )
    age_column = result.design_matrix[:, 2]
    assert abs(age_column.mean()) < 1e-12
    np.testing.assert_array_equal(result.design_matrix[:, 5], covariates["sex"] == "F")
    assert result.dof == n - 6
    assert result.permutation_scheme == "Freedman-Lane"


def freedman_lane_reference(maps, design, permutations, mask, dh, sign=1.0):
    """Permute residuals of the nuisance model, add its fit back, refit (the literal loop)."""
    nuisance = np.delete(design, 1, axis=1)
    gamma, *_ = np.linalg.lstsq(nuisance, maps, rcond=None)
    fitted = nuisance @ gamma
    residuals = maps - fitted
    contrast = np.zeros(design.shape[1])
    contrast[1] = sign
    t_maps, tfce_maps = [], []
    for order in permutations:
        t = ols_t(residuals[order] + fitted, design, contrast)
        t_maps.append(t)
        tfce_maps.append(literal_tfce(t, mask, dh))
    return np.array(t_maps), np.array(tfce_maps)


def test_null_distributions_and_p_values_equal_a_literal_freedman_lane_loop():
    rng = np.random.default_rng(2)
    grid = box_grid(7)
    n = 24
    groups = np.tile([1.0, 0.0], n // 2)
    covariates = pd.DataFrame({"age": rng.normal(60, 8, n) + 4 * groups})
    blocks = np.repeat([0, 1, 2], n // 3)
    maps = smooth_maps(rng, grid, n) + 0.04 * (covariates["age"].to_numpy()[:, None] - 60)
    maps[groups == 1, :60] += 0.6
    result = permutation_glm(
        maps,
        groups,
        grid,
        covariates=covariates,
        n_permutations=25,
        exchangeability_blocks=blocks,
        random_state=11,
    )
    t_maps, tfce_maps = freedman_lane_reference(
        maps, result.design_matrix, result.permutations, grid.mask, result.tfce_dh
    )
    np.testing.assert_allclose(result.t, t_maps[0], rtol=1e-9)
    # The observed peak sits on the last TFCE height by construction, where
    # an ulp decides; the literal TFCE of the observed map is taken from our t.
    np.testing.assert_allclose(result.tfce, literal_tfce(result.t, grid.mask, result.tfce_dh))
    assert result.tfce_dh == pytest.approx(t_maps[0].max() / 100, rel=1e-12)
    tfce_maps[0] = result.tfce
    np.testing.assert_allclose(result.null_max_t, t_maps.max(axis=1), rtol=1e-9)
    np.testing.assert_allclose(result.null_max_tfce, tfce_maps.max(axis=1), rtol=1e-9)
    n_perm = len(t_maps)
    np.testing.assert_array_equal(result.p_uncorrected, (t_maps >= t_maps[0]).sum(axis=0) / n_perm)
    expected_fwe_t = (t_maps.max(axis=1)[:, None] >= t_maps[0]).sum(axis=0) / n_perm
    expected_fwe_tfce = (tfce_maps.max(axis=1)[:, None] >= tfce_maps[0]).sum(axis=0) / n_perm
    np.testing.assert_array_equal(result.p_fwe_t, expected_fwe_t)
    np.testing.assert_array_equal(result.p_fwe_tfce, expected_fwe_tfce)
    assert result.p_fwe_t.min() >= 1 / n_perm  # the identity counts
    assert result.null_max_t[0] == result.t.max()
    assert result.null_max_tfce[0] == result.tfce.max()


def test_two_sided_uses_absolute_statistics():
    rng = np.random.default_rng(3)
    grid = box_grid(7)
    n = 20
    groups = np.r_[np.ones(10), np.zeros(10)]
    maps = smooth_maps(rng, grid, n)
    maps[groups == 1, :49] -= 1.5  # patients lower in the first slab
    two = permutation_glm(maps, groups, grid, n_permutations=60, contrast="two-sided")
    lower = permutation_glm(maps, groups, grid, n_permutations=60, contrast="controls>patients")
    higher = permutation_glm(maps, groups, grid, n_permutations=60, contrast="patients>controls")
    t_maps, tfce_maps = freedman_lane_reference(
        maps, two.design_matrix, two.permutations, grid.mask, two.tfce_dh
    )
    negative = np.array([literal_tfce(-t, grid.mask, two.tfce_dh) for t in t_maps])
    signed = tfce_maps - negative
    signed[0] = literal_tfce(two.t, grid.mask, two.tfce_dh) - literal_tfce(
        -two.t, grid.mask, two.tfce_dh
    )  # the observed peak is on the last height: see the test above
    np.testing.assert_allclose(two.tfce, signed[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(two.null_max_t, np.abs(t_maps).max(axis=1), rtol=1e-9)
    np.testing.assert_allclose(two.null_max_tfce, np.abs(signed).max(axis=1), rtol=1e-9)
    assert two.tfce_dh == pytest.approx(np.abs(t_maps[0]).max() / 100)
    assert np.all(two.tfce[:49][two.t[:49] < -two.tfce_dh] < 0)
    assert two.p_fwe_tfce[:49].min() <= 1 / 60 and lower.p_fwe_tfce[:49].min() <= 1 / 60
    assert higher.p_fwe_tfce[:49].min() > 0.5 and higher.p_fwe_tfce.min() > 0.05


def test_planted_blob_is_found_and_nothing_outside():
    rng = np.random.default_rng(4)
    grid = box_grid(12)
    n = 40
    groups = np.r_[np.ones(20), np.zeros(20)]
    coords = np.argwhere(grid.mask)
    distance = np.linalg.norm(coords - [6, 6, 6], axis=1)
    blob = distance <= 2.5
    maps = smooth_maps(rng, grid, n)
    maps[groups == 1] += 1.2 * blob
    result = permutation_glm(maps, groups, grid, n_permutations=500, random_state=0)
    # Smoothing of the noise (sigma 1 voxel) may carry significance a voxel or
    # two past the blob's edge; beyond 2 voxels nothing may be significant.
    near = distance <= 2.5 + 2.0
    for p, found in ((result.p_fwe_tfce, 0.9), (result.p_fwe_t, 0.25)):
        significant = p <= 0.05
        assert significant[blob].mean() > found
        assert not significant[~near].any()
        assert significant[~blob].sum() <= 0.1 * blob.sum()
    # TFCE pools the blob's voxels: it finds (nearly) all of it, voxel t far fewer.
    assert (result.p_fwe_tfce[blob] <= 0.05).sum() > 2 * (result.p_fwe_t[blob] <= 0.05).sum()
    assert result.null_max_t.shape == result.null_max_tfce.shape == (500,)


def test_familywise_error_rate_on_null_data():
    # 200 null data sets (7x7x7 box, 8 + 8 subjects, 100 permutations each):
    # the number with any FWE-significant voxel must lie in the central 99 %
    # interval of Binomial(200, alpha), for voxel max-t and for TFCE, at
    # alpha = 0.05 and 0.25. With 100 permutations the identity ranks in the
    # top 5 % with probability exactly 0.05 (no ties), so the count is exactly
    # binomial. Measured (seed 5): 16 (max-t) and 12 (TFCE) of 200 at 0.05.
    # The upper bound (19) rejects an error rate of 0.10 about half the time
    # and one of 0.125 most of the time; 40 data sets could detect neither.
    n_datasets = 200
    rng = np.random.default_rng(5)
    grid = box_grid(7)
    groups = np.r_[np.ones(8), np.zeros(8)]
    min_p = {"t": [], "tfce": []}
    for seed in range(n_datasets):
        maps = smooth_maps(rng, grid, 16)
        result = permutation_glm(maps, groups, grid, n_permutations=100, random_state=seed)
        min_p["t"].append(result.p_fwe_t.min())
        min_p["tfce"].append(result.p_fwe_tfce.min())
    for alpha in (0.05, 0.25):
        low, high = stats.binom.interval(0.99, n_datasets, alpha)
        for statistic, values in min_p.items():
            n_rejected = int((np.array(values) <= alpha).sum())
            assert low <= n_rejected <= high, (statistic, alpha, n_rejected, (low, high))


def test_freedman_lane_p_values_are_valid_with_a_confounded_covariate():
    # Data driven by a covariate that differs between groups, no group effect:
    # the permutation p must be uniform and agree with the parametric t test.
    rng = np.random.default_rng(6)
    grid = box_grid(10)
    n = 30
    groups = np.r_[np.ones(15), np.zeros(15)]
    age = rng.normal(0, 1, n) + 1.2 * groups
    assert np.corrcoef(age, groups)[0, 1] > 0.4
    maps = 2.0 * age[:, None] + rng.standard_normal((n, grid.n_voxels))
    result = permutation_glm(
        maps,
        groups,
        grid,
        covariates=pd.DataFrame({"age": age}),
        n_permutations=400,
        tfce=False,
        random_state=3,
    )
    parametric = stats.t.sf(result.t, result.dof)
    assert np.mean(np.abs(result.p_uncorrected - parametric)) < 0.02
    for alpha in (0.05, 0.2):
        rate = np.mean(result.p_uncorrected <= alpha)
        assert abs(rate - alpha) < 3 * np.sqrt(alpha * (1 - alpha) / grid.n_voxels) + 0.005
    # Ignoring the covariate, the group "effect" would be everywhere.
    naive = permutation_glm(maps, groups, grid, n_permutations=50, tfce=False)
    assert np.mean(naive.p_uncorrected <= 0.05) > 0.5


def test_permutations_stay_within_exchangeability_blocks():
    rng = np.random.default_rng(7)
    blocks = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    permutations = draw_permutations(300, blocks, rng)
    assert permutations.shape == (300, 12)
    np.testing.assert_array_equal(permutations[0], np.arange(12))
    np.testing.assert_array_equal(blocks[permutations], np.broadcast_to(blocks, (300, 12)))
    assert np.all(np.sort(permutations, axis=1) == np.arange(12))
    assert len({tuple(p) for p in permutations}) > 250
    # and permutation_glm uses them so
    grid = box_grid(4)
    groups = np.array([1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0])
    site = np.array(["a"] * 3 + ["b"] * 4 + ["c"] * 5)
    result = permutation_glm(
        rng.standard_normal((12, 64)),
        groups,
        grid,
        n_permutations=50,
        exchangeability_blocks=site,
        tfce=False,
    )
    np.testing.assert_array_equal(site[result.permutations], np.broadcast_to(site, (50, 12)))


def test_deterministic_and_independent_of_n_jobs():
    rng = np.random.default_rng(8)
    grid = box_grid(8)
    groups = np.r_[np.ones(10), np.zeros(10)]
    maps = smooth_maps(rng, grid, 20)
    kwargs = dict(n_permutations=150, random_state=42, contrast="two-sided")
    one = permutation_glm(maps, groups, grid, n_jobs=1, **kwargs)
    two = permutation_glm(maps, groups, grid, n_jobs=2, progress=True, **kwargs)
    again = permutation_glm(maps, groups, grid, n_jobs=1, **kwargs)
    other = permutation_glm(maps, groups, grid, n_jobs=1, **{**kwargs, "random_state": 43})
    for name in (*RESULT_MAPS, "null_max_t", "null_max_tfce", "permutations"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
        np.testing.assert_array_equal(getattr(one, name), getattr(again, name))
    assert not np.array_equal(one.null_max_t, other.null_max_t)
    np.testing.assert_array_equal(one.t, other.t)
    assert not one.t.flags.writeable


def test_fwe_p_values_count_ties_as_exceeding():
    null = np.array([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(
        fwe_p_values(np.array([3.0, 2.0, 0.5, 4.0]), null), [0.25, 0.75, 1.0, 0.0]
    )


def test_constant_voxels_get_zero_and_a_warning():
    rng = np.random.default_rng(9)
    grid = box_grid(5)
    maps = smooth_maps(rng, grid, 12)
    maps[:, :10] = 3.0
    with pytest.warns(UserWarning, match="10 voxel"):
        result = permutation_glm(maps, np.r_[np.ones(6), np.zeros(6)], grid, n_permutations=10)
    assert np.all(result.t[:10] == 0) and np.all(np.isfinite(result.t))


def test_few_distinct_permutations_warn():
    grid = box_grid(3)
    maps = np.random.default_rng(10).standard_normal((6, 27))
    with pytest.warns(UserWarning, match="only 20 distinct"):
        permutation_glm(maps, [1, 1, 1, 0, 0, 0], grid, n_permutations=100, tfce=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        permutation_glm(maps, [1, 1, 1, 0, 0, 0], grid, n_permutations=20, tfce=False)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"groups": np.ones(10)}, r"groups has only patients \(1\).*0 \(control\)"),
        ({"groups": np.zeros(10)}, r"groups has only controls \(0\)"),
        ({"groups": np.r_[np.ones(5), np.zeros(4)]}, r"groups has 9 labels but maps has 10 rows"),
        (
            {"groups": np.r_[np.ones(5), np.full(5, 2)]},
            r"groups must hold 1 \(patient\) or 0.*\[2.0\]",
        ),
        ({"n_permutations": 0}, r"n_permutations must be an integer >= 1.*got 0"),
        ({"n_permutations": 2.5}, r"n_permutations must be an integer >= 1.*got 2.5"),
        (
            {"contrast": "patients<controls"},
            r"contrast must be one of 'patients>controls', 'controls>patients', 'two-sided'; "
            r"got 'patients<controls'",
        ),
        ({"tfce_connectivity": 4}, r"tfce_connectivity must be one of \[6, 18, 26\].*got 4"),
        ({"tfce_dh": -1.0}, r"tfce_dh must be a positive number or None.*-1.0"),
        ({"maps": np.zeros((10, 7))}, r"maps must have shape .*n_voxels=27.*\(10, 7\)"),
        (
            {"exchangeability_blocks": [0, 1]},
            r"exchangeability_blocks must have one label per subject",
        ),
    ],
)
def test_errors_name_parameter_allowed_values_and_value(kwargs, pattern):
    grid = box_grid(3)
    arguments = {
        "maps": np.random.default_rng(11).standard_normal((10, 27)),
        "groups": np.r_[np.ones(5), np.zeros(5)],
        "grid": grid,
        "n_permutations": 10,
    }
    arguments.update(kwargs)
    with pytest.raises(InputError, match=pattern):
        permutation_glm(**arguments)


def test_covariate_errors_name_the_column():
    grid = box_grid(3)
    maps = np.random.default_rng(12).standard_normal((10, 27))
    groups = np.r_[np.ones(5), np.zeros(5)]
    missing = pd.DataFrame({"age": [50.0, np.nan] + [60.0] * 8})
    with pytest.raises(InputError, match=r"covariates column 'age' has 1 missing value.*\[1\]"):
        permutation_glm(maps, groups, grid, covariates=missing, n_permutations=5)
    confounded = pd.DataFrame({"diagnosis": np.where(groups == 1, "ALS", "HC")})
    with pytest.raises(InputError, match=r"'diagnosis\[HC\]' is a linear combination of"):
        permutation_glm(maps, groups, grid, covariates=confounded, n_permutations=5)
    with pytest.raises(InputError, match=r"covariates has 3 rows but maps has 10"):
        permutation_glm(maps, groups, grid, covariates=pd.DataFrame({"a": [1, 2, 3]}))
    with pytest.raises(InputError, match=r"covariates column 'scanner' is constant"):
        permutation_glm(maps, groups, grid, covariates=pd.DataFrame({"scanner": [1.0] * 10}))


@pytest.mark.parametrize("with_covariate", [False, True])
def test_matches_nilearn_permuted_ols(with_covariate):
    # nilearn counts voxels ">=" each TFCE height, FSL and rsxai ">": nilearn's
    # TFCE has one more term at the peak voxel (max t ** 2); all else agrees.
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    rng = np.random.default_rng(13)
    grid = box_grid(8)
    n = 24
    groups = np.r_[np.ones(12), np.zeros(12)]
    age = rng.normal(0, 1, n) + 0.8 * groups
    maps = smooth_maps(rng, grid, n) + 0.5 * age[:, None]
    maps[groups == 1, 100:180] += 0.8
    masker = NiftiMasker(mask_img=grid.mask_img()).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = permuted_ols(
            groups[:, None],
            maps,
            confounding_vars=age[:, None] if with_covariate else None,
            model_intercept=True,
            n_perm=20,
            two_sided_test=False,
            tfce=True,
            masker=masker,
            random_state=0,
        )
    ours = permutation_glm(
        maps,
        groups,
        grid,
        covariates=pd.DataFrame({"age": age}) if with_covariate else None,
        n_permutations=21,
    )
    np.testing.assert_allclose(ours.t, theirs["t"][0], rtol=1e-10)
    peak = np.argmax(ours.t)
    others = np.arange(grid.n_voxels) != peak
    np.testing.assert_allclose(ours.tfce[others], theirs["tfce"][0][others], rtol=1e-9)
    assert theirs["tfce"][0][peak] - ours.tfce[peak] == pytest.approx(ours.t.max() ** 2)
    assert theirs["h0_max_t"].shape == (1, 20) and ours.null_max_t.shape == (21,)
