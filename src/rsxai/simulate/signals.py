"""Time courses and nuisance signals of the simulated cohort.

Everything here is per subject and drawn from the subject's own random
generator: the network time courses, spatially smooth AR(1) noise, head-motion
parameters and the artefact they leave, physiological (white-matter and CSF)
signals, scanner drift, and the fMRIPrep-style confounds table that goes with
them. Frequencies are in Hz and extents in mm, so that nothing depends on the
repetition time or the voxel size the cohort is simulated at.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

# Frequency band of resting-state network fluctuations, Hz.
NETWORK_BAND_HZ = (0.01, 0.1)
# Magnitude range of the random correlations between network time courses.
NETWORK_CORRELATION_RANGE = (0.1, 0.3)
# Smooth noise: FWHM in mm and the time constant (s) of its AR(1) autocorrelation
# (AR coefficient exp(-tr / tau): 0.37 at TR 2 s, 0.70 at TR 0.72 s).
NOISE_FWHM_MM = 6.0
NOISE_AR_TIME_CONSTANT_S = 2.0
# Radius of the sphere on which framewise displacement turns rotations into mm (Power 2012).
FD_HEAD_RADIUS_MM = 50.0
# Spin-history saturation: fractional signal drop per mm^2 of through-plane
# (z) displacement between volumes.
SPIN_HISTORY_PER_MM2 = 0.03
# Scanner drift: SD of the linear drift rate (% of baseline per minute) and of
# the quadratic term's amplitude (%).
LINEAR_DRIFT_PERCENT_PER_MIN_SD = 0.2
QUADRATIC_DRIFT_PERCENT_SD = 0.3


def band_limited(
    n_samples: int,
    n_signals: int,
    tr: float,
    band_hz: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Gaussian noise band-passed with a zero-phase Butterworth filter, unit variance.

    The series is drawn 100 s longer on each side and cropped, so that the
    filter's edge transients fall outside it.

    Parameters
    ----------
    n_samples, n_signals : int
    tr : float
        Sampling interval in seconds.
    band_hz : (float, float)
        Pass band; the upper edge is lowered to 90 % of the Nyquist frequency
        when it lies above it.
    rng : numpy.random.Generator

    Returns
    -------
    series : ndarray of shape (n_samples, n_signals), float64
    """
    nyquist = 0.5 / tr
    high = min(band_hz[1], 0.9 * nyquist)
    sos = signal.butter(2, [band_hz[0], high], btype="bandpass", fs=1.0 / tr, output="sos")
    pad = int(np.ceil(100.0 / tr))
    white = rng.standard_normal((n_samples + 2 * pad, n_signals))
    series = signal.sosfiltfilt(sos, white, axis=0)[pad : pad + n_samples]
    series -= series.mean(axis=0)
    return series / series.std(axis=0)


def network_timecourses(
    n_volumes: int, n_networks: int, tr: float, rng: np.random.Generator
) -> np.ndarray:
    """Band-limited, unit-variance network time courses with mild random correlations.

    Independent band-limited series are whitened (so that their sample
    correlation is exactly the identity) and mixed by the Cholesky factor of
    a random correlation matrix whose off-diagonal entries have magnitudes in
    :data:`NETWORK_CORRELATION_RANGE` and random signs; the sample
    correlation of the result is that matrix.

    Returns
    -------
    timecourses : ndarray of shape (n_volumes, n_networks), float64
    """
    independent = band_limited(n_volumes, n_networks, tr, NETWORK_BAND_HZ, rng)
    independent = independent @ np.linalg.inv(np.linalg.cholesky(np.cov(independent.T))).T
    low, high = NETWORK_CORRELATION_RANGE
    upper = rng.uniform(low, high, size=(n_networks, n_networks))
    upper *= rng.choice([-1.0, 1.0], size=upper.shape)
    off_diagonal = np.triu(upper, 1) + np.triu(upper, 1).T
    # Random entries need not form a valid correlation matrix; shrink them
    # towards the identity until the matrix is safely positive definite.
    shrink = 1.0
    while np.linalg.eigvalsh(np.eye(n_networks) + shrink * off_diagonal).min() < 0.1:
        shrink *= 0.9
    correlation = np.eye(n_networks) + shrink * off_diagonal
    timecourses = independent @ np.linalg.cholesky(correlation).T
    return timecourses / timecourses.std(axis=0, ddof=1)


