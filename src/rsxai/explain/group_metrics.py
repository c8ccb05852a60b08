"""Explanation maps at group level, their agreement with the group statistics, localisation.

Every function works on masked arrays (``(n_subjects, n_voxels)`` or
``(n_voxels,)``, the layout of :class:`rsxai.grid.Grid`) and knows nothing of
the attribution method that made the maps.

Conventions

- Relevance is compared by magnitude: a map is taken in absolute value and
  scaled to sum to 1 over the mask (:func:`normalise_maps`), so each voxel holds
  its share of the subject's relevance and every subject weighs the same in a
  group mean, whatever the scale of its gradients. A map with no relevance at
  all (every voxel 0) has no share to give; it is left out and counted.
- Nothing here returns a p-value for a spatial correlation: neighbouring
  voxels are not independent (smoothing, network structure), so the
  textbook p-value of a voxelwise correlation would be far too small.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial import cKDTree

GROUP_MAP_NAMES = ("meancorrect", "meanall", "tstat")


def normalise_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute relevance scaled to sum to 1 over the voxels of each map.

    Parameters
    ----------
    maps : ndarray of shape (n_maps, n_voxels)
        Relevance maps, any sign and scale; must be finite.

    Returns
    -------
    normalised : ndarray of shape (n_maps, n_voxels)
        ``|map| / sum(|map|)``; rows of maps that are 0 everywhere are NaN.
    empty : ndarray of bool, shape (n_maps,)
        Which maps were 0 everywhere.
    """
    maps = _as_2d_finite(maps, "maps")
    magnitude = np.abs(maps)
    totals = magnitude.sum(axis=1)
    empty = totals == 0
    normalised = np.full_like(magnitude, np.nan)
    normalised[~empty] = magnitude[~empty] / totals[~empty, None]
    return normalised, empty


def group_maps(maps: np.ndarray, correct: np.ndarray) -> dict:
    """Group explanation maps of one method, network and target class.

    Parameters
    ----------
    maps : ndarray of shape (n_subjects, n_voxels)
        One relevance map per held-out subject (masked).
    correct : ndarray of bool, shape (n_subjects,)
        Whether each subject was classified correctly.

    Returns
    -------
    dict with keys

    meanall : ndarray of shape (n_voxels,)
        Mean of the normalised maps (:func:`normalise_maps`) of all subjects.
    meancorrect : ndarray of shape (n_voxels,)
        The same over correctly classified subjects only (all NaN if none).
    tstat : ndarray of shape (n_voxels,)
        One-sample t across all subjects of the normalised maps, against each
        map's own mean, ``1 / n_voxels`` (the share of a voxel if relevance
        were spread evenly). Relevance magnitude is never negative, so a test
        against 0 would call every voxel with any relevance at all
        "significant"; against the even share, t is positive where relevance
        concentrates consistently across subjects and negative where it is
        consistently scarce. NaN where the normalised value is the same for
        every subject, or with fewer than 2 subjects. All subjects, not only
        the correctly classified ones, so that the statistic is not
        conditioned on the classifier's successes.
    n_all, n_correct : int
        Subjects that entered ``meanall`` (and ``tstat``) and ``meancorrect``.
    n_empty : int
        Subjects left out because their map was 0 everywhere.
    """
    normalised, empty = normalise_maps(maps)
    correct = np.asarray(correct)
    if correct.shape != (normalised.shape[0],) or correct.dtype != bool:
        raise ValueError(
            f"correct must be a bool array of shape ({normalised.shape[0]},), one per map; "
            f"got dtype {correct.dtype} and shape {correct.shape}."
        )
    used = normalised[~empty]
    used_correct = normalised[~empty & correct]
    n_voxels = normalised.shape[1]
    return {
        "meanall": _mean_or_nan(used, n_voxels),
        "meancorrect": _mean_or_nan(used_correct, n_voxels),
        "tstat": one_sample_t(used, 1.0 / n_voxels),
        "n_all": int(used.shape[0]),
        "n_correct": int(used_correct.shape[0]),
        "n_empty": int(empty.sum()),
    }


def one_sample_t(samples: np.ndarray, popmean: float) -> np.ndarray:
    """Voxelwise one-sample t statistic (the statistic of ``scipy.stats.ttest_1samp``).

    Written out because scipy warns on, and returns +-inf or NaN inconsistently
    for, voxels that are constant across subjects; here they are NaN.

    Parameters
    ----------
    samples : ndarray of shape (n_samples, n_voxels)
    popmean : float

    Returns
    -------
    t : ndarray of shape (n_voxels,)
    """
    n = samples.shape[0]
    t = np.full(samples.shape[1], np.nan)
    if n < 2:
        return t
    sd = samples.std(axis=0, ddof=1)
    # Relative to the values' size: a spread at rounding level is no spread.
    varying = sd > 1e-12 * np.abs(samples).max(axis=0)
    t[varying] = (samples.mean(axis=0)[varying] - popmean) / (sd[varying] / np.sqrt(n))
    return t


