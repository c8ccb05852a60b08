"""The HTML report: one self-contained file built from an output folder alone.

:func:`write_report` reads only what the stages wrote (``summary.json``,
``rsxai.toml``, ``provenance.json``, ``rsxai.log`` and the files named in
:data:`rsxai.outputs.OUTPUT_NAMES`); it imports no stage module and recomputes
no result, so ``rsxai report OUTPUT_DIR`` rebuilds the same report from the
same folder. Figures are embedded as base64 PNG or SVG images, the page has no
script and loads nothing from the network. Each section is built on its own:
one that fails shows its error and the others are kept.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from rsxai.exceptions import InputError
from rsxai.outputs import write_text
from rsxai.report import classification as report_classification
from rsxai.report import explanations as report_explanations
from rsxai.report import methods as report_methods
from rsxai.report import networks as report_sections
from rsxai.report import sample as report_sample
from rsxai.report import statistics as report_statistics
from rsxai.report.folder import ReportFolder
from rsxai.report.html import Section, SectionNotRun, error_box, escape, guarded, note, page

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- assembly
def _section_builders() -> list[tuple[str, str, Callable[[ReportFolder], str]]]:
    return [
        ("methods", "Methods", report_methods.methods_section),
        ("sample", "Sample", report_sample.sample_section),
        ("group-ica", "Group ICA", report_sections.ica_section),
        ("dual-regression", "Dual regression QC", report_sections.dual_regression_section),
        ("statistics", "Group statistics", report_statistics.stats_section),
        ("classification", "Classification", report_classification.classification_section),
        ("explanations", "Explanations", report_explanations.explanations_section),
        ("warnings", "Warnings", report_sample.warnings_section),
    ]


def _build_section(
    folder: ReportFolder, anchor: str, title: str, build: Callable[[ReportFolder], str]
) -> Section:
    try:
        return Section(anchor, title, build(folder))
    except SectionNotRun as reason:
        return Section(anchor, title, note(escape(reason)), status="not run")
    except Exception as error:
        logger.warning("Report: section %s failed (%s: %s).", title, type(error).__name__, error)
        return Section(anchor, title, error_box(f"The section “{title}”", error), status="error")


def _header(folder: ReportFolder) -> str:
    provenance, summary = folder.provenance, folder.summary
    version = summary.get("rsxai_version") or provenance.get("rsxai_version") or "unknown"
    lines = [f"<h1>rsxai report</h1><p>Output folder <code>{escape(folder.root.resolve())}</code>"]
    if provenance.get("input"):
        lines.append(f" · input <code>{escape(provenance['input'])}</code>")
    lines.append("</p>")
    when = provenance.get("finished")
    lines.append(
        f"<p>rsxai {escape(version)}"
        + (f" · run finished {escape(when)}" if when else "")
        + (
            f" · command <code>{escape(' '.join(provenance['command']))}</code>"
            if provenance.get("command")
            else ""
        )
        + "</p>"
    )
    return "".join(lines)


def build_sections(folder: ReportFolder) -> list[Section]:
    """Every section of the report, each built on its own (errors captured, never raised)."""
    sections = []
    for anchor, title, build in _section_builders():
        if anchor == "warnings":
            # The warnings also list the sections that failed above.
            failed = [s.title for s in sections if s.status == "error"]
            build = functools.partial(build, failed_sections=failed)
        sections.append(_build_section(folder, anchor, title, build))
    return sections


def write_report(out_dir: str | Path) -> Path:
    """Write ``report.html`` into an rsxai output folder from the outputs found there.

    Nothing is recomputed: the report shows the tables, maps and numbers the
    stages wrote. Sections whose stage did not run say so; a section that fails
    shows its error, and the rest of the report is written.

    Parameters
    ----------
    out_dir : str or Path
        The output folder of ``rsxai run``.

    Returns
    -------
    path : Path
        The report, ``out_dir/report.html`` (written atomically).

    Raises
    ------
    InputError
        When ``out_dir`` is not an rsxai output folder.
    """
    folder = ReportFolder(out_dir)
    if not folder.root.is_dir():
        raise InputError(
            f"OUTPUT_DIR {folder.root} is not a folder. Give the output folder of `rsxai run`."
        )
    markers = [folder.path(name) for name in ("summary", "config", "provenance")]
    if not any(path.exists() for path in markers):
        raise InputError(
            f"OUTPUT_DIR {folder.root} is not an rsxai output folder: none of "
            f"{', '.join(p.name for p in markers)} is there. "
            "Give the output folder of `rsxai run`."
        )
    sections = build_sections(folder)
    header = guarded("The header", lambda: _header(folder))
    html = page(f"rsxai report: {folder.root.resolve().name}", header, sections)
    path = write_text(folder.path("report"), html)
    failed = [s.title for s in sections if s.status == "error"]
    if failed:
        logger.warning("Report written with errors in: %s.", ", ".join(failed))
    logger.info("Report: %s", path)
    return path
