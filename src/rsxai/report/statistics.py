"""Report section of the statistics stage: t and FWE maps per network and contrast, clusters.

The maps are the files the stats stage wrote (named in ``summary.json``);
nothing is recomputed. t maps are drawn where the uncorrected p is small, for
display only; the inference shown is the FWE-corrected one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rsxai.report.figures import glass_brain, load_volume, masked, stat_slices
from rsxai.report.html import (
    escape,
    figure,
    format_number,
    format_p,
    gallery,
    guarded,
    paragraph,
    table,
)

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder

#: -log10(0.05): the level of FWE-corrected significance drawn in the maps.
LOG_P_05 = -np.log10(0.05)
#: Uncorrected p below which t maps are drawn (display only; inference is FWE).
DISPLAY_P_UNCORRECTED = 0.01


def _contrast_label(folder: ReportFolder, network: str, t_map: str) -> str | None:
    """The file-name label of a contrast, read from the name of its t map."""
    for match in folder.find("stat_map", network=network, stat="t"):
        if folder.relative(match["path"]) == t_map:
            return match["contrast"]
    return None


def fwe_scope(stats: dict) -> str:
    """What the FWE p-values of summary.json's ``stats`` are corrected over, in words (HTML)."""
    family = stats.get("fwe_contrasts")
    tested = list(next(iter(stats.get("networks", {}).values()), {}))
    if family is None and len(tested) > 1:
        # summary.json of an rsxai before the correction over contrasts.
        return (
            f"over the voxels of each contrast only, not corrected over the {len(tested)} "
            "contrasts"
        )
    family = family or tested
    if len(family) > 1:
        return (
            f"over the voxels and the {len(family)} contrasts of the network "
            f"({escape(', '.join(family))}; maximum statistic over them, as randomise --corrcon)"
        )
    return "over the voxels of the map (maximum statistic over voxels)"


def _summary_table(stats: dict) -> str:
    rows = []
    for network, contrasts in stats.get("networks", {}).items():
        for contrast, entry in contrasts.items():
            rows.append(
                {
                    "network": network,
                    "contrast": contrast,
                    "inference": entry.get("inference"),
                    "permutations": entry.get("n_permutations"),
                    "FWE-significant voxels": entry.get("n_fwe_significant_voxels"),
                    "min p (FWE)": format_p(entry.get("min_p_fwe"), entry.get("n_permutations")),
                    "min p (FWE, Bonferroni)": format_p(
                        entry.get("min_p_fwe_bonferroni_networks")
                    ),
                    "peak MNI (mm)": _coordinates(entry.get("peak_mni")),
                    "peak t": entry.get("peak_t"),
                }
            )
    p_columns = ("min p (FWE)", "min p (FWE, Bonferroni)")
    text_columns = ("network", "contrast", "inference", *p_columns)
    bonferroni = (
        f"the {stats['n_networks']} network(s)"
        if "n_networks" in stats
        else "the number of networks × contrasts"
    )
    return table(
        pd.DataFrame(rows),
        caption=f"FWE: family-wise error {fwe_scope(stats)}; Bonferroni: that p also "
        f"multiplied by {bonferroni}.",
        formats={c: str for c in (*text_columns, "peak MNI (mm)")},
        numeric_columns=p_columns,
    )


def _coordinates(xyz) -> str:
    return "(" + ", ".join(format_number(float(c)) for c in xyz or []) + ")"


def _contrast_figures(
    folder: ReportFolder, network: str, contrast: str, entry: dict, scope: str
) -> str:
    maps = entry.get("maps", {})
    t_img = load_volume(folder.root / maps["t"])
    fwe_key = "logpFWEtfce" if "logpFWEtfce" in maps else "logpFWEt"
    fwe_img = load_volume(folder.root / maps[fwe_key])
    shown_t = t_img
    shown_where = "unthresholded"
    if "logpUncorrected" in maps:
        p_unc = np.asarray(load_volume(folder.root / maps["logpUncorrected"]).dataobj)
        shown_t = masked(t_img, p_unc > -np.log10(DISPLAY_P_UNCORRECTED))
        shown_where = f"shown where uncorrected p < {DISPLAY_P_UNCORRECTED}"
    inference = "TFCE" if fwe_key == "logpFWEtfce" else "voxel t"
    n_significant = int(entry.get("n_fwe_significant_voxels", 0))
    items = [
        figure(
            glass_brain(shown_t, f"{network} {contrast}: t map, glass brain", threshold=1e-6),
            f"t ({escape(contrast)}), {shown_where} (display only).",
        ),
        figure(
            stat_slices(
                shown_t,
                f"{network} {contrast}: t map slices through the peak",
                threshold=1e-6,
                cut_coords=entry.get("peak_mni"),
                contour_img=fwe_img,
                contour_level=LOG_P_05,
            ),
            f"Slices through the peak (MNI {escape(_coordinates(entry.get('peak_mni')))}); "
            "black outline: "
            f"FWE-corrected p < 0.05 ({inference})"
            + ("" if n_significant else ", none here")
            + ".",
        ),
    ]
    if n_significant:
        items.append(
            figure(
                glass_brain(
                    masked(fwe_img, np.asarray(fwe_img.dataobj) > LOG_P_05),
                    f"{network} {contrast}: -log10 FWE p",
                    threshold=1e-6,
                    plot_abs=True,
                    cmap="Reds",
                ),
                f"−log10 p (FWE, {inference}) where p < 0.05: {n_significant} voxels.",
            )
        )
    return gallery(items) + _clusters(folder, network, entry, n_significant, scope)


def _clusters(
    folder: ReportFolder, network: str, entry: dict, n_significant: int, scope: str
) -> str:
    if entry.get("clusters"):
        path = folder.root / entry["clusters"]
    else:
        label = _contrast_label(folder, network, entry["maps"]["t"])
        path = folder.path("clusters", network=network, contrast=label) if label else None
    clusters = folder.read_tsv(path) if path is not None and path.exists() else None
    if clusters is not None and len(clusters):
        return table(
            clusters,
            caption=f"Clusters of FWE-significant voxels (p &lt; 0.05, FWE {scope}) with their "
            "atlas regions.",
            max_rows=30,
        )
    if not n_significant:
        return paragraph("No FWE-significant voxel, hence no cluster table.")
    return paragraph("No cluster table in this folder.")


def stats_section(folder: ReportFolder) -> str:
    """Per network and contrast: glass brain and slices of the t / FWE maps, clusters."""
    stats = folder.summary.get("stats")
    if not stats:
        raise folder.not_run("stats", "group statistics")
    parts = [_summary_table(stats)]
    scope = fwe_scope(stats)
    for network, contrasts in stats.get("networks", {}).items():
        parts.append(f"<h3>{escape(network)}</h3>")
        for contrast, entry in contrasts.items():
            parts.append(f"<h4>{escape(contrast)}</h4>")
            parts.append(
                guarded(
                    f"{network} {contrast}",
                    lambda n=network, c=contrast, e=entry: _contrast_figures(
                        folder, n, c, e, scope
                    ),
                )
            )
    return "".join(parts)
