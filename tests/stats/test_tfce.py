"""The fast TFCE against its literal definition and against nilearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rsxai.stats import tfce_transform
from rsxai.stats.tfce import neighbour_table, tfce_positive


def literal_tfce(values, mask, dh, h=2.0, e=0.5, connectivity=6):
    """TFCE as FSL defines it, one threshold at a time (slow, obviously right).

    At each height ``k * dh`` (k = 1, 2, ... while below the maximum) the
    voxels ``> k * dh`` are labelled into clusters, and each gets
    ``cluster size ** e * (k * dh) ** h`` added.
    """
    volume = np.zeros(mask.shape)
    volume[mask] = values
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    out = np.zeros(mask.shape)
    k = 1
    while k * dh < volume.max():
        height = k * dh
        labels, _ = ndimage.label(volume > height, structure)
        sizes = np.bincount(labels.ravel()).astype(float)
        gain = sizes**e * height**h
        gain[0] = 0.0
        out += gain[labels]
        k += 1
    return out[mask]


def random_mask(rng, shape=(11, 10, 9)):
    mask = ndimage.binary_opening(rng.random(shape) > 0.25)
    mask[tuple(n // 2 for n in shape)] = True
    return mask


def smooth_values(rng, mask, sigma=1.0, n_maps=1):
    volumes = ndimage.gaussian_filter(
        rng.standard_normal((n_maps, *mask.shape)), (0, sigma, sigma, sigma)
    )
    values = volumes[:, mask]
    return values / values.std(axis=1, keepdims=True)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize(("h", "e"), [(2.0, 0.5), (1.0, 1.0), (3.0, 2.0 / 3.0)])
def test_fast_tfce_equals_literal_definition(connectivity, h, e):
    rng = np.random.default_rng(connectivity * 10 + int(h))
    mask = random_mask(rng)
    values = smooth_values(rng, mask, n_maps=3)
    for row in values:
        dh = row.max() / 100
        expected = literal_tfce(row, mask, dh, h, e, connectivity)
        got = tfce_transform(row, mask, dh=dh, h=h, e=e, connectivity=connectivity)
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11 * expected.max())
        assert expected.max() > 0


def test_fast_tfce_with_ties_and_values_on_the_height_ladder():
    # Integer maps put many voxels exactly on the heights k * dh, where ">"
    # and ">=" differ: the fast sweep must draw the same line as the definition.
    rng = np.random.default_rng(3)
    mask = random_mask(rng, (9, 9, 9))
    values = rng.integers(-2, 7, size=int(mask.sum())).astype(float)
    for dh in (1.0, 0.5, 0.25, 0.3):
        expected = literal_tfce(values, mask, dh)
        np.testing.assert_allclose(tfce_transform(values, mask, dh=dh), expected, rtol=1e-12)


def test_batch_of_maps_equals_maps_one_by_one():
    rng = np.random.default_rng(5)
    mask = random_mask(rng)
    values = smooth_values(rng, mask, n_maps=6) * rng.uniform(0.5, 2, size=(6, 1))
    batch = tfce_positive(values, neighbour_table(mask, 6), 0.04)
    for row, got in zip(values, batch, strict=True):
        np.testing.assert_allclose(got, literal_tfce(row, mask, 0.04), rtol=1e-11)


def test_default_step_is_each_maps_maximum_over_100():
    rng = np.random.default_rng(6)
    mask = random_mask(rng)
    values = smooth_values(rng, mask, n_maps=2)
    got = tfce_transform(values, mask)
    for row, enhanced in zip(values, got, strict=True):
        np.testing.assert_allclose(enhanced, literal_tfce(row, mask, row.max() / 100), rtol=1e-11)


def test_two_sided_enhances_each_sign_separately():
    rng = np.random.default_rng(7)
    mask = random_mask(rng)
    values = smooth_values(rng, mask)[0]
    dh = np.abs(values).max() / 100
    got = tfce_transform(values, mask, dh=dh, two_sided=True)
    expected = literal_tfce(values, mask, dh) - literal_tfce(-values, mask, dh)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-9)
    assert np.all(got[values > dh] > 0)
    assert np.all(got[values < -dh] < 0)


@pytest.mark.parametrize("two_sided", [False, True])
def test_matches_nilearn_except_one_documented_term(two_sided):
    # nilearn keeps voxels ">=" each height, FSL (and rsxai) ">": at the last
    # height, the map's maximum itself, nilearn adds max ** 2 to the peak voxel
    # (a cluster of one). Every other voxel is the same.
    # A private nilearn function: if nilearn moves it, test_stats still
    # compares with the public permuted_ols.
    nilearn_utils = pytest.importorskip("nilearn.mass_univariate._utils")
    rng = np.random.default_rng(8)
    mask = random_mask(rng, (12, 11, 10))
    values = smooth_values(rng, mask)[0]
    volume = np.zeros(mask.shape)
    volume[mask] = values
    structure = ndimage.generate_binary_structure(3, 1)
    nilearn_values = nilearn_utils.calculate_tfce(
        volume[..., None], structure, two_sided_test=two_sided
    )[..., 0][mask]
    top = np.abs(values).max() if two_sided else values.max()
    ours = tfce_transform(values, mask, dh=top / 100, two_sided=two_sided)
    peak = np.argmax(np.abs(values) if two_sided else values)
    others = np.arange(values.size) != peak
    np.testing.assert_allclose(ours[others], nilearn_values[others], rtol=1e-10)
    gap = abs(nilearn_values[peak] - ours[peak])
    assert gap == pytest.approx(top**2, rel=1e-9) or gap < 1e-9 * top**2


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_default_step_matches_nilearn_map_by_map(connectivity, two_sided):
    # nilearn's calculate_tfce gives every map of a batch its own 100 steps up
    # to its own maximum (what permuted_ols does to each permuted map);
    # tfce_transform's default step does the same, so on maps of different
    # maxima the two agree except nilearn's ">=" term at each map's peak.
    # (permutation_glm instead fixes the step from the observed map, as
    # randomise does: that, not the TFCE sweep, is why its FWE p differ.)
    # Tolerance: both add the same <= 100 terms per sign in float64; heights
    # differ by at most a few ulps (default_step's nudge, linspace vs k * dh),
    # so 1e-10 is far above rounding (measured: ~6e-16) and far below one
    # missing or extra term (the smallest, dh ** 2 * size ** 0.5 at the first
    # height, is at least 1 / sum(k ** 2, k <= 100) ~ 3e-6 of a voxel's TFCE).
    nilearn_utils = pytest.importorskip("nilearn.mass_univariate._utils")
    rng = np.random.default_rng(10 + connectivity)
    mask = random_mask(rng, (10, 11, 9))
    values = smooth_values(rng, mask, n_maps=3) * np.array([[0.6], [1.0], [2.5]])
    volumes = np.zeros((*mask.shape, 3))
    volumes[mask] = values.T
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    theirs = nilearn_utils.calculate_tfce(volumes, structure, two_sided_test=two_sided)[mask].T
    ours = tfce_transform(values, mask, connectivity=connectivity, two_sided=two_sided)
    for row, mine, nilearn_row in zip(values, ours, theirs, strict=True):
        tested = np.abs(row) if two_sided else row
        peak = np.argmax(tested)
        others = np.arange(row.size) != peak
        np.testing.assert_allclose(mine[others], nilearn_row[others], rtol=1e-10)
        assert nilearn_row[peak] - mine[peak] == pytest.approx(
            np.sign(row[peak]) * tested[peak] ** 2, rel=1e-9
        )
        assert np.abs(mine).max() > 0


def test_nothing_above_zero_gives_zero():
    rng = np.random.default_rng(9)
    mask = random_mask(rng)
    negative = -np.abs(smooth_values(rng, mask)[0]) - 0.1
    assert np.all(tfce_transform(negative, mask) == 0)
    assert np.all(tfce_transform(negative, mask, dh=0.1) == 0)


def test_neighbour_table_in_a_full_box():
    mask = np.ones((4, 5, 6), dtype=bool)
    coords = np.argwhere(mask)
    n = coords.shape[0]
    for connectivity, max_step in ((6, 1), (18, 2), (26, 3)):
        table = neighbour_table(mask, connectivity)
        assert table.shape == (n, connectivity)
        inside = table < n
        voxel = np.repeat(np.arange(n), inside.sum(axis=1))
        diff = np.abs(coords[table[inside]] - coords[voxel])
        assert diff.max() == 1 and diff.sum(axis=1).max() == max_step
        # every pair of neighbours appears from both sides, and only once each
        pairs = set(zip(voxel.tolist(), table[inside].tolist(), strict=True))
        assert len(pairs) == voxel.size and all((b, a) in pairs for a, b in pairs)
        # interior voxels have all their neighbours, corner voxels the fewest
        assert inside.sum(axis=1).max() == connectivity
    assert neighbour_table(mask, 6)[0].tolist().count(n) == 3  # the corner (0, 0, 0)


def test_errors_name_the_parameter():
    mask = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"tfce_connectivity must be one of \[6, 18, 26\].*8"):
        neighbour_table(mask, 8)
    with pytest.raises(ValueError, match=r"maps must have shape .*n_voxels=27.*\(5,\)"):
        tfce_transform(np.zeros(5), mask)