def agreement(
    group_map: np.ndarray,
    t_map: np.ndarray,
    fwe_significant: np.ndarray,
    *,
    top_fraction: float = 0.05,
    region: np.ndarray | None = None,
) -> dict:
    """How far a group explanation map agrees with the group statistics of the same network.

    Parameters
    ----------
    group_map : ndarray of shape (n_voxels,)
        A group explanation map (e.g. ``meancorrect`` of :func:`group_maps`).
    t_map : ndarray of shape (n_voxels,)
        Voxelwise group-comparison t statistic; compared in absolute value,
        since an explanation says where, not in which direction.
    fwe_significant : ndarray of bool, shape (n_voxels,)
        Voxels significant after family-wise error correction (either
        direction of the contrast, as the caller decides). A union of
        contrasts holds the family-wise error only when the correction is over
        all of them (the stats stage's maps are; the explain stage records
        which correction on each agreement record, ``fwe_correction``).
    top_fraction : float, default=0.05
        Share of voxels, highest relevance first, compared with the
        significant ones.
    region : ndarray of bool, shape (n_voxels,), optional
        The network's own territory: the rank correlation is also computed
        inside it alone. Over the whole brain most voxels carry neither
        relevance nor effect, and their noise dominates the ranks.

    Returns
    -------
    dict with keys

    spearman_r : float
        Spearman correlation of ``group_map`` with ``|t_map|`` over the voxels
        where both are finite (no p-value: see the module notes).
    spearman_region : float
        The same inside ``region`` only; NaN without a region.
    n_region : int
        Voxels compared inside ``region``.
    dice : float
        Dice overlap ``2|A & S| / (|A| + |S|)`` of the top voxels ``A``
        (``round(top_fraction * n_voxels)``, at least 1, ties broken by voxel
        order) with the significant voxels ``S``. NaN when no voxel is
        significant: there is nothing to agree with, which is not an overlap of 0.
    dice_chance : float
        Expected Dice if the top voxels were drawn at random,
        ``2 |A| |S| / n_voxels / (|A| + |S|)``, the value to read ``dice`` against.
    n_voxels, n_top, n_significant : int
        Voxels compared, top voxels, significant voxels among them.
    top_fraction : float
    reason : str
        Why a value is NaN; empty when none is.
    """
    group_map = _as_1d(group_map, "group_map")
    n = group_map.size
    t_map = _as_1d(t_map, "t_map", n)
    significant = _as_1d(fwe_significant, "fwe_significant", n)
    if significant.dtype != bool:
        raise ValueError(
            f"fwe_significant must be a bool array; got dtype {np.asarray(fwe_significant).dtype}."
        )
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1]; got {top_fraction!r}.")

    compared = np.isfinite(group_map) & np.isfinite(t_map)
    relevance, abs_t, significant = (
        group_map[compared],
        np.abs(t_map[compared]),
        significant[compared],
    )
    n_voxels = int(compared.sum())
    n_significant = int(significant.sum())
    in_region = (
        np.zeros(n_voxels, dtype=bool)
        if region is None
        else _as_1d(region, "region", n).astype(bool)[compared]
    )
    result = {
        "spearman_r": np.nan,
        "spearman_region": np.nan,
        "n_region": int(in_region.sum()),
        "dice": np.nan,
        "dice_chance": np.nan,
        "n_voxels": n_voxels,
        "n_top": 0,
        "n_significant": n_significant,
        "top_fraction": float(top_fraction),
        "reason": "",
    }
    if n_voxels < 2:
        result["reason"] = (
            f"only {n_voxels} voxel(s) where both the group map and the t map are finite"
        )
        return result
    reasons = []
    if np.ptp(relevance) == 0 or np.ptp(abs_t) == 0:
        reasons.append("the group map or |t| is constant: no rank correlation")
    else:
        result["spearman_r"] = float(stats.spearmanr(relevance, abs_t).statistic)
    if region is not None:
        inside = relevance[in_region], abs_t[in_region]
        if in_region.sum() < 3 or np.ptp(inside[0]) == 0 or np.ptp(inside[1]) == 0:
            reasons.append("fewer than 3 voxels, or constant maps, inside the network region")
        else:
            result["spearman_region"] = float(stats.spearmanr(*inside).statistic)

    n_top = max(1, round(top_fraction * n_voxels))
    result["n_top"] = n_top
    top = np.zeros(n_voxels, dtype=bool)
    top[np.argsort(-relevance, kind="stable")[:n_top]] = True
    if n_significant == 0:
        reasons.append("no FWE-significant voxel: no overlap to measure")
    else:
        overlap = np.count_nonzero(top & significant)
        result["dice"] = 2.0 * overlap / (n_top + n_significant)
        result["dice_chance"] = 2.0 * n_top * n_significant / n_voxels / (n_top + n_significant)
    result["reason"] = "; ".join(reasons)
    return result


