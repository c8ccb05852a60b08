"""clean_signals against nilearn.signal.clean, and against what a filter must do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nilearn.signal import clean as nilearn_clean
from scipy.interpolate import CubicSpline

from rsxai.exceptions import InputError
from rsxai.preprocess import clean_signals
from rsxai.preprocess import signal as signal_cleaning

TR = 2.0


def realistic_signals(n_volumes=100, n_voxels=300, seed=0):
    """BOLD-like series: a baseline, a drift, slow autocorrelated fluctuations, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_volumes)[:, None]
    baseline = rng.uniform(500, 1500, n_voxels)
    drift = rng.normal(0, 0.2, n_voxels) * t
    slow = np.cumsum(rng.normal(0, 1, (n_volumes, n_voxels)), axis=0)
    return (baseline + drift + slow + rng.normal(0, 2, (n_volumes, n_voxels))).astype(np.float32)


def random_confounds(n_volumes=100, n_confounds=6, seed=1):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(n_volumes, n_confounds)), axis=0)


def nilearn_reference(signals, confounds, sample_mask, high_pass, low_pass, tr=TR):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nilearn_clean(
            np.asarray(signals, dtype=np.float64),
            detrend=True,
            standardize="zscore_sample",
            confounds=confounds,
            sample_mask=sample_mask,
            low_pass=low_pass,
            high_pass=high_pass,
            t_r=tr,
            filter="butterworth",
        )


def assert_matches(ours, reference):
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=0)
    centred = (ours - ours.mean(0)) * (reference - reference.mean(0))
    correlation = centred.sum(0) / (ours.std(0) * reference.std(0) * len(ours))
    assert correlation.min() > 0.99999


@pytest.mark.parametrize("with_confounds", [False, True])
@pytest.mark.parametrize(
    ("high_pass", "low_pass"), [(0.01, 0.1), (0.01, None), (None, 0.1), (None, None)]
)
def test_matches_nilearn_clean(with_confounds, high_pass, low_pass):
    signals = realistic_signals()
    confounds = random_confounds() if with_confounds else None
    ours = clean_signals(
        signals, tr=TR, confounds=confounds, high_pass=high_pass, low_pass=low_pass
    )
    assert_matches(ours, nilearn_reference(signals, confounds, None, high_pass, low_pass))


@pytest.mark.parametrize(("high_pass", "low_pass"), [(0.01, 0.1), (None, None)])
def test_censoring_matches_nilearn(high_pass, low_pass):
    # Censored volumes whose mirror (n - 1 - i) is kept, including two at the
    # start: the pattern on which nilearn 0.14's interpolation is complete.
    signals, confounds = realistic_signals(), random_confounds()
    censored = [0, 1, 30, 31, 32, 60]
    sample_mask = np.setdiff1d(np.arange(100), censored)
    ours = clean_signals(
        signals,
        tr=TR,
        confounds=confounds,
        sample_mask=sample_mask,
        high_pass=high_pass,
        low_pass=low_pass,
    )
    reference = nilearn_reference(signals, confounds, sample_mask.copy(), high_pass, low_pass)
    assert ours.shape[0] == 100 - len(censored)
    assert_matches(ours, reference)


def test_long_runs_filter_each_voxel_with_the_same_result(monkeypatch):
    # Up to _OPERATOR_MAX_VOLUMES volumes the cleaning is one matrix product;
    # beyond, each voxel is filtered. Force the second way on a short run.
    signals, confounds = realistic_signals(n_voxels=200), random_confounds()
    sample_mask = np.setdiff1d(np.arange(100), [0, 1, 30, 31, 32, 60])
    by_product = clean_signals(signals, tr=TR, confounds=confounds, sample_mask=sample_mask)
    monkeypatch.setattr(signal_cleaning, "_OPERATOR_MAX_VOLUMES", 0)
    by_filter = clean_signals(signals, tr=TR, confounds=confounds, sample_mask=sample_mask)
    np.testing.assert_allclose(by_filter, by_product, atol=1e-6, rtol=0)
    reference = nilearn_reference(signals, confounds, sample_mask.copy(), 0.01, 0.1)
    assert_matches(by_filter, reference)


