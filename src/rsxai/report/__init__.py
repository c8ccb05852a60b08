"""The HTML report, built from an output folder alone, and the plain-text summary of a run."""

from rsxai.report.build import write_report
from rsxai.report.folder import ReportFolder
from rsxai.report.summary_text import text_summary

__all__ = ["ReportFolder", "text_summary", "write_report"]
