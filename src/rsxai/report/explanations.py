"""Report section of the explanation stage: relevance maps, their checks and their agreement.

Read from ``explanations/network-*/``: each method's group relevance maps
(drawn over the MNI152 template), their agreement with the group statistics,
the sanity checks (weight randomisation) with their verdicts, deletion and
insertion curves, the top regions and, on simulated data, how much relevance
falls on the planted effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rsxai.report.charts import faithfulness_chart
from rsxai.report.figures import load_volume, stat_slices
from rsxai.report.html import escape, figure, gallery, guarded, paragraph, table

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder

DESCRIPTIONS = {
    "meanall": "mean relevance over all held-out participants",
    "meancorrect": "mean relevance over the correctly classified held-out participants",
    "tstat": "t statistic of relevance across held-out participants",
}
#: Relevance maps are drawn on their top voxels only (display; the NIfTI holds every voxel).
DISPLAY_TOP_FRACTION = 0.10
PASSED = {"pass", "passed", "ok", "true", "yes"}
FAILED = {"fail", "failed", "false", "no"}


def _relevance_figure(folder: ReportFolder, match: dict) -> str:
    img = load_volume(match["path"])
    data = np.asarray(img.dataobj, dtype=np.float32)
    values = np.abs(data[np.isfinite(data) & (data != 0)])
    threshold = float(np.quantile(values, 1 - DISPLAY_TOP_FRACTION)) if values.size else None
    # Relevance that is never negative (saliency, Grad-CAM) reads best on a one-sided scale.
    signed = bool(np.nanmin(data) < 0)
    label = f"{match['method']} · target {match['target']} · {match['desc']}"
    return figure(
        stat_slices(
            img,
            f"{match['network']}: {label}",
            threshold=threshold,
            display_mode="z",
            cut_coords=6,
            size=(7.5, 1.7),
            cmap="RdBu_r" if signed else "YlOrRd",
            symmetric=signed,
        ),
        f"<strong>{escape(label)}</strong>: "
        f"{escape(DESCRIPTIONS.get(match['desc'], match['desc']))}"
        f"; top {DISPLAY_TOP_FRACTION:.0%} of voxels by |relevance|, over the MNI152 template.",
        wide=True,
    )


def _verdict_cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""  # intermediate cascade steps carry no verdict
    text = escape(value)
    lowered = str(value).strip().lower()
    if lowered in PASSED:
        return f'<span class="verdict-pass">{text}</span>'
    if lowered in FAILED:
        return f'<span class="verdict-fail">{text}</span>'
    return text


def _sanity(folder: ReportFolder, network: str) -> str:
    path = folder.path("xai_sanity", network=network)
    if not path.exists():
        return ""
    checks = folder.read_tsv(path)
    failed = checks["verdict"].astype(str).str.strip().str.lower().isin(FAILED)
    shown = checks.copy()
    shown["verdict"] = [_verdict_cell(v) for v in checks["verdict"]]
    return "<h4>Sanity checks</h4>" + table(
        shown,
        caption="Model-parameter randomisation (Adebayo et al. 2018): a faithful method's maps "
        "change when the weights are randomised, so a high similarity (Spearman, SSIM) to the "
        "original map fails the check.",
        raw_columns=["verdict"],
        formats={c: str for c in ("method", "check", "layer") if c in checks},
        row_classes=["flag" if f else "" for f in failed],
    )


def _faithfulness(folder: ReportFolder, network: str) -> str:
    path = folder.path("xai_faithfulness", network=network)
    if not path.exists():
        return ""
    frame = folder.read_tsv(path)
    parts = ["<h4>Faithfulness</h4>"]
    curves = frame.dropna(subset=["fraction", "probability"]) if "fraction" in frame else frame[:0]
    if len(curves):
        curves = curves.assign(
            label=curves["method"].astype(str)
            + ((" · " + curves["target"].astype(str)) if "target" in curves else "")
        )
        parts.append(
            figure(
                faithfulness_chart(curves, f"{network}: deletion and insertion curves"),
                "Deletion: the class probability as the most relevant voxels are removed first "
                "(a faithful map makes it fall fast); insertion: as they are restored first "
                "(it should rise fast).",
            )
        )
    auc_columns = [c for c in frame.columns if "auc" in c.lower()]
    if auc_columns:
        keys = [c for c in ("method", "target", "curve") if c in frame]
        aucs = frame[keys + auc_columns].dropna(subset=auc_columns, how="all")
        aucs = aucs.drop_duplicates()
        parts.append(table(aucs, formats={k: str for k in keys}))
    return "".join(parts)


def _regions(folder: ReportFolder, network: str) -> str:
    parts = []
    for match in folder.find("xai_regions", network=network):
        regions = folder.read_tsv(match["path"])
        parts.append(
            table(
                regions,
                caption=f"{escape(match['method'])} · target {escape(match['target'])}: top "
                "regions by relevance.",
                max_rows=10,
                formats={c: str for c in regions.columns if regions[c].dtype == object},
            )
        )
    return "<h4>Top regions</h4>" + "".join(parts) if parts else ""


def _simple_table(folder: ReportFolder, name: str, network: str, title: str, caption: str) -> str:
    path = folder.path(name, network=network)
    if not path.exists():
        return ""
    frame = folder.read_tsv(path)
    text_columns = {c: str for c in frame.columns if frame[c].dtype == object}
    return f"<h4>{escape(title)}</h4>" + table(frame, caption=caption, formats=text_columns)


def _network(folder: ReportFolder, network: str, matches: list[dict]) -> str:
    parts = []
    by_method: dict[str, list[dict]] = {}
    for match in matches:
        by_method.setdefault(match["method"], []).append(match)
    for method, method_matches in by_method.items():
        parts.append(f"<h4>{escape(method)}</h4>")
        parts.append(
            gallery(
                guarded(
                    f"{network} {m['method']} {m['target']} {m['desc']}",
                    lambda m=m: _relevance_figure(folder, m),
                )
                for m in method_matches
            )
        )
    parts.append(
        guarded(
            f"{network}: agreement",
            lambda: _simple_table(
                folder,
                "xai_agreement",
                network,
                "Agreement with the group statistics",
                "Spearman correlation between the group relevance map and |t| of the group "
                "comparison, over the brain (spearman) and inside the network's territory "
                "(spearman_region: group map z > 2.3, n_region voxels); Dice overlap between "
                "the top relevance voxels and the FWE-significant ones (dice_chance: expected "
                "at random); n_significant: voxels significant in the statistics; "
                "fwe_correction: what their FWE p is corrected over, and which contrasts "
                "they are united from.",
            ),
        )
    )
    parts.append(guarded(f"{network}: sanity checks", lambda: _sanity(folder, network)))
    parts.append(guarded(f"{network}: faithfulness", lambda: _faithfulness(folder, network)))
    parts.append(guarded(f"{network}: regions", lambda: _regions(folder, network)))
    parts.append(
        guarded(
            f"{network}: localisation",
            lambda: _simple_table(
                folder,
                "xai_localisation",
                network,
                "Localisation of the planted effect (simulated data)",
                "How much relevance falls on the effect planted in the simulated cohort "
                "(mass_ratio: relevance inside the effect relative to its share of the brain, "
                "1 = chance) and how often the relevance peak lies inside it (pointing_game).",
            ),
        )
    )
    return "".join(parts)


def group_relevance_maps(folder: ReportFolder) -> list[dict]:
    """The group relevance maps found; the per-subject 4D stacks share their name pattern."""
    return [match for match in folder.find("xai_group") if match["desc"] in DESCRIPTIONS]


def explanations_section(folder: ReportFolder) -> str:
    """Per network and method: relevance maps, agreement, sanity checks, faithfulness, regions."""
    found = group_relevance_maps(folder)
    if not found:
        raise folder.not_run("explain", "explanation maps")
    by_network: dict[str, list[dict]] = {}
    for match in found:
        by_network.setdefault(match["network"], []).append(match)
    parts = [
        paragraph(
            "Relevance maps say which voxels drove the CNN's decisions; the checks below say how "
            "far to trust them."
        )
    ]
    for network, matches in by_network.items():
        parts.append(f"<h3>{escape(network)}</h3>")
        parts.append(guarded(network, lambda n=network, m=matches: _network(folder, n, m)))
    return "".join(parts)