def test_censoring_interpolates_every_censored_volume():
    # Volumes 40 and 59 mirror each other (n = 100), so nilearn 0.14 leaves
    # their spikes in place before filtering. Reference: interpolate them by
    # hand (cubic spline through the kept volumes), then nilearn.
    signals, confounds = realistic_signals(), random_confounds()
    censored = [40, 59, 97, 98, 99]
    signals[censored] += 500.0  # motion spikes
    sample_mask = np.setdiff1d(np.arange(100), censored)
    ours = clean_signals(signals, tr=TR, confounds=confounds, sample_mask=sample_mask)

    last = sample_mask[-1] + 1  # trailing censored volumes are dropped, not extrapolated
    interpolated_signals = signals[:last].astype(np.float64)
    interpolated_confounds = confounds[:last].copy()
    for array in (interpolated_signals, interpolated_confounds):
        spline = CubicSpline(sample_mask, array[sample_mask], axis=0)
        array[[40, 59]] = spline([40, 59])
    reference = nilearn_reference(
        interpolated_signals, interpolated_confounds, sample_mask.copy(), 0.01, 0.1
    )
    assert_matches(ours, reference)
    # nilearn on the raw series lets the spikes at 40 and 59 through the filter.
    leaky = nilearn_reference(signals, confounds, sample_mask.copy(), 0.01, 0.1)
    assert np.abs(leaky - reference).max() > 0.1


def test_boolean_and_index_sample_masks_agree():
    signals = realistic_signals(n_voxels=20)
    keep = np.ones(100, dtype=bool)
    keep[[10, 11, 50]] = False
    by_bool = clean_signals(signals, tr=TR, sample_mask=keep)
    by_index = clean_signals(signals, tr=TR, sample_mask=np.flatnonzero(keep))
    np.testing.assert_array_equal(by_bool, by_index)


def sine_amplitude(series, frequency, tr):
    """Least-squares amplitude of a sine of the given frequency in each column."""
    t = np.arange(series.shape[0]) * tr
    design = np.column_stack(
        [np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)]
    )
    coefficients = np.linalg.lstsq(design, series, rcond=None)[0]
    return np.hypot(*coefficients)


def test_band_pass_keeps_the_band_and_removes_the_rest():
    # Long enough that the filter's edge transients stay small.
    tr, n_volumes = 1.0, 1200
    t = np.arange(n_volumes)[:, None] * tr
    low, inside, high = 0.002, 0.05, 0.3  # Hz; band 0.01-0.1, Nyquist 0.5
    sines = {f: np.sin(2 * np.pi * f * t) for f in (low, inside, high)}
    mixture = sines[low] + sines[inside] + sines[high]
    out_of_band = sines[low] + sines[high]
    cleaned = clean_signals(
        np.hstack([mixture, out_of_band]), tr=tr, standardize=False, detrend_order=0
    )
    assert sine_amplitude(cleaned[:, :1], inside, tr)[0] > 0.98
    for frequency in (low, high):
        assert sine_amplitude(cleaned[:, :1], frequency, tr)[0] < 0.01
    # Nothing comes out where nothing in the band went in (away from the edges).
    assert np.abs(cleaned[200:-200, 1]).max() < 0.02  # input peaks at 2
    # Only the in-band sine is left (up to edge effects).
    middle = slice(100, -100)
    assert np.corrcoef(cleaned[middle, 0], sines[inside][middle, 0])[0, 1] > 0.999


@pytest.mark.parametrize(("high_pass", "low_pass"), [(0.01, None), (None, 0.1)])
def test_one_sided_filters(high_pass, low_pass):
    tr, n_volumes = 1.0, 1200
    t = np.arange(n_volumes)[:, None] * tr
    # Each sine is a decade away from the cut-off it should pass or be stopped by.
    cut_off = high_pass or low_pass
    slow_f, fast_f = cut_off / 10, min(cut_off * 10, 0.3)
    slow, fast = np.sin(2 * np.pi * slow_f * t), np.sin(2 * np.pi * fast_f * t)
    cleaned = clean_signals(
        slow + fast,
        tr=tr,
        high_pass=high_pass,
        low_pass=low_pass,
        standardize=False,
        detrend_order=0,
    )
    kept, removed = (fast, slow) if high_pass else (slow, fast)
    kept_f, removed_f = (fast_f, slow_f) if high_pass else (slow_f, fast_f)
    assert sine_amplitude(cleaned, kept_f, tr)[0] > 0.98
    assert sine_amplitude(cleaned, removed_f, tr)[0] < 0.01
    middle = slice(200, -200)
    assert np.corrcoef(cleaned[middle, 0], kept[middle, 0])[0, 1] > 0.999
    assert np.abs(np.corrcoef(cleaned[middle, 0], removed[middle, 0])[0, 1]) < 0.05


