"""Cluster and region tables: where a map's significant or relevant voxels lie, by name.

:func:`cluster_table` turns the voxels that survive FWE correction into
clusters, each with its size, peak and anatomical labels (the table FSL's
``cluster`` tool prints, plus region names); :func:`top_regions` ranks atlas
regions by the values of a map, for explanation maps. Labels come from the
offline atlases of :mod:`rsxai.anatomy.atlas`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from rsxai.anatomy.atlas import ATLASES, PROBABILISTIC_ATLASES, GridLabels, grid_labels
from rsxai.grid import Grid

#: Connectivities accepted, mapped to the ``scipy.ndimage`` structure rank.
CONNECTIVITIES = {6: 1, 18: 2, 26: 3}

RANKINGS = ("mean", "sum")


def _check_vector(name: str, values: np.ndarray, grid: Grid) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (grid.n_voxels,):
        raise ValueError(
            f"{name} must have shape (n_voxels,) = ({grid.n_voxels},) for this grid; "
            f"got {values.shape}."
        )
    return values


def _check_atlases(atlases: Sequence[str]) -> tuple[str, ...]:
    atlases = (atlases,) if isinstance(atlases, str) else tuple(atlases)
    unknown = [atlas for atlas in atlases if atlas not in ATLASES]
    if unknown:
        raise ValueError(f"atlases must be among {sorted(ATLASES)}; got {unknown}.")
    return atlases


def cluster_columns(atlases: Sequence[str] = ("harvard_oxford", "aal")) -> list[str]:
    """Columns of :func:`cluster_table` for a choice of atlases (also of an empty table)."""
    columns = [
        "cluster_id",
        "size_voxels",
        "size_mm3",
        "peak_x",
        "peak_y",
        "peak_z",
        "peak_stat",
    ]
    for atlas in _check_atlases(atlases):
        columns.append(f"peak_label_{atlas}")
        if atlas in PROBABILISTIC_ATLASES:
            columns.append(f"peak_probability_{atlas}")
        columns.append(f"regions_{atlas}")
    return columns


def _describe_regions(labels: GridLabels, voxels: np.ndarray, min_percent: float) -> str:
    coverage = labels.coverage(voxels)
    # The largest region is always named, even in a cluster spread thinly over many.
    shown = coverage[(coverage["percent"] >= min_percent) | (coverage.index == 0)]
    return "; ".join(
        f"{region} {percent:.0f}%"
        for region, percent in zip(shown["region"], shown["percent"], strict=True)
    )


def cluster_table(
    stat: np.ndarray,
    significant: np.ndarray,
    grid: Grid,
    *,
    connectivity: int = 26,
    atlases: Sequence[str] = ("harvard_oxford", "aal"),
    p_fwe: np.ndarray | None = None,
    min_region_percent: float = 5.0,
) -> pd.DataFrame:
    """Clusters of significant voxels, largest first, with peaks and anatomical labels.

    Significant voxels of each sign of ``stat`` are grouped separately (a
    cluster never mixes an increase with a decrease). The default
    26-connectivity (faces, edges and corners touching) is that of FSL's
    ``cluster``, which is what readers compare such tables with; note that
    rsxai's TFCE, like FSL's ``randomise -T``, uses 6-connectivity, so two
    corner-touching blobs enhanced separately are reported as one cluster here,
    as ``randomise`` followed by ``cluster`` would.

    Parameters
    ----------
    stat : ndarray of shape (n_voxels,)
        Statistic of each masked voxel (e.g. the t map); the peak is its
        largest value (most negative in a negative cluster).
    significant : ndarray of bool, shape (n_voxels,)
        Voxels surviving correction (e.g. FWE p < 0.05).
    grid : Grid
        The analysis grid of both maps, in MNI space.
    connectivity : {6, 18, 26}, default=26
        Voxels sharing a face (6), also an edge (18), or also a corner (26)
        belong to the same cluster.
    atlases : sequence of {"harvard_oxford", "aal"}, default=("harvard_oxford", "aal")
        Atlases to name the peak and the regions covered with.
    p_fwe : ndarray of shape (n_voxels,), optional
        FWE-corrected p-values; when given, a ``min_p_fwe`` column holds each
        cluster's smallest one.
    min_region_percent : float, default=5.0
        Regions covering less of a cluster than this are left out of the
        ``regions_<atlas>`` text (the largest one is always named).

    Returns
    -------
    table : DataFrame
        One row per cluster sorted by size (then by peak magnitude), with
        columns ``cluster_id`` (1 is the largest), ``size_voxels``,
        ``size_mm3`` (voxels x voxel volume), ``peak_x``, ``peak_y``,
        ``peak_z`` (MNI mm of the peak voxel's centre), ``peak_stat``, then per
        atlas ``peak_label_<atlas>`` (:data:`~rsxai.anatomy.atlas.NO_LABEL` outside
        every region), ``peak_probability_harvard_oxford`` (percent, for the
        probabilistic atlas) and ``regions_<atlas>`` (e.g. "Left Precentral
        Gyrus 62%; Left Postcentral Gyrus 30%", percent of the cluster's
        voxels), and ``min_p_fwe`` when ``p_fwe`` is given. Empty, with these
        columns, when no voxel is significant.
    """
    stat = _check_vector("stat", stat, grid).astype(np.float64)
    significant = _check_vector("significant", significant, grid)
    if significant.dtype != bool:
        raise ValueError(f"significant must be a boolean array; got dtype {significant.dtype}.")
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"connectivity must be one of {sorted(CONNECTIVITIES)} (3D neighbours sharing a "
            f"face, an edge or a corner); got {connectivity!r}."
        )
    if not np.isfinite(stat[significant]).all():
        raise ValueError("stat must be finite at every significant voxel.")
    atlases = _check_atlases(atlases)
    columns = cluster_columns(atlases)
    if p_fwe is not None:
        p_fwe = _check_vector("p_fwe", p_fwe, grid).astype(np.float64)
        columns.append("min_p_fwe")

    structure = ndimage.generate_binary_structure(3, CONNECTIVITIES[connectivity])
    index_volume = np.full(grid.shape, -1, dtype=np.int64)
    index_volume[grid.mask] = np.arange(grid.n_voxels)
    clusters = []  # (voxel indices, peak index), one per cluster
    for sign in (1.0, -1.0):
        side = significant & ((stat >= 0) if sign > 0 else (stat < 0))
        volume = np.zeros(grid.shape, dtype=bool)
        volume[grid.mask] = side
        labelled, n_clusters = ndimage.label(volume, structure=structure)
        if not n_clusters:
            continue
        members = labelled[grid.mask]
        for cluster in range(1, n_clusters + 1):
            voxels = np.flatnonzero(members == cluster)
            clusters.append((voxels, voxels[np.argmax(sign * stat[voxels])]))
    clusters.sort(key=lambda item: (-len(item[0]), -abs(stat[item[1]]), item[1]))

    voxel_volume = float(abs(np.linalg.det(grid.affine[:3, :3])))
    coordinates = grid.world_coordinates()
    labels = {atlas: grid_labels(grid, atlas) for atlas in atlases} if clusters else {}
    rows = []
    for number, (voxels, peak) in enumerate(clusters, start=1):
        row = {
            "cluster_id": number,
            "size_voxels": len(voxels),
            "size_mm3": len(voxels) * voxel_volume,
            "peak_x": coordinates[peak, 0],
            "peak_y": coordinates[peak, 1],
            "peak_z": coordinates[peak, 2],
            "peak_stat": stat[peak],
        }
        members = np.zeros(grid.n_voxels, dtype=bool)
        members[voxels] = True
        for atlas, atlas_labels in labels.items():
            row[f"peak_label_{atlas}"] = atlas_labels.names[atlas_labels.codes[peak]]
            if atlas_labels.probability is not None:
                row[f"peak_probability_{atlas}"] = float(atlas_labels.probability[peak])
            row[f"regions_{atlas}"] = _describe_regions(atlas_labels, members, min_region_percent)
        if p_fwe is not None:
            row["min_p_fwe"] = float(p_fwe[voxels].min())
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    # Explicit types, so that an empty table has them too.
    text = {name for name in columns if name.startswith(("peak_label_", "regions_"))}
    dtypes = {name: str if name in text else float for name in columns}
    return table.astype({**dtypes, "cluster_id": np.int64, "size_voxels": np.int64})


def top_regions(
    values: np.ndarray,
    grid: Grid,
    *,
    n: int = 10,
    atlas: str = "harvard_oxford",
    rank_by: str = "mean",
    min_voxels: int = 5,
) -> pd.DataFrame:
    """Atlas regions ranked by the values of a map (e.g. a group explanation map).

    Regions are ranked by the mean value over their voxels by default: a sum
    favours large regions (the frontal pole of Harvard-Oxford holds more than
    ten times the voxels of the pallidum), so a wide region with weak, diffuse
    relevance would outrank a small one where relevance is concentrated. Both
    are reported. Rank a signed map by its absolute value to find where
    relevance is strongest whatever its sign.

    Parameters
    ----------
    values : ndarray of shape (n_voxels,)
        Value of each masked voxel.
    grid : Grid
        The analysis grid, in MNI space.
    n : int, default=10
        Number of regions returned (fewer when fewer are eligible).
    atlas : {"harvard_oxford", "aal"}, default="harvard_oxford"
    rank_by : {"mean", "sum"}, default="mean"
        Statistic that orders the regions (largest first).
    min_voxels : int, default=5
        Regions with fewer voxels inside the grid's mask are left out: a mean
        over two or three voxels at a mask edge is mostly noise.

    Returns
    -------
    regions : DataFrame
        Columns ``rank`` (1 is the top), ``region``, ``n_voxels``, ``mean``,
        ``sum``, ``max``. Voxels without a label (white matter, outside the
        atlas) belong to no region and are not ranked.
    """
    values = _check_vector("values", values, grid).astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("values must be finite.")
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by must be one of {list(RANKINGS)}; got {rank_by!r}.")
    if int(n) < 1 or int(min_voxels) < 1:
        raise ValueError(f"n and min_voxels must be positive integers; got {n!r}, {min_voxels!r}.")
    labels = grid_labels(grid, _check_atlases(atlas)[0])
    table = (
        pd.DataFrame({"code": labels.codes, "value": values})
        .query("code > 0")
        .groupby("code")["value"]
        .agg(n_voxels="size", mean="mean", sum="sum", max="max")
        .reset_index()
    )
    table = table[table["n_voxels"] >= int(min_voxels)]
    table.insert(1, "region", [labels.names[code] for code in table["code"]])
    table = table.sort_values([rank_by, "region"], ascending=[False, True]).head(int(n))
    table = table.drop(columns="code").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
