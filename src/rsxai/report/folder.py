"""The output folder as the report sections read it: :class:`ReportFolder`.

Apart from :mod:`rsxai.report.build` so that the sections, which read the folder,
and the assembly, which imports the sections, do not import each other.
"""

from __future__ import annotations

import re
import string
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from rsxai.outputs import OUTPUT_NAMES, output_path, read_json
from rsxai.report.html import SectionNotRun

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


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