def localisation(
    maps: np.ndarray,
    effect_mask: np.ndarray,
    *,
    voxel_ijk: np.ndarray | None = None,
    tolerance: float = 0.0,
) -> dict:
    """Whether relevance falls in a known effect region (ground truth of a simulation).

    Parameters
    ----------
    maps : ndarray of shape (n_maps, n_voxels) or (n_voxels,)
        Per-subject maps or one group map; compared by magnitude ``|map|``.
    effect_mask : ndarray of bool, shape (n_voxels,)
        Voxels of the planted effect.
    voxel_ijk : ndarray of shape (n_voxels, 3), optional
        Voxel indices of the masked voxels (``np.argwhere(mask)``); needed
        only when ``tolerance > 0``.
    tolerance : float, default=0
        The pointing game counts a hit when the peak lies within this many
        voxels (Euclidean, in voxel units) of the region.

    Returns
    -------
    dict with keys

    mass_inside : ndarray of shape (n_maps,)
        Share of the map's relevance inside the region.
    mass_ratio : ndarray of shape (n_maps,)
        ``mass_inside / region_share``: about 1 for relevance spread without
        regard to the region, above 1 when it concentrates there.
    pointing_hit : ndarray of shape (n_maps,)
        1 when the map's peak is in the region (within ``tolerance``), 0 when
        not; when several voxels share the peak value, the fraction of them
        that hit (the expected score of breaking the tie at random, so a flat
        map scores the chance level, not 1).
    region_share : float
        Region voxels / all voxels.
    pointing_chance : float
        Hit rate of a peak placed at random: the share of voxels within
        ``tolerance`` of the region.
    mean_mass_inside, mean_mass_ratio, pointing_hit_rate : float
        Means over the maps that are not 0 everywhere.
    n_maps, n_empty : int
        Maps given; maps 0 everywhere (NaN in the per-map arrays).
    """
    magnitude = np.abs(_as_2d_finite(np.atleast_2d(maps), "maps"))
    n_maps, n_voxels = magnitude.shape
    region = _as_1d(effect_mask, "effect_mask", n_voxels)
    if region.dtype != bool or not region.any():
        raise ValueError(
            "effect_mask must be a bool array with at least one True voxel; "
            f"got dtype {np.asarray(effect_mask).dtype} with "
            f"{int(np.count_nonzero(region))} voxel(s) set."
        )
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 voxels; got {tolerance!r}.")
    if tolerance > 0:
        if voxel_ijk is None or np.shape(voxel_ijk) != (n_voxels, 3):
            raise ValueError(
                f"voxel_ijk of shape ({n_voxels}, 3) is needed with tolerance > 0; "
                f"got {None if voxel_ijk is None else np.shape(voxel_ijk)}. "
                "Pass np.argwhere(mask) of the brain mask."
            )
        near_region = _within_distance(np.asarray(voxel_ijk, float), region, tolerance)
    else:
        near_region = region

    totals = magnitude.sum(axis=1)
    empty = totals == 0
    region_share = region.mean()
    mass_inside = np.full(n_maps, np.nan)
    mass_inside[~empty] = magnitude[~empty][:, region].sum(axis=1) / totals[~empty]
    peaks = magnitude == magnitude.max(axis=1, keepdims=True)
    pointing_hit = (peaks & near_region).sum(axis=1) / peaks.sum(axis=1)
    pointing_hit[empty] = np.nan
    used = ~empty
    return {
        "mass_inside": mass_inside,
        "mass_ratio": mass_inside / region_share,
        "pointing_hit": pointing_hit,
        "region_share": float(region_share),
        "pointing_chance": float(near_region.mean()),
        "mean_mass_inside": _mean_of(mass_inside[used]),
        "mean_mass_ratio": _mean_of(mass_inside[used] / region_share),
        "pointing_hit_rate": _mean_of(pointing_hit[used]),
        "n_maps": int(n_maps),
        "n_empty": int(empty.sum()),
    }


def _within_distance(ijk: np.ndarray, region: np.ndarray, tolerance: float) -> np.ndarray:
    distance, _ = cKDTree(ijk[region]).query(ijk, k=1)
    return distance <= tolerance + 1e-9


def _mean_or_nan(rows: np.ndarray, n_voxels: int) -> np.ndarray:
    return rows.mean(axis=0) if rows.shape[0] else np.full(n_voxels, np.nan)


def _mean_of(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _as_2d_finite(maps: np.ndarray, name: str) -> np.ndarray:
    maps = np.asarray(maps, dtype=float)
    if maps.ndim != 2 or 0 in maps.shape:
        raise ValueError(
            f"{name} must be a non-empty 2D array (n_maps, n_voxels) of masked maps; "
            f"got shape {maps.shape}."
        )
    if not np.isfinite(maps).all():
        raise ValueError(
            f"{name} holds {int(np.count_nonzero(~np.isfinite(maps)))} NaN or infinite "
            "value(s); relevance maps must be finite."
        )
    return maps


def _as_1d(values: np.ndarray, name: str, n_voxels: int | None = None) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or (n_voxels is not None and values.size != n_voxels):
        expected = f"({n_voxels},)" if n_voxels is not None else "(n_voxels,)"
        raise ValueError(
            f"{name} must be a 1D masked array of shape {expected}; got {values.shape}."
        )
    if values.dtype != bool:
        values = values.astype(float)
    return values
