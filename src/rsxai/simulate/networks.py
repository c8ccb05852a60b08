"""Spatial ground truth of the simulated cohort: resting-state networks and planted effects.

Each canonical network is a few smooth Gaussian blobs placed on the grey matter
of regions that resting-state studies consistently report for it (the centres
below are chosen from anatomy, in MNI152 mm, RAS). They are deliberately
independent of the Seitzman et al. (2018) coordinates that
:mod:`rsxai.networks` uses to name ICA components, so that recovering a
simulated network by name is a real test and not a circular one.

A planted effect multiplies one network's map of every patient by
``1 + sign * strength * w(x)``, where ``w`` is a smooth blob with peak 1 at the
effect's centre (see :func:`effect_weight`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Blob:
    """One Gaussian blob of a network map.

    Parameters
    ----------
    region : str
        Anatomical region the blob stands for.
    center_mm : tuple of 3 float
        MNI (RAS) centre in mm.
    amplitude : float
        Height relative to the network's main blobs.
    sigma_mm : float
        Gaussian standard deviation in mm.
    """

    region: str
    center_mm: tuple[float, float, float]
    amplitude: float = 1.0
    sigma_mm: float = 10.0


NETWORK_BLOBS: dict[str, tuple[Blob, ...]] = {
    "sensorimotor": (
        Blob("left precentral/postcentral gyrus, hand area", (-38.0, -26.0, 54.0)),
        Blob("right precentral/postcentral gyrus, hand area", (38.0, -26.0, 54.0)),
        Blob("supplementary motor area", (0.0, -6.0, 60.0), 0.8),
        Blob("left ventral precentral gyrus, face area", (-56.0, -8.0, 30.0), 0.6),
        Blob("right ventral precentral gyrus, face area", (56.0, -8.0, 30.0), 0.6),
    ),
    "visual": (
        Blob("left calcarine sulcus", (-8.0, -90.0, 4.0)),
        Blob("right calcarine sulcus", (10.0, -88.0, 6.0)),
        Blob("cuneus", (0.0, -80.0, 26.0), 0.7),
        Blob("left lingual gyrus", (-14.0, -68.0, -10.0), 0.7),
        Blob("right lingual gyrus", (14.0, -68.0, -10.0), 0.7),
    ),
    "default_mode": (
        Blob("posterior cingulate cortex / precuneus", (0.0, -58.0, 26.0), 1.0, 11.0),
        Blob("medial prefrontal cortex", (0.0, 52.0, 6.0), 0.8, 11.0),
        Blob("left angular gyrus", (-48.0, -66.0, 30.0), 0.7),
        Blob("right angular gyrus", (48.0, -66.0, 30.0), 0.7),
    ),
    "frontoparietal_left": (
        Blob("left middle frontal gyrus (dorsolateral prefrontal)", (-44.0, 22.0, 36.0)),
        Blob("left inferior parietal lobule", (-42.0, -52.0, 50.0)),
        Blob("left inferior frontal gyrus, pars triangularis", (-48.0, 26.0, 8.0), 0.7),
        Blob("left posterior middle temporal gyrus", (-58.0, -48.0, -6.0), 0.5),
    ),
    "frontoparietal_right": (
        Blob("right middle frontal gyrus (dorsolateral prefrontal)", (44.0, 24.0, 38.0)),
        Blob("right inferior parietal lobule", (46.0, -54.0, 46.0)),
        Blob("right inferior frontal gyrus, pars triangularis", (48.0, 26.0, 8.0), 0.7),
        Blob("right posterior middle temporal gyrus", (58.0, -46.0, -6.0), 0.5),
    ),
    "auditory": (
        Blob("left Heschl's gyrus", (-46.0, -18.0, 10.0)),
        Blob("right Heschl's gyrus", (46.0, -18.0, 10.0)),
        Blob("left planum temporale / superior temporal gyrus", (-60.0, -30.0, 12.0), 0.7),
        Blob("right planum temporale / superior temporal gyrus", (62.0, -26.0, 10.0), 0.7),
    ),
    "salience": (
        Blob("left anterior insula", (-36.0, 18.0, 2.0)),
        Blob("right anterior insula", (38.0, 18.0, 0.0)),
        Blob("dorsal anterior cingulate cortex", (4.0, 24.0, 36.0), 0.9),
    ),
    "dorsal_attention": (
        Blob("left frontal eye field", (-26.0, -8.0, 54.0), 0.8),
        Blob("right frontal eye field", (28.0, -8.0, 54.0), 0.8),
        Blob("left superior parietal lobule / intraparietal sulcus", (-28.0, -58.0, 52.0)),
        Blob("right superior parietal lobule / intraparietal sulcus", (28.0, -58.0, 52.0)),
        Blob("left middle temporal visual area (MT+)", (-46.0, -70.0, -2.0), 0.6),
        Blob("right middle temporal visual area (MT+)", (48.0, -66.0, -2.0), 0.6),
    ),
    "cerebellar": (
        Blob("left cerebellar hemisphere, lobule VI / crus I", (-30.0, -68.0, -30.0), 1.0, 11.0),
        Blob("right cerebellar hemisphere, lobule VI / crus I", (30.0, -68.0, -30.0), 1.0, 11.0),
        Blob("cerebellar vermis, lobule VI", (0.0, -70.0, -22.0), 0.6),
    ),
}

NETWORK_NAMES: tuple[str, ...] = tuple(NETWORK_BLOBS)

# Grey-matter probability below which a voxel carries no network signal.
GREY_MATTER_THRESHOLD = 0.2
# Blobs are cut at this many standard deviations (value 0.011 of the peak), so
# that a network is exactly zero far from its regions.
BLOB_TRUNCATION_SD = 3.0
# Subject variability: per-axis SD of blob-centre shifts (mean displacement
# about 2.4 mm), SD of a subject's whole-network gain and of each blob's gain.
SHIFT_SD_MM = 1.5
NETWORK_GAIN_SD = 0.15
BLOB_GAIN_SD = 0.1
# 70 % of the network's value at the effect's centre. The true maps' Cohen's
# d there is ~1.8 at 4 mm, but what a pipeline sees is the dual-regression
# estimate, attenuated by noise and the group-map fit: on the default 30 + 30
# cohort d ~ 0.6-1.0 at the centre, TFCE finds each effect (FWE p < 0.05), and
# a linear SVM on the whole-brain visual map reaches ~75 % accuracy.
DEFAULT_STRENGTH = 0.7
# The effect blob is cut where it falls to 2**-9 of its peak.
EFFECT_TRUNCATION_RADII = 3.0
# An effect must meet its network: the map reaches this fraction of its peak
# within radius_mm of the effect's centre.
EFFECT_MIN_MAP_VALUE = 0.2


@dataclass(frozen=True)
class Effect:
    """A planted difference between patients and controls in one network's map.

    A patient's map of ``network`` is multiplied by
    ``1 + sign * strength * w(x)``, with ``w(x) = 2 ** -(d / radius_mm) ** 2``
    (``d`` the distance to ``center_mm``; 1 at the centre, 1/2 at
    ``radius_mm``, zero beyond ``3 * radius_mm``).

    Parameters
    ----------
    network : str
        One of :data:`NETWORK_NAMES`.
    center_mm : tuple of 3 float
        MNI (RAS) centre in mm; must lie in the brain and in the network.
    radius_mm : float, default=16.0
        Distance in mm at which the change falls to half its peak.
    strength : float, default=DEFAULT_STRENGTH
        Fraction of the network map changed at the centre, in (0, 1].
    sign : {-1, 1}, default=-1
        -1: patients' maps are lower (e.g. reduced connectivity); 1: higher.
    """

    network: str
    center_mm: tuple[float, float, float]
    radius_mm: float = 16.0
    strength: float = DEFAULT_STRENGTH
    sign: int = -1


DEFAULT_EFFECTS: tuple[Effect, ...] = (
    # Hand knobs of both precentral gyri: upper-motor-neuron involvement of
    # the hands is an early ALS finding.
    Effect("sensorimotor", (-38.0, -26.0, 54.0)),
    Effect("sensorimotor", (38.0, -26.0, 54.0)),
    # Right calcarine cortex: a lateralised effect, so that a map landing on
    # the wrong hemisphere is caught.
    Effect("visual", (10.0, -88.0, 6.0)),
)


def network_maps(
    coords_mm: np.ndarray,
    grey_matter: np.ndarray,
    *,
    shifts_mm: Sequence[np.ndarray] | None = None,
    gains: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Unnormalised network maps: blob sums weighted by grey matter.

    Parameters
    ----------
    coords_mm : ndarray of shape (n_voxels, 3)
        World coordinates of the voxels.
    grey_matter : ndarray of shape (n_voxels,)
        Grey-matter probability of the voxels.
    shifts_mm : list of ndarray of shape (n_blobs, 3), one per network, optional
        Displacement of each blob centre.
    gains : list of ndarray of shape (n_blobs,), one per network, optional
        Multiplier of each blob's amplitude.

    Returns
    -------
    maps : ndarray of shape (n_voxels, n_networks), float32
        Zero where grey matter is below :data:`GREY_MATTER_THRESHOLD`.
    """
    coords_mm = np.asarray(coords_mm, dtype=np.float64)
    weight = np.where(grey_matter >= GREY_MATTER_THRESHOLD, grey_matter, 0.0)
    maps = np.zeros((len(coords_mm), len(NETWORK_NAMES)), dtype=np.float64)
    for k, name in enumerate(NETWORK_NAMES):
        for b, blob in enumerate(NETWORK_BLOBS[name]):
            center = np.asarray(blob.center_mm)
            if shifts_mm is not None:
                center = center + shifts_mm[k][b]
            amplitude = blob.amplitude * (1.0 if gains is None else gains[k][b])
            z2 = ((coords_mm - center) ** 2).sum(axis=1) / blob.sigma_mm**2
            inside = z2 <= BLOB_TRUNCATION_SD**2
            maps[inside, k] += amplitude * np.exp(-0.5 * z2[inside])
    return (maps * weight[:, None]).astype(np.float32)


