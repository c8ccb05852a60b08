"""Group explanation maps of one method and target, and what they are compared with.

:func:`group_results` turns the held-out subjects' raw maps
(:func:`rsxai.explain.explain_subjects`) into the group maps of
:func:`rsxai.explain.group_metrics.group_maps`, a table of the atlas regions
where relevance concentrates, their agreement with the group statistics and,
on simulated data, the localisation of the planted effect. Masked arrays in,
tables out; nothing is read or written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rsxai.anatomy import top_regions
from rsxai.explain.group_metrics import agreement, group_maps, localisation
from rsxai.grid import Grid

#: Group maps compared with the statistics and the planted effects.
COMPARED_MAPS = ("meancorrect", "meanall")
#: The pointing game counts a peak within this many voxels of the region (Zhang
#: et al. 2018 allow 15 pixels in 2D images).
POINTING_TOLERANCE = 1.0
#: Rows of each top-regions table.
N_TOP_REGIONS = 10


def group_results(
    maps: np.ndarray,
    correct: np.ndarray,
    grid: Grid,
    *,
    abs_t: np.ndarray | None = None,
    significant: np.ndarray | None = None,
    effect_region: np.ndarray | None = None,
    network_region: np.ndarray | None = None,
    top_fraction: float = 0.05,
    atlas: str = "harvard_oxford",
) -> dict:
    """Group maps of one method and target, and what they are compared with.

    Parameters
    ----------
    maps : ndarray of shape (n_subjects, n_voxels)
        Raw maps of the held-out subjects (:func:`explain_subjects`).
    correct : ndarray of bool, shape (n_subjects,)
        Whether each subject was classified correctly.
    grid : Grid
        The maps' grid, in MNI space.
    abs_t, significant : ndarray of shape (n_voxels,), optional
        |t| of the group comparison and its FWE-significant voxels; without
        them there is no agreement.
    effect_region : ndarray of bool, shape (n_voxels,), optional
        A planted effect (simulated data); without it there is no localisation.
    network_region : ndarray of bool, shape (n_voxels,), optional
        The network's territory, where the agreement's rank correlation is
        also computed (``spearman_region``).
    top_fraction : float, default=0.05
        Top voxels compared with the significant ones (Dice).
    atlas : str, default="harvard_oxford"
        Atlas of the top-regions table.

    Returns
    -------
    dict with keys

    group : dict
        :func:`rsxai.explain.group_metrics.group_maps` (``meancorrect``,
        ``meanall``, ``tstat``, counts).
    regions : DataFrame
        Top atlas regions of ``meancorrect`` (``meanall`` when no subject was
        classified correctly), in units of the even share (1 = the relevance
        of every voxel if it were spread evenly): ``rank``, ``region``,
        ``n_voxels``, ``mean_relative``, ``max_relative``,
        ``relevance_share`` (of the map's relevance in the region),
        ``volume_share`` (of the brain), ``map``.
    agreement : list of dict
        Per map of :data:`COMPARED_MAPS`: ``map`` and the keys of
        :func:`rsxai.explain.group_metrics.agreement` (``spearman_r`` renamed
        ``spearman``).
    localisation : list of dict
        ``level`` ("subjects": means over the subjects' maps; or a group map's
        name), ``mass_inside``, ``region_share``, ``mass_ratio``,
        ``pointing_game`` (hit rate, a peak within :data:`POINTING_TOLERANCE`
        voxels of the region), ``pointing_chance``, ``n_maps``.
    localisation_summary : dict or None
        ``mass_ratio`` (of ``meanall``), ``mass_ratio_subjects``,
        ``pointing_game`` (subjects' hit rate), ``pointing_game_group``,
        ``pointing_chance``, ``region_share``; None without ``effect_region``.
    """
    group = group_maps(maps, correct)
    shown = "meancorrect" if group["n_correct"] else "meanall"
    if np.isfinite(group[shown]).all():
        regions = top_regions(group[shown] * grid.n_voxels, grid, n=N_TOP_REGIONS, atlas=atlas)
        regions = regions.rename(columns={"mean": "mean_relative", "max": "max_relative"})
        regions["relevance_share"] = regions.pop("sum") / grid.n_voxels
        regions["volume_share"] = regions["n_voxels"] / grid.n_voxels
        regions["map"] = shown
    else:  # every map was 0 everywhere
        regions = pd.DataFrame(columns=["rank", "region", "n_voxels", "map"])
    compared = [desc for desc in COMPARED_MAPS if np.isfinite(group[desc]).all()]
    agreements = []
    if abs_t is not None and significant is not None:
        for desc in COMPARED_MAPS:
            result = agreement(
                group[desc], abs_t, significant, top_fraction=top_fraction, region=network_region
            )
            agreements.append({"map": desc, "spearman": result.pop("spearman_r")} | result)
    located = []
    if effect_region is not None:
        ijk = np.argwhere(grid.mask)
        for level, values in [("subjects", maps)] + [(d, group[d][None]) for d in compared]:
            result = localisation(
                values, effect_region, voxel_ijk=ijk, tolerance=POINTING_TOLERANCE
            )
            located.append(
                {
                    "level": level,
                    "mass_inside": result["mean_mass_inside"],
                    "region_share": result["region_share"],
                    "mass_ratio": result["mean_mass_ratio"],
                    "pointing_game": result["pointing_hit_rate"],
                    "pointing_chance": result["pointing_chance"],
                    "n_maps": result["n_maps"] - result["n_empty"],
                }
            )
    return {
        "group": group,
        "regions": regions,
        "agreement": agreements,
        "localisation": located,
        "localisation_summary": _localisation_summary(located),
    }


def _localisation_summary(rows: list[dict]) -> dict | None:
    """Group mass ratio (``meanall``) and per-subject pointing game, for summary.json."""
    if not rows:
        return None
    levels = {row["level"]: row for row in rows}
    subjects, group = levels["subjects"], levels.get("meanall", {})
    return {
        "mass_ratio": group.get("mass_ratio"),
        "mass_ratio_subjects": subjects["mass_ratio"],
        "pointing_game": subjects["pointing_game"],
        "pointing_game_group": group.get("pointing_game"),
        "pointing_chance": subjects["pointing_chance"],
        "region_share": subjects["region_share"],
    }