def test_confound_regression_removes_an_added_confound():
    signals = realistic_signals(n_voxels=50)
    confounds = random_confounds(n_confounds=3)
    rng = np.random.default_rng(3)
    loadings = rng.normal(0, 20, (3, 50))
    contaminated = signals + (confounds @ loadings).astype(np.float32)
    cleaned = clean_signals(contaminated, tr=TR, confounds=confounds)
    reference = clean_signals(signals, tr=TR, confounds=confounds)
    np.testing.assert_allclose(cleaned, reference, atol=1e-4)
    # Without regression the confound dominates the cleaned signal.
    unregressed = clean_signals(contaminated, tr=TR)
    assert np.abs(unregressed - reference).max() > 0.5


@pytest.mark.parametrize("order", [1, 2])
def test_detrending_removes_polynomial_trends(order):
    rng = np.random.default_rng(4)
    n_volumes = 80
    t = np.arange(n_volumes, dtype=np.float64)
    noise = rng.normal(size=(n_volumes, 10))
    trend = 100 + 3 * t[:, None] + (0.05 * t[:, None] ** 2 if order == 2 else 0.0)
    cleaned = clean_signals(
        trend + noise,
        tr=TR,
        detrend_order=order,
        high_pass=None,
        low_pass=None,
        standardize=False,
    )
    # Reference: residuals of numpy's least-squares polynomial fit.
    expected = (
        noise
        - np.polynomial.polynomial.polyval(t, np.polynomial.polynomial.polyfit(t, noise, order)).T
    )
    np.testing.assert_allclose(cleaned, expected, atol=1e-4)
    # A lower order leaves the curvature in.
    if order == 2:
        under = clean_signals(
            trend + noise,
            tr=TR,
            detrend_order=1,
            high_pass=None,
            low_pass=None,
            standardize=False,
        )
        assert np.abs(under - expected).max() > 1.0


def test_output_is_standardised_and_constant_voxels_are_zero():
    signals = realistic_signals(n_voxels=6)
    signals[:, 0] = 0.0
    signals[:, 1] = 1234.5
    cleaned = clean_signals(signals, tr=TR, confounds=random_confounds())
    assert np.isfinite(cleaned).all()
    np.testing.assert_array_equal(cleaned[:, :2], 0.0)
    np.testing.assert_allclose(cleaned[:, 2:].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(cleaned[:, 2:].std(0, ddof=1), 1, atol=1e-5)


def test_cut_off_at_or_above_nyquist_is_an_error_naming_the_tr():
    with pytest.raises(InputError, match=r"low_pass=0\.25 Hz.*Nyquist.*0\.25 Hz.*tr=2"):
        clean_signals(realistic_signals(n_voxels=2), tr=2.0, low_pass=0.25)
    with pytest.raises(InputError, match=r"high_pass=0\.3 Hz.*tr=2"):
        clean_signals(realistic_signals(n_voxels=2), tr=2.0, high_pass=0.3, low_pass=None)


def test_other_input_errors():
    signals = realistic_signals(n_voxels=2)
    with pytest.raises(InputError, match=r"high_pass \(0\.1 Hz\) must be below low_pass"):
        clean_signals(signals, tr=TR, high_pass=0.1, low_pass=0.05)
    with pytest.raises(InputError, match=r"usable volumes.*needs more than"):
        clean_signals(signals[:20], tr=TR)
    with pytest.raises(InputError, match=r"confounds must have shape.*n_volumes=100"):
        clean_signals(signals, tr=TR, confounds=np.zeros((99, 2)))
    with pytest.raises(InputError, match=r"tr must be"):
        clean_signals(signals, tr=0)
    with pytest.raises(InputError, match=r"sample_mask must hold increasing"):
        clean_signals(signals, tr=TR, sample_mask=np.array([0, 5, 200]))