def group_network_maps(
    coords_mm: np.ndarray, grey_matter: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The group (average subject's) network maps, each scaled to peak 1.

    Returns
    -------
    maps : ndarray of shape (n_voxels, n_networks), float32
    scale : ndarray of shape (n_networks,)
        Divisor applied to each unnormalised map; subject maps use the same one
        so that their amplitudes vary around 1.
    """
    raw = network_maps(coords_mm, grey_matter)
    scale = raw.max(axis=0).astype(np.float64)
    return (raw / scale).astype(np.float32), scale


def draw_subject_maps(
    coords_mm: np.ndarray,
    grey_matter: np.ndarray,
    scale: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One subject's network maps: blob centres shifted, amplitudes varied.

    Parameters
    ----------
    coords_mm, grey_matter : see :func:`network_maps`
    scale : ndarray of shape (n_networks,)
        From :func:`group_network_maps`.
    rng : numpy.random.Generator

    Returns
    -------
    maps : ndarray of shape (n_voxels, n_networks), float32
    """
    shifts, gains = [], []
    for name in NETWORK_NAMES:
        n_blobs = len(NETWORK_BLOBS[name])
        shifts.append(rng.normal(0.0, SHIFT_SD_MM, size=(n_blobs, 3)))
        network_gain = rng.normal(1.0, NETWORK_GAIN_SD)
        blob_gains = network_gain * rng.normal(1.0, BLOB_GAIN_SD, size=n_blobs)
        # A network never vanishes or flips sign in a healthy brain.
        gains.append(np.clip(blob_gains, 0.3, None))
    raw = network_maps(coords_mm, grey_matter, shifts_mm=shifts, gains=gains)
    return (raw / scale).astype(np.float32)


def effect_weight(coords_mm: np.ndarray, effect: Effect) -> np.ndarray:
    """Shape ``w(x)`` of an effect: 1 at its centre, 1/2 at ``radius_mm``.

    Returns
    -------
    weight : ndarray of shape (n_voxels,), float32
        Zero beyond ``EFFECT_TRUNCATION_RADII * radius_mm``.
    """
    d2 = ((np.asarray(coords_mm) - np.asarray(effect.center_mm)) ** 2).sum(axis=1)
    ratio2 = d2 / effect.radius_mm**2
    weight = np.where(ratio2 <= EFFECT_TRUNCATION_RADII**2, 2.0 ** (-ratio2), 0.0)
    return weight.astype(np.float32)


def apply_effects(maps: np.ndarray, weights: np.ndarray, effects: Sequence[Effect]) -> np.ndarray:
    """A patient's maps: each effect's network multiplied by ``1 + sign * strength * w``.

    Parameters
    ----------
    maps : ndarray of shape (n_voxels, n_networks)
    weights : ndarray of shape (n_voxels, n_effects)
        :func:`effect_weight` of each effect.
    effects : sequence of Effect

    Returns
    -------
    maps : ndarray of shape (n_voxels, n_networks), float32 (a new array)
    """
    maps = np.array(maps, dtype=np.float32)
    for e, effect in enumerate(effects):
        k = NETWORK_NAMES.index(effect.network)
        maps[:, k] *= 1.0 + effect.sign * effect.strength * weights[:, e]
    return maps


def check_effects(
    effects: Sequence[Effect],
    coords_mm: np.ndarray,
    group_maps: np.ndarray,
    brain_mask: np.ndarray,
    affine: np.ndarray,
) -> list[str]:
    """Problems with planted effects, one message each (empty when all are usable).

    Parameters
    ----------
    effects : sequence of Effect
    coords_mm : ndarray of shape (n_voxels, 3)
        World coordinates of the brain voxels.
    group_maps : ndarray of shape (n_voxels, n_networks)
        From :func:`group_network_maps`.
    brain_mask : ndarray of bool, shape (X, Y, Z)
    affine : ndarray of shape (4, 4)
    """
    problems = []
    names = ", ".join(NETWORK_NAMES)
    for e, effect in enumerate(effects):
        where = f"effects[{e}]"
        if not isinstance(effect, Effect):
            problems.append(
                f"{where}: must be an rsxai.simulate.Effect; got {type(effect).__name__} "
                f"{effect!r}."
            )
            continue
        local = []
        if effect.network not in NETWORK_NAMES:
            local.append(f"{where}.network must be one of {names}; got {effect.network!r}.")
        try:
            center = np.asarray(effect.center_mm, dtype=np.float64)
            center_ok = center.shape == (3,) and bool(np.isfinite(center).all())
        except (TypeError, ValueError):
            center_ok = False
        if not center_ok:
            local.append(
                f"{where}.center_mm must be three finite MNI coordinates in mm (x, y, z); "
                f"got {effect.center_mm!r}."
            )
        if not _is_real(effect.radius_mm) or not 0 < effect.radius_mm <= 60:
            local.append(
                f"{where}.radius_mm must be a number of mm in (0, 60]; got {effect.radius_mm!r}."
            )
        if not _is_real(effect.strength) or not 0 < effect.strength <= 1:
            local.append(
                f"{where}.strength must be a fraction in (0, 1]; got {effect.strength!r}."
            )
        if isinstance(effect.sign, bool) or effect.sign not in (-1, 1):
            local.append(f"{where}.sign must be -1 or 1; got {effect.sign!r}.")
        if local:
            problems.extend(local)
            continue

        ijk = np.rint(np.linalg.solve(affine, [*center, 1.0])[:3]).astype(int)
        in_grid = bool(((ijk >= 0) & (ijk < brain_mask.shape)).all())
        if not in_grid or not brain_mask[tuple(ijk)]:
            problems.append(
                f"{where}: center_mm {tuple(center.tolist())} lies outside the MNI152 brain "
                "mask; give a centre inside the brain."
            )
            continue
        k = NETWORK_NAMES.index(effect.network)
        near = ((coords_mm - center) ** 2).sum(axis=1) <= effect.radius_mm**2
        reach = float(group_maps[near, k].max()) if near.any() else 0.0
        if reach < EFFECT_MIN_MAP_VALUE:
            regions = "; ".join(
                f"{blob.region} {blob.center_mm}" for blob in NETWORK_BLOBS[effect.network]
            )
            problems.append(
                f"{where}: the {effect.network} network reaches only {reach:.2f} of its peak "
                f"within radius_mm={effect.radius_mm} of center_mm {tuple(center.tolist())} "
                f"(at least {EFFECT_MIN_MAP_VALUE} is needed for the effect to change it); "
                f"put the centre in one of its regions: {regions}."
            )
    return problems


def _is_real(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )
