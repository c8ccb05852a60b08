"""Report sections of the group-level stages: group ICA and dual regression QC.

Each ``*_section(folder)`` returns the section's HTML from the output folder
(:class:`rsxai.report.ReportFolder`) or raises
:class:`~rsxai.report.html.SectionNotRun` when its stage left nothing.
Parts that can fail on their own (one network, one figure) are wrapped in
:func:`~rsxai.report.html.guarded`, so a broken file costs one figure, not the
section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai.report.charts import qc_strip
from rsxai.report.figures import (
    COMPONENT_Z_THRESHOLD,
    component_thumbnail,
    glass_brain,
    load_volume,
    stat_slices,
)
from rsxai.report.html import (
    details,
    escape,
    figure,
    format_number,
    guarded,
    note,
    paragraph,
    table,
)
from rsxai.report.sample import participants_table

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder


# ----------------------------------------------------------------------------- group ICA
def _selected_components(folder: ReportFolder) -> dict[int, str]:
    networks = folder.summary.get("networks") or {}
    if not networks and folder.path("network_selection").exists():
        networks = folder.read_json_file(folder.path("network_selection"))
    return {int(entry["component"]): name for name, entry in networks.items()}


def _component_table(folder: ReportFolder) -> str:
    components = folder.read_tsv(folder.path("components_table"))
    selected = _selected_components(folder)
    images = nib.load(folder.path("components"))
    data = np.asarray(images.dataobj, dtype=np.float32)
    # One colour scale for all thumbnails, so that strong and weak components look so.
    vmax = float(np.nanmax(np.abs(data))) if data.size else 1.0
    thumbnails = []
    for index in components["component"].astype(int):
        thumbnails.append(
            guarded(
                f"component {index}",
                lambda index=index: component_thumbnail(
                    nib.Nifti1Image(data[..., index], images.affine),
                    f"Glass brain of component {index}",
                    vmax=vmax,
                ),
            )
        )
    shown = components.rename(
        columns={
            "component": "IC",
            "network": "best template",
            "r": "r",
            "second_network": "runner-up",
            "second_r": "runner-up r",
            "stability": "stability Iq",
            "explained_variance": "variance",
        }
    )
    shown.insert(0, "map", thumbnails)
    shown.insert(
        2, "analysed as", [selected.get(int(i), "") for i in components["component"].astype(int)]
    )
    classes = ["selected" if int(i) in selected else "" for i in components["component"]]
    return table(
        shown,
        caption=(
            f"Every group ICA component: glass brain where |z| > {COMPONENT_Z_THRESHOLD} (one "
            f"colour scale, |z| up to {format_number(vmax)}), the best-matching template and "
            "its spatial correlation r, the runner-up, the ICASSO stability Iq (1: found "
            "identically from every start; a high Iq alone does not prove a component is "
            "signal: on pure noise, rsxai's tests measured 0.4 to 1.0) and the share of "
            "variance explained. Highlighted: components analysed as networks."
        ),
        raw_columns=["map"],
        formats={
            "best template": str,
            "runner-up": str,
            "analysed as": str,
            "stability Iq": lambda v: f"{v:.3f}",
            "variance": lambda v: f"{100 * v:.2f} %",
        },
        row_classes=classes,
    )


def _network_figure(folder: ReportFolder, network: str, entry: dict) -> str:
    img = load_volume(folder.path("network_map", network=network))
    caption = (
        f"<strong>{escape(network)}</strong>: component {entry.get('component')}, template "
        f"r = {format_number(entry.get('r'))}; z-scored group map shown where |z| > "
        f"{COMPONENT_Z_THRESHOLD} over the MNI152 template."
    )
    images = glass_brain(
        img, f"{network} group map, glass brain", threshold=COMPONENT_Z_THRESHOLD, size=(6.6, 2.5)
    ) + stat_slices(
        img,
        f"{network} group map, axial slices",
        threshold=COMPONENT_Z_THRESHOLD,
        display_mode="z",
        cut_coords=7,
        size=(9.0, 1.9),
    )
    return figure(images, caption, wide=True)


def ica_section(folder: ReportFolder) -> str:
    """Every component with its label, template r, stability and thumbnail; networks large."""
    if not folder.path("components_table").exists():
        raise folder.not_run("ica", "group ICA components")
    networks = folder.summary.get("networks") or {}
    parts = []
    if networks:
        chosen = ", ".join(
            f"{escape(name)} = component {entry['component']}" for name, entry in networks.items()
        )
        parts.append(paragraph(f"Networks analysed: {chosen}."))
    else:
        parts.append(
            note(
                "No network was selected (see Warnings): the components and their template "
                "matches are shown so that one can be chosen with --force-component.",
                "warning",
            )
        )
    parts.append(guarded("Component table", lambda: _component_table(folder)))
    for name, entry in networks.items():
        parts.append(f"<h3>{escape(name)}</h3>")
        parts.append(
            guarded(f"{name} group map", lambda n=name, e=entry: _network_figure(folder, n, e))
        )
    return "".join(parts)


# ----------------------------------------------------------------------------- dual regression
def dual_regression_section(folder: ReportFolder) -> str:
    """Correlation of each subject's map with the group map, by group; robust outliers."""
    path = folder.path("dr_qc")
    if not path.exists():
        raise folder.not_run("dual_regression", "dual regression QC table")
    qc = folder.read_tsv(path)
    networks = [c[2:] for c in qc.columns if c.startswith("r_")]
    groups_by_subject, group_order = {}, []
    if folder.path("participants").exists():
        participants, group_column = participants_table(folder)
        groups_by_subject = dict(
            zip(
                participants["participant_id"], participants[group_column].astype(str), strict=True
            )
        )
        group_order = list(dict.fromkeys(participants[group_column].astype(str)))
    qc["group"] = qc["participant_id"].map(groups_by_subject).fillna("unknown")
    if not group_order or (qc["group"] == "unknown").any():
        group_order = list(dict.fromkeys(qc["group"]))
    tables = {
        network: pd.DataFrame(
            {
                "participant_id": qc["participant_id"],
                "group": qc["group"],
                "r": qc[f"r_{network}"],
                "outlier": qc.get(f"outlier_{network}", pd.Series(False, index=qc.index)),
            }
        )
        for network in networks
    }
    outliers = folder.summary.get("dual_regression_qc", {}).get("outliers", [])
    parts = [
        paragraph(
            "Spatial correlation of each participant's stage-2 map with the group map of the "
            "same network. A participant is flagged when its correlation lies more than 3.5 "
            "robust standard deviations (1.4826 × MAD) below the cohort's median."
        ),
        guarded(
            "QC chart",
            lambda: figure(
                qc_strip(tables, "Subject-to-group map correlations", group_order=group_order),
                "Each dot a participant; bar: group median; red: flagged.",
            ),
        ),
    ]
    if outliers:
        parts.append(note(f"Flagged participants: {escape(', '.join(outliers))}.", "warning"))
    else:
        parts.append(paragraph("No participant was flagged."))
    flags = qc[[c for c in qc.columns if c.startswith("outlier_")]].astype(bool).any(axis=1)
    parts.append(
        details(
            "Every participant's correlations",
            table(
                qc,
                formats={"participant_id": str, "group": str},
                row_classes=["flag" if f else "" for f in flags],
            ),
        )
    )
    return "".join(parts)
