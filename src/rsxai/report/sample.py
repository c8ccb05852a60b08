"""The report's sample and warnings sections: who was analysed, what went wrong."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

from rsxai.report.html import escape, format_number, guarded, note, paragraph, table

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder


# ----------------------------------------------------------------------------- sample
def participants_table(folder: ReportFolder) -> tuple[pd.DataFrame, str]:
    group_column = folder.option("input", "group_column", "group")
    frame = folder.read_tsv(folder.path("participants"))
    return frame, group_column


def _covariates_by_group(frame: pd.DataFrame, group_column: str, groups: list[str]) -> str:
    covariates = [c for c in frame.columns if c not in ("participant_id", group_column)]
    if not covariates:
        return paragraph("No covariates in participants.tsv.")
    rows = []
    for column in covariates:
        row = {"covariate": column}
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        for group in groups:
            values = frame.loc[frame[group_column].astype(str) == group, column]
            missing = int(values.isna().sum())
            values = values.dropna()
            if numeric:
                text = (
                    f"{format_number(values.mean())} ± {format_number(values.std(ddof=1))}"
                    f" (range {format_number(values.min())}-{format_number(values.max())})"
                    if len(values)
                    else "n/a"
                )
            else:
                counts = values.astype(str).value_counts().sort_index()
                text = ", ".join(f"{level} {n}" for level, n in counts.items()) or "n/a"
            row[group] = text + (f"; {missing} missing" if missing else "")
        rows.append(row)
    return table(
        pd.DataFrame(rows),
        caption="Covariates by group: numbers as mean ± SD (range), categories as counts.",
        formats={group: str for group in groups},
    )


def sample_section(folder: ReportFolder) -> str:
    """Participants per group, covariates by group, excluded participants."""
    subjects = folder.summary.get("subjects")
    if not subjects:
        raise folder.not_run("preprocess", "participant summary")
    counts = subjects.get("groups", {})
    positive = subjects.get("positive_label")
    groups = pd.DataFrame(
        {
            "group": list(counts),
            "participants": list(counts.values()),
            "role": ["patients (positive class)" if g == positive else "controls" for g in counts],
        }
    )
    parts = [
        paragraph(f"{subjects.get('n')} participants were analysed."),
        table(groups, formats={"group": str, "role": str}),
    ]
    if folder.path("participants").exists():
        parts.append(
            guarded(
                "Covariates",
                lambda: _covariates_by_group(
                    *participants_table(folder), [str(g) for g in counts]
                ),
            )
        )
    excluded = subjects.get("excluded", [])
    if excluded:
        parts.append(
            table(
                pd.DataFrame(excluded).rename(columns={"label": "participant"}),
                caption=f"{len(excluded)} participant(s) excluded before the analysis.",
                formats={"participant": str, "reason": str},
            )
        )
    else:
        parts.append(paragraph("No participant was excluded."))
    return "".join(parts)


# ----------------------------------------------------------------------------- warnings
_LOG_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL)\s+(.*)$")


def warnings_section(folder: ReportFolder, failed_sections: list[str] | None = None) -> str:
    """Input warnings, warnings and errors of the log, and report sections that failed."""
    parts = []
    if failed_sections:
        parts.append(
            note(
                "These report sections failed (their error is shown in place): "
                + escape(", ".join(failed_sections))
                + ".",
                "error",
            )
        )
    input_warnings = folder.summary.get("warnings", [])
    if input_warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in input_warnings)
        parts.append(f"<h3>Input</h3><ul>{items}</ul>")
    logged = [m.groups() for m in map(_LOG_LEVEL.match, folder.log_lines) if m]
    if logged:
        frame = pd.DataFrame(logged, columns=["level", "message"])
        counts = frame.value_counts(sort=False).reset_index(name="times")
        parts.append(
            "<h3>Log</h3>"
            + table(
                counts,
                caption="Warnings and errors in rsxai.log (every run into this folder), "
                "each once with the number of times it was logged.",
                formats={"level": str, "message": str},
            )
        )
    if not parts:
        return paragraph("No warning was raised.")
    return "".join(parts)