def smooth_ar1_noise(
    n_volumes: int,
    mask: np.ndarray,
    voxel_size: float,
    tr: float,
    rng: np.random.Generator,
    *,
    chunk: int = 16,
) -> np.ndarray:
    """Spatially smooth, temporally AR(1) Gaussian noise of unit variance in a mask.

    Parameters
    ----------
    n_volumes : int
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels returned (noise is drawn on the mask's bounding box plus a margin).
    voxel_size : float
        mm, to turn :data:`NOISE_FWHM_MM` into voxels.
    tr : float
        s, to turn :data:`NOISE_AR_TIME_CONSTANT_S` into an AR coefficient.
    rng : numpy.random.Generator
    chunk : int
        Volumes smoothed at a time (bounds memory at small voxel sizes).

    Returns
    -------
    noise : ndarray of shape (n_volumes, n_voxels), float32
        ``n_voxels = mask.sum()``, voxels in C order of the mask.
    """
    sigma = NOISE_FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0))) / voxel_size
    margin = int(np.ceil(4 * sigma))
    coords = np.argwhere(mask)
    low = np.maximum(coords.min(axis=0) - margin, 0)
    high = np.minimum(coords.max(axis=0) + 1 + margin, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    inner = mask[box]
    # Smoothing white noise scales its variance by the kernel's energy.
    impulse = np.zeros((2 * margin + 1,) * 3)
    impulse[(margin,) * 3] = 1.0
    gain = float(np.sqrt((ndimage.gaussian_filter(impulse, sigma) ** 2).sum()))

    noise = np.empty((n_volumes, int(inner.sum())), dtype=np.float32)
    for start in range(0, n_volumes, chunk):
        stop = min(start + chunk, n_volumes)
        white = rng.standard_normal((stop - start, *inner.shape), dtype=np.float32)
        smooth = ndimage.gaussian_filter(white, (0, sigma, sigma, sigma))
        noise[start:stop] = smooth[:, inner] / gain
    phi = np.exp(-tr / NOISE_AR_TIME_CONSTANT_S)
    # Stationary start: the first sample keeps unit variance.
    noise[0] /= np.sqrt(1.0 - phi**2)
    return signal.lfilter([np.sqrt(1.0 - phi**2)], [1.0, -phi], noise, axis=0).astype(
        np.float32, copy=False
    )


def motion_parameters(n_volumes: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """Realistic rigid-body head-motion parameters of one run.

    A subject-specific severity (log-normal) scales three parts: a slow random
    walk with a linear "sinking" drift along z, per-volume jitter (apparent
    motion from breathing), and a few abrupt movements (Poisson, 0.5 per
    minute at median severity) that return part of the way over a few seconds,
    which make the framewise-displacement spikes.

    Returns
    -------
    motion : ndarray of shape (n_volumes, 6), float64
        trans_x, trans_y, trans_z in mm and rot_x, rot_y, rot_z in radians,
        relative to the first volume as realignment reports them.
    """
    times = np.arange(n_volumes) * tr
    severity = rng.lognormal(0.0, 0.5)
    # Per-parameter scales: mm for translations, radians for rotations (0.0002
    # rad moves a point 50 mm from the centre by 0.01 mm).
    walk_sd = np.array([0.01, 0.01, 0.01, 2e-4, 2e-4, 2e-4]) * np.sqrt(tr)
    jitter_sd = np.array([0.01, 0.015, 0.015, 2e-4, 2e-4, 2e-4])
    jump_sd = np.array([0.3, 0.3, 0.3, 5e-3, 5e-3, 5e-3])

    walk = np.cumsum(rng.normal(0.0, walk_sd, size=(n_volumes, 6)), axis=0)
    motion = severity * (walk + rng.normal(0.0, jitter_sd, size=(n_volumes, 6)))
    motion[:, 2] += severity * rng.normal(0.0, 0.05) * times / 60.0
    n_jumps = rng.poisson(0.5 * severity * times[-1] / 60.0)
    for _ in range(n_jumps):
        onset = rng.uniform(0.0, times[-1])
        displacement = severity * rng.normal(0.0, jump_sd)
        returned = rng.uniform(0.3, 1.0)
        time_constant = rng.uniform(2.0, 10.0)
        after = times >= onset
        elapsed = times[after] - onset
        profile = 1.0 - returned * (1.0 - np.exp(-elapsed / time_constant))
        motion[after] += profile[:, None] * displacement
    return motion - motion[0]


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power et al. (2012) framewise displacement in mm; NaN at the first volume.

    Parameters
    ----------
    motion : ndarray of shape (n_volumes, 6)
        Translations (mm) then rotations (radians).

    Returns
    -------
    fd : ndarray of shape (n_volumes,)
    """
    delta = np.abs(np.diff(motion, axis=0))
    fd = delta[:, :3].sum(axis=1) + FD_HEAD_RADIUS_MM * delta[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def motion_patterns(
    baseline: np.ndarray, brain_mask: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How each motion parameter changes each voxel's intensity (first-order Taylor).

    A rigid displacement ``d(x)`` moves the image, so a voxel sees
    ``I(x - d(x)) ~ I(x) - grad I(x) . d(x)``: the artefact of parameter j is
    ``-grad I . d_j(x)`` with ``d_j = e_j`` for a translation and
    ``e_j x (x - c)`` for a rotation about the brain's centre ``c``. It is
    largest at the brain's edge and around the ventricles, as in real data.

    Parameters
    ----------
    baseline : ndarray of shape (X, Y, Z)
        Baseline intensity over the whole grid (zero outside the head).
    brain_mask : ndarray of bool, shape (X, Y, Z)
    affine : ndarray of shape (4, 4)

    Returns
    -------
    patterns : ndarray of shape (n_voxels, 6), float32
        Intensity change per mm (translations) or per radian (rotations).
    slice_fraction : ndarray of shape (n_voxels,), float32
        When in the volume's acquisition each voxel's slice is read, from 0
        (first) to 1 (last), for ascending axial slices.
    """
    voxel_size = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    gradient = np.stack(
        [g[brain_mask] for g in np.gradient(baseline.astype(np.float64), *voxel_size)], axis=1
    )
    ijk = np.argwhere(brain_mask)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    centered = xyz - xyz.mean(axis=0)
    patterns = np.empty((len(xyz), 6))
    patterns[:, :3] = -gradient
    for j in range(3):
        axis = np.zeros(3)
        axis[j] = 1.0
        patterns[:, 3 + j] = -(gradient * np.cross(axis, centered)).sum(axis=1)
    z = ijk[:, 2]
    slice_fraction = (z - z.min()) / max(z.max() - z.min(), 1)
    return patterns.astype(np.float32), slice_fraction.astype(np.float32)


def motion_artefact(
    motion: np.ndarray,
    patterns: np.ndarray,
    slice_fraction: np.ndarray,
    baseline: np.ndarray,
) -> np.ndarray:
    """Intensity change that head motion causes, in the span of the 24 motion regressors.

    Three parts: the displaced image (each parameter times its pattern), the
    movement within the volume's acquisition (a slice read at fraction ``f``
    of the volume sees ``m(t) - (1 - f) * dm(t)``, so derivative regressors
    are needed), and spin-history saturation after through-plane movement
    (proportional to the squared z derivative).

    Parameters
    ----------
    motion : ndarray of shape (n_volumes, 6)
    patterns : ndarray of shape (n_voxels, 6)
    slice_fraction : ndarray of shape (n_voxels,)
    baseline : ndarray of shape (n_voxels,)

    Returns
    -------
    artefact : ndarray of shape (n_volumes, n_voxels), float32
    """
    derivative = np.vstack([np.zeros((1, 6)), np.diff(motion, axis=0)]).astype(np.float32)
    artefact = motion.astype(np.float32) @ patterns.T
    artefact -= (derivative @ patterns.T) * (1.0 - slice_fraction)
    artefact -= SPIN_HISTORY_PER_MM2 * derivative[:, [2]] ** 2 * baseline
    return artefact


def physiological_signals(n_volumes: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """White-matter and CSF physiological time courses, unit variance.

    Respiration (0.2-0.33 Hz) and the cardiac cycle (0.9-1.3 Hz), each with a
    slowly wandering phase, are sampled once per volume, so they alias into
    the low frequencies as they do at ordinary TRs; slow fluctuations below
    0.1 Hz (respiratory volume, CO2) modulate respiration and reach both
    tissues directly.

    Returns
    -------
    signals : ndarray of shape (n_volumes, 2), float64
        Columns: white matter, CSF.
    """
    times = np.arange(n_volumes) * tr
    slow = band_limited(n_volumes, 2, tr, (0.005, 0.1), rng)
    breathing_phase = 2 * np.pi * rng.uniform(0.2, 0.33) * times + np.cumsum(
        rng.normal(0.0, 0.3 * np.sqrt(tr), n_volumes)
    )
    cardiac_phase = 2 * np.pi * rng.uniform(0.9, 1.3) * times + np.cumsum(
        rng.normal(0.0, 0.6 * np.sqrt(tr), n_volumes)
    )
    breathing = (1.0 + 0.3 * slow[:, 0]) * np.cos(breathing_phase)
    cardiac = np.cos(cardiac_phase)
    white_matter = 0.8 * slow[:, 0] + 0.3 * breathing
    csf = 0.5 * slow[:, 1] + 0.6 * breathing + 0.6 * cardiac
    signals = np.column_stack([white_matter, csf])
    signals -= signals.mean(axis=0)
    return signals / signals.std(axis=0)


def drift(n_volumes: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """Relative scanner drift: linear plus quadratic (Legendre) over the run.

    Returns
    -------
    drift : ndarray of shape (n_volumes,), float64
        Fraction of the baseline added at each volume.
    """
    span = np.linspace(-1.0, 1.0, n_volumes)
    minutes = n_volumes * tr / 60.0
    linear = rng.normal(0.0, LINEAR_DRIFT_PERCENT_PER_MIN_SD) * minutes / 2.0
    quadratic = rng.normal(0.0, QUADRATIC_DRIFT_PERCENT_SD)
    return (linear * span + quadratic * (1.5 * span**2 - 0.5)) / 100.0
