"""Tests for dual regression against FSL's two fsl_glm steps written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from rsxai.decomposition import DualRegressionResult, dual_regression
from rsxai.decomposition._t_to_z import TABLE_MIN_SIZE, TABLE_T_MAX, t_to_z
from rsxai.exceptions import InputError


@pytest.fixture(autouse=True, scope="module")
def single_blas_thread():
    """One BLAS thread: on a small shared machine OpenBLAS threads contend and run 10x slower."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fsl_dual_regression_reference(group_maps, data, des_norm=True):
    """FSL's dual_regression stages as literal formulas (float64, pinv, per voxel loop).

    The script runs, on its input as it is (no variance normalisation)::

        fsl_glm -i data -d group_maps --demean -o stage1
        fsl_glm -i data -d stage1 --demean [--des_norm] -o stage2 --out_z=stage2_Z
    """
    group_maps = np.asarray(group_maps, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    n_volumes, n_maps = data.shape[0], group_maps.shape[0]

    # Stage 1: fsl_glm -i data -d group_maps --demean; voxels are the observations.
    x1 = (group_maps - group_maps.mean(axis=1, keepdims=True)).T  # (V, K)
    y1 = (data - data.mean(axis=1, keepdims=True)).T  # (V, T)
    timecourses = (np.linalg.pinv(x1) @ y1).T  # (T, K)

    # Stage 2: fsl_glm -i data -d tc --demean [--des_norm]; time points are the observations.
    x2 = timecourses - timecourses.mean(axis=0)
    if des_norm:
        x2 = x2 / x2.std(axis=0, ddof=1)
    x2_pinv = np.linalg.pinv(x2)
    covariance = np.linalg.inv(x2.T @ x2)
    dof = n_volumes - n_maps - 1
    maps = np.empty((n_maps, data.shape[1]))
    t_maps = np.empty_like(maps)
    for voxel in range(data.shape[1]):
        y = data[:, voxel] - data[:, voxel].mean()
        beta = x2_pinv @ y
        residuals = y - x2 @ beta
        sigma2 = residuals @ residuals / dof
        maps[:, voxel] = beta
        t_maps[:, voxel] = beta / np.sqrt(sigma2 * np.diag(covariance))
    return timecourses, maps, t_maps, dof


def same_tail_z(t, dof):
    """Z with the tail probability of t, evaluated on the upper tail for accuracy.

    ``norm.isf(t.sf(t))`` for negative t goes through ``sf`` close to 1 and
    loses digits; the t and normal distributions are symmetric, so the
    upper tail of |t| is used.
    """
    return np.sign(t) * stats.norm.isf(stats.t.sf(np.abs(t), dof))


def planted_subject(rng, n_volumes=120, n_voxels=600, n_maps=4, noise=1.0):
    """Group maps, a subject's own maps (group maps perturbed) and their time courses."""
    group_maps = np.zeros((n_maps, n_voxels))
    for k in range(n_maps):
        support = rng.choice(n_voxels, n_voxels // 8, replace=False)
        group_maps[k, support] = rng.gamma(2.0, 1.0, support.size)
    subject_maps = group_maps * rng.uniform(0.5, 1.5, group_maps.shape)
    timecourses = rng.standard_normal((n_volumes, n_maps))
    data = timecourses @ subject_maps + noise * rng.standard_normal((n_volumes, n_voxels))
    return group_maps, subject_maps, timecourses, data


@pytest.mark.parametrize("des_norm", [True, False])
def test_matches_literal_fsl_glm_formulas(des_norm):
    rng = np.random.default_rng(0)
    group_maps, _, _, data = planted_subject(rng, n_volumes=60, n_voxels=300)
    # Non-zero spatial and temporal means, which both stages must remove.
    data = data + rng.normal(5.0, 1.0, (1, data.shape[1])) + rng.normal(0, 1.0, (60, 1))
    group_maps = group_maps + 0.3
    result = dual_regression(group_maps, data.astype(np.float32), des_norm=des_norm)
    ref_tc, ref_maps, ref_t, ref_dof = fsl_dual_regression_reference(
        group_maps, data.astype(np.float32), des_norm=des_norm
    )
    assert isinstance(result, DualRegressionResult)
    assert result.dof == ref_dof == 60 - 4 - 1
    assert result.timecourses.shape == (60, 4)
    assert result.maps.shape == result.z_maps.shape == (4, 300)
    assert result.maps.dtype == result.z_maps.dtype == result.timecourses.dtype == np.float32
    np.testing.assert_allclose(result.timecourses, ref_tc, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.maps, ref_maps, rtol=1e-6, atol=1e-6)
    ref_z = same_tail_z(ref_t, ref_dof)
    np.testing.assert_allclose(result.z_maps, ref_z, rtol=1e-6, atol=1e-6)


def amplitude_subject(rng, n_volumes=80, n_voxels=400):
    """A planted subject whose voxels' amplitudes span a factor of 100, on means near 1000."""
    group_maps, _, _, data = planted_subject(rng, n_volumes=n_volumes, n_voxels=n_voxels)
    amplitude = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n_voxels))
    return group_maps, amplitude * data + rng.normal(1000.0, 100.0, n_voxels)


