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
import re
import string
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from rsxai.exceptions import InputError
from rsxai.outputs import OUTPUT_NAMES, output_path, read_json, write_text
from rsxai.report_html import Section, SectionNotRun, error_box, escape, guarded, note, page

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

logger = logging.getLogger("rsxai")

__all__ = ["ReportFolder", "report_command", "write_report"]


class ReportFolder:
    """Read-only view of an rsxai output folder, as the report sections see it.

    Every file is located through :func:`rsxai.outputs.output_path`, never by a
    path written here, so the report and the stages agree on names.

    Parameters
    ----------
    out_dir : str or Path
        The output folder of ``rsxai run``.
    """

    def __init__(self, out_dir: str | Path):
        self.root = Path(out_dir)

    # ----------------------------------------------------------------- locations
    def path(self, name: str, **fields: Any) -> Path:
        """Path of a registered output (see :data:`rsxai.outputs.OUTPUT_NAMES`)."""
        return output_path(self.root, name, **fields)

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the output folder (as the report shows it)."""
        path = Path(path)
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def find(self, name: str, **known: str) -> list[dict[str, str]]:
        """Fields of every existing file matching a registered name template.

        Parameters
        ----------
        name : str
            A key of :data:`rsxai.outputs.OUTPUT_NAMES`.
        **known
            Fields already known (e.g. ``network="visual"``); the others are
            read from the file names found.

        Returns
        -------
        matches : list of dict
            One dict of field values per file, sorted by path; each also holds
            the file under ``"path"`` (a Path).
        """
        template = OUTPUT_NAMES[name]
        glob_parts, regex_parts, seen = [], [], set()
        for literal, field, _, _ in string.Formatter().parse(template):
            glob_parts.append(literal)
            regex_parts.append(re.escape(literal))
            if field is None:
                continue
            if field in known:
                glob_parts.append(str(known[field]))
                regex_parts.append(re.escape(str(known[field])))
                continue
            glob_parts.append("*")
            regex_parts.append(f"(?P={field})" if field in seen else f"(?P<{field}>[^/]+?)")
            seen.add(field)
        pattern = re.compile("".join(regex_parts) + r"\Z")
        matches = []
        for path in sorted(self.root.glob("".join(glob_parts))):
            found = pattern.match(path.relative_to(self.root).as_posix())
            if found:
                matches.append({**known, **found.groupdict(), "path": path})
        return matches

    # ----------------------------------------------------------------- contents
    @cached_property
    def summary(self) -> dict:
        """``summary.json`` ({} when absent)."""
        path = self.path("summary")
        return read_json(path) if path.exists() else {}

    @cached_property
    def provenance(self) -> dict:
        """``provenance.json`` ({} when absent)."""
        path = self.path("provenance")
        return read_json(path) if path.exists() else {}

    @cached_property
    def config(self) -> dict:
        """The resolved configuration: ``rsxai.toml``, else provenance's copy, else {}."""
        path = self.path("config")
        if path.exists():
            return tomllib.loads(path.read_text(encoding="utf-8"))
        return dict(self.provenance.get("configuration", {}))

    @cached_property
    def log_lines(self) -> list[str]:
        """Lines of ``rsxai.log`` (every run into this folder); [] when absent."""
        path = self.path("log")
        return (
            path.read_text(encoding="utf-8", errors="replace").splitlines()
            if path.exists()
            else []
        )

    def option(self, section: str, name: str, default: Any = None) -> Any:
        """One resolved option, or ``default`` when the configuration does not hold it."""
        return self.config.get(section, {}).get(name, default)

    def read_json_file(self, path: str | Path) -> Any:
        """A JSON file of the folder."""
        return read_json(path)

    def read_tsv(self, path: str | Path) -> pd.DataFrame:
        """A BIDS-style TSV (``n/a`` for missing values)."""
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)

    def stage_status(self, stage: str) -> str | None:
        """How the last run treated ``stage`` ("computed", "reused", "not available"), or None."""
        return self.provenance.get("stages", {}).get(stage, {}).get("status")

    def networks(self) -> list[str]:
        """The analysed networks: from the summary, else from the group maps found."""
        if self.summary.get("networks"):
            return list(self.summary["networks"])
        return [match["network"] for match in self.find("network_map")]

    def not_run(self, stage: str, what: str) -> SectionNotRun:
        """The exception a section raises when ``stage`` left nothing to show."""
        status = self.stage_status(stage)
        stop_after = self.option("run", "stop_after")
        if status == "not available":
            reason = f"the {stage} stage is not available in the rsxai version that ran"
        elif status is None and stop_after and stage != stop_after:
            reason = f"the run stopped before it (--stop-after {stop_after})"
        else:
            reason = "its outputs are not in this folder"
        return SectionNotRun(f"Not run: no {what} ({reason}).")


# ----------------------------------------------------------------------------- assembly
def _section_builders() -> list[tuple[str, str, Callable[[ReportFolder], str]]]:
    from rsxai import (
        report_classification,
        report_explanations,
        report_methods,
        report_sections,
        report_statistics,
    )

    return [
        ("methods", "Methods", report_methods.methods_section),
        ("sample", "Sample", report_sections.sample_section),
        ("group-ica", "Group ICA", report_sections.ica_section),
        ("dual-regression", "Dual regression QC", report_sections.dual_regression_section),
        ("statistics", "Group statistics", report_statistics.stats_section),
        ("classification", "Classification", report_classification.classification_section),
        ("explanations", "Explanations", report_explanations.explanations_section),
        ("warnings", "Warnings", report_sections.warnings_section),
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


def report_command(output_dir: str | Path) -> int:
    """``rsxai report OUTPUT_DIR``: rebuild the report; print its path; return the exit code."""
    import matplotlib

    # A command-line process draws off screen; the report never opens a window.
    matplotlib.use("Agg")
    path = write_report(output_dir)
    print(f"Report: {path.resolve()}")
    return 0