def zscored(data):
    data = np.asarray(data, dtype=np.float64)
    return (data - data.mean(axis=0)) / data.std(axis=0, ddof=1)


def test_default_regresses_the_data_as_given_variance_normalise_z_scores_them():
    rng = np.random.default_rng(6)
    group_maps, data = amplitude_subject(rng)
    data = data.astype(np.float32)
    default = dual_regression(group_maps, data)
    _, ref_maps, ref_t, dof = fsl_dual_regression_reference(group_maps, data)
    np.testing.assert_allclose(default.maps, ref_maps, rtol=1e-5, atol=1e-5 * abs(ref_maps).max())
    np.testing.assert_allclose(default.z_maps, same_tail_z(ref_t, dof), rtol=1e-5, atol=1e-5)

    normalised = dual_regression(group_maps, data, variance_normalise=True)
    _, ref_maps, ref_t, dof = fsl_dual_regression_reference(group_maps, zscored(data))
    np.testing.assert_allclose(normalised.maps, ref_maps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalised.z_maps, same_tail_z(ref_t, dof), rtol=1e-5, atol=1e-5)
    # The same as z-scoring the data beforehand, whatever their scale (float64:
    # float32 rounding of 3 x 1000 would be visible in the smallest voxels).
    np.testing.assert_allclose(
        dual_regression(
            group_maps, 3.0 * data.astype(np.float64) + 7.0, variance_normalise=True
        ).maps,
        dual_regression(group_maps, zscored(data)).maps,
        rtol=1e-5,
        atol=1e-6,
    )
    # The two are different analyses: amplitudes are in one and not in the other.
    assert not np.allclose(default.maps, normalised.maps, rtol=0.1)


def test_doubled_voxel_amplitude_doubles_its_map_unless_variance_normalised():
    rng = np.random.default_rng(7)
    group_maps, data = amplitude_subject(rng)
    voxel = int(np.argmax(group_maps[0]))
    doubled = data.copy()
    doubled[:, voxel] = 2.0 * (data[:, voxel] - data[:, voxel].mean()) + data[:, voxel].mean()
    for variance_normalise, expected in ((False, 2.0), (True, 1.0)):
        once, twice = (
            dual_regression(group_maps, d, variance_normalise=variance_normalise).maps
            for d in (data, doubled)
        )
        assert twice[0, voxel] / once[0, voxel] == pytest.approx(expected, rel=0.02)
        # Only that voxel's amplitude changed: the other voxels' maps barely move.
        others = np.arange(data.shape[1]) != voxel
        np.testing.assert_allclose(twice[:, others], once[:, others], atol=0.05 * abs(once).max())


def test_variance_normalise_keeps_constant_voxels_zero_and_checks_its_value():
    rng = np.random.default_rng(8)
    group_maps, data = amplitude_subject(rng, n_volumes=40, n_voxels=200)
    data[:, 3] = 1234.5
    data[:, 4] = 0.0
    result = dual_regression(group_maps, data, variance_normalise=True)
    assert np.all(result.maps[:, 3:5] == 0) and np.all(result.z_maps[:, 3:5] == 0)
    assert np.all(np.isfinite(result.z_maps))
    with pytest.raises(InputError, match=r"variance_normalise must be True or False; got 'yes'"):
        dual_regression(group_maps, data, variance_normalise="yes")


def test_des_norm_makes_maps_invariant_to_group_map_scale():
    rng = np.random.default_rng(1)
    group_maps, _, _, data = planted_subject(rng)
    base = dual_regression(group_maps, data)
    scaled_all = dual_regression(7.5 * group_maps, data)
    one_scaled = group_maps.copy()
    one_scaled[2] *= 0.01
    scaled_one = dual_regression(one_scaled, data)
    for other in (scaled_all, scaled_one):
        np.testing.assert_allclose(other.maps, base.maps, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(other.z_maps, base.z_maps, rtol=1e-4, atol=1e-5)
    # The time courses themselves do follow the scale (inversely).
    np.testing.assert_allclose(scaled_all.timecourses * 7.5, base.timecourses, rtol=1e-4)


def test_without_des_norm_maps_scale_inversely_with_timecourses():
    rng = np.random.default_rng(2)
    group_maps, _, _, data = planted_subject(rng)
    base = dual_regression(group_maps, data, des_norm=False)
    scaled = dual_regression(4.0 * group_maps, data, des_norm=False)
    # Maps 4x larger -> time courses 4x smaller -> stage-2 maps 4x larger.
    np.testing.assert_allclose(scaled.timecourses, base.timecourses / 4.0, rtol=1e-4)
    np.testing.assert_allclose(scaled.maps, base.maps * 4.0, rtol=1e-4, atol=1e-6)
    # Z does not depend on the regressor scale at all.
    np.testing.assert_allclose(scaled.z_maps, base.z_maps, rtol=1e-4, atol=1e-5)
    with_norm = dual_regression(group_maps, data, des_norm=True)
    assert not np.allclose(with_norm.maps, base.maps, rtol=1e-2)


def test_t_to_z_matches_scipy_and_stays_finite():
    dof = 37
    t = np.linspace(-12, 12, 241)
    np.testing.assert_allclose(t_to_z(t, dof), same_tail_z(t, dof), rtol=1e-9, atol=1e-9)
    # For positive t the plain formula is exact enough to compare directly.
    positive = t > 0
    np.testing.assert_allclose(
        t_to_z(t[positive], dof),
        stats.norm.isf(stats.t.sf(t[positive], dof)),
        rtol=1e-9,
    )
    huge = np.array([1e3, 1e8, 1e30, 1e150, 1e300, -1e300])
    z = t_to_z(huge, dof)
    assert np.all(np.isfinite(z))
    # Monotone in t, symmetric, and far beyond anything naive isf(sf) can reach (~38).
    assert np.all(np.diff(z[:5]) > 0)
    assert z[5] == -z[4]
    assert z[2] > 38
    # Continuity across the switch to the closed-form tail.
    t_grid = np.geomspace(20, 2000, 400)
    z_grid = t_to_z(t_grid, 150)
    assert np.all(np.diff(z_grid) > 0)
    assert np.max(np.abs(np.diff(z_grid))) < 0.5
    assert np.all(t_to_z(np.array([np.inf, -np.inf]), dof) == [np.inf, -np.inf])


@pytest.mark.parametrize("dof", [1, 4, 37, 129, 5000])
def test_t_to_z_table_for_large_arrays_matches_scipy(dof):
    # Arrays of TABLE_MIN_SIZE values or more go through the piecewise cubic table
    # for |t| < TABLE_T_MAX, and the exact conversion elsewhere.
    rng = np.random.default_rng(dof)
    t = np.concatenate(
        [
            rng.standard_normal(20_000) * 3,
            rng.uniform(-TABLE_T_MAX - 5, TABLE_T_MAX + 5, 20_000),
            np.linspace(-1e-6, 1e-6, 101),  # around 0, where Z ~ t
            np.nextafter(TABLE_T_MAX, 0) * np.array([1.0, -1.0]),  # the table's last step
        ]
    )
    assert t.size >= TABLE_MIN_SIZE
    reference = same_tail_z(t, dof)
    finite = np.isfinite(reference)  # isf(sf) overflows far out; t_to_z does not
    np.testing.assert_allclose(t_to_z(t, dof)[finite], reference[finite], rtol=1e-9, atol=1e-9)
    # Fewer values than TABLE_MIN_SIZE are converted exactly: both ways agree.
    np.testing.assert_allclose(t_to_z(t, dof)[:5000], t_to_z(t[:5000], dof), atol=1e-9)
    special_values = np.array([np.inf, -np.inf, 1e300, 0.0])
    large = np.concatenate([t, special_values])
    np.testing.assert_array_equal(t_to_z(large, dof)[-4:], t_to_z(special_values, dof))
    assert np.isnan(t_to_z(np.concatenate([t, [np.nan]]), dof)[-1])


def test_recovers_planted_subject_maps_and_null_voxels_are_calibrated():
    rng = np.random.default_rng(3)
    n_voxels, n_maps = 2000, 4
    group_maps, subject_maps, timecourses, data = planted_subject(
        rng, n_volumes=200, n_voxels=n_voxels, n_maps=n_maps, noise=1.0
    )
    result = dual_regression(group_maps, data)
    for k in range(n_maps):
        assert np.corrcoef(result.maps[k], subject_maps[k])[0, 1] > 0.9
        assert abs(np.corrcoef(result.timecourses[:, k], timecourses[:, k])[0, 1]) > 0.9
    # The subject's own maps are recovered better than the group template it started from.
    r_subject = np.corrcoef(result.maps[0], subject_maps[0])[0, 1]
    r_group = np.corrcoef(result.maps[0], group_maps[0])[0, 1]
    assert r_subject > r_group
    # Where nothing was planted, Z behaves as N(0, 1): about 5% beyond ±1.96.
    null = subject_maps == 0
    null_z = result.z_maps[null]
    assert abs(null_z.mean()) < 0.05
    assert 0.9 < null_z.std() < 1.1
    assert 0.03 < np.mean(np.abs(null_z) > 1.96) < 0.07
    # Where signal was planted, Z is large.
    assert np.median(result.z_maps[~null]) > 5


def test_constant_voxel_gets_zero_z():
    rng = np.random.default_rng(4)
    group_maps, _, _, data = planted_subject(rng, n_volumes=50, n_voxels=200)
    data[:, 10] = 3.0
    result = dual_regression(group_maps, data)
    assert np.all(result.maps[:, 10] == 0)
    assert np.all(result.z_maps[:, 10] == 0)
    assert np.all(np.isfinite(result.z_maps))


def test_errors_name_the_parameter_and_the_problem():
    rng = np.random.default_rng(5)
    group_maps, _, _, data = planted_subject(rng, n_volumes=30, n_voxels=100)
    with pytest.raises(InputError, match=r"group_maps has 100 voxels but subject_data has 99"):
        dual_regression(group_maps, data[:, :99])
    with pytest.raises(InputError, match=r"subject_data must be a 2D array"):
        dual_regression(group_maps, data[0])
    bad = data.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match=r"subject_data contains 1 NaN"):
        dual_regression(group_maps, bad)
    with pytest.raises(InputError, match=r"T > K \+ 1.*at least 6 volumes"):
        dual_regression(group_maps, data[:5])
    with pytest.raises(InputError, match=r"group_maps must hold real numbers"):
        dual_regression(group_maps.astype(complex), data)
