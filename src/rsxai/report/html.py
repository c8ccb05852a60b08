"""HTML building blocks of the report: escaping, tables, figures, notes, the page and its style.

The report is one static file that a browser opens without network access or
JavaScript, and that prints cleanly: plain semantic HTML (``<section>``,
``<table>``, ``<figure>``, ``<details>``) and one inline style sheet.
"""

from __future__ import annotations

import html
import logging
import math
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


class SectionNotRun(Exception):
    """Raised by a section builder when the stage it shows left no outputs.

    The message says why (e.g. "stopped after stats"); the section then shows
    that sentence instead of results.
    """


@dataclass
class Section:
    """One rendered section of the report.

    Parameters
    ----------
    anchor : str
        The ``id`` of the section (used by the table of contents).
    title : str
        Heading.
    body : str
        HTML of the content.
    status : {"ok", "not run", "error"}
        Whether the section shows results, says its stage did not run, or
        failed while being built (``body`` then holds the error).
    """

    anchor: str
    title: str
    body: str
    status: str = "ok"


def escape(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def format_number(value: Any, digits: int = 3) -> str:
    """A number as readers expect it: integers whole, floats with ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}".replace(",", "\u202f")
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value == 0:
            return "0"
        if abs(value) < 1e-3:
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.{digits}e}"
    return str(value)


def format_p(p: Any, n_permutations: int | None = None) -> str:
    """A p-value; with permutations, the smallest attainable value is shown as ``< 1/n``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    p = float(p)
    if n_permutations and p <= 1.0 / n_permutations:
        return f"≤ {format_number(1.0 / n_permutations)}"
    return format_number(p, 2 if p >= 0.01 else 3)


def paragraph(text: str) -> str:
    """A paragraph of already-escaped HTML."""
    return f"<p>{text}</p>"


def note(text: str, kind: str = "info") -> str:
    """A highlighted note; ``kind`` is "info", "warning" or "error"."""
    return f'<div class="note note-{escape(kind)}">{text}</div>'


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible block (works without JavaScript; printed expanded by the style sheet)."""
    attribute = " open" if open_ else ""
    return f"<details{attribute}><summary>{escape(summary)}</summary>{body}</details>"


def figure(image: str, caption: str, *, wide: bool = False) -> str:
    """A figure: an ``<img>`` (from :mod:`rsxai.report.figures`) with its caption (HTML)."""
    css = "figure wide" if wide else "figure"
    return f'<figure class="{css}">{image}<figcaption>{caption}</figcaption></figure>'


def gallery(items: Iterable[str]) -> str:
    """Figures side by side, wrapping on narrow screens."""
    return '<div class="gallery">' + "".join(items) + "</div>"


def table(
    frame: pd.DataFrame,
    *,
    caption: str | None = None,
    formats: dict[str, Callable[[Any], str]] | None = None,
    row_classes: Sequence[str] | None = None,
    raw_columns: Sequence[str] = (),
    numeric_columns: Sequence[str] = (),
    max_rows: int | None = None,
) -> str:
    """An HTML table of a DataFrame.

    Parameters
    ----------
    frame : DataFrame
        Rows and columns to show (the index is not shown).
    caption : str, optional
        Caption (HTML).
    formats : dict, optional
        Column -> function giving the cell's text; numbers default to
        :func:`format_number`.
    row_classes : sequence of str, optional
        A CSS class per row (e.g. "flag" to highlight outliers).
    raw_columns : sequence of str
        Columns whose cells are already HTML (e.g. thumbnails).
    numeric_columns : sequence of str
        Columns of numbers given as text (intervals, p-values): right-aligned
        like numeric columns.
    max_rows : int, optional
        Show at most this many rows and say how many were left out.
    """
    formats = formats or {}
    shown = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f"<th>{escape(column)}</th>" for column in shown.columns)
    rows = []
    for position, (_, row) in enumerate(shown.iterrows()):
        cells = []
        for column in shown.columns:
            value = row[column]
            if column in raw_columns:
                text = str(value)
            elif column in formats:
                text = escape(formats[column](value))
            else:
                text = escape(format_number(value))
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if numeric or column in numeric_columns:
                cells.append(f'<td class="num">{text}</td>')
            elif column not in raw_columns and len(text) > 40:
                cells.append(f'<td class="text">{text}</td>')  # long text may wrap
            else:
                cells.append(f"<td>{text}</td>")
        css = f' class="{escape(row_classes[position])}"' if row_classes else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    caption_html = f'<p class="caption">{caption}</p>' if caption else ""
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f'<p class="more">{len(frame) - max_rows} more rows in the TSV file.</p>'
    return (
        f'{caption_html}<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def error_box(what: str, error: BaseException) -> str:
    """The error that stopped part of the report, with its traceback folded away."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return note(
        f"<strong>{escape(what)} could not be shown:</strong> "
        f"{escape(type(error).__name__)}: {escape(error)}"
        + details("Traceback", f"<pre>{escape(trace)}</pre>"),
        "error",
    )


def guarded(what: str, build: Callable[[], str]) -> str:
    """Run ``build``; on failure return an error box instead, so the rest of the report survives.

    Parameters
    ----------
    what : str
        What ``build`` shows, for the error message (e.g. "visual: ROC curves").
    build : callable
        Zero-argument function returning HTML.
    """
    try:
        return build()
    except SectionNotRun as reason:
        return note(escape(reason))
    except Exception as error:
        logger.warning(
            "Report: %s could not be shown (%s: %s).", what, type(error).__name__, error
        )
        return error_box(what, error)


STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --accent: #0b5cad;
  --soft: #f6f8fa; --warn: #9a6700; --warn-bg: #fff8c5; --err: #b3261e; --err-bg: #ffebe9;
  --ok: #1a7f37; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { padding: 1.5rem 2rem 1rem; border-bottom: 1px solid var(--line); }
header.top h1 { margin: 0 0 .25rem; font-size: 1.6rem; }
header.top p { margin: .1rem 0; color: var(--muted); }
.layout { display: flex; align-items: flex-start; }
nav.toc { position: sticky; top: 0; flex: 0 0 15rem; max-height: 100vh; overflow-y: auto;
  padding: 1rem 1rem 2rem 2rem; font-size: .93rem; }
nav.toc ol { padding-left: 1.1rem; margin: 0; }
nav.toc li { margin: .2rem 0; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc .status-not-run a { color: var(--muted); }
nav.toc .status-error a { color: var(--err); }
main { flex: 1 1 auto; min-width: 0; max-width: 72rem; padding: 0 2rem 3rem 1rem; }
section { padding-top: 1rem; border-bottom: 1px solid var(--line); padding-bottom: 1rem; }
h2 { font-size: 1.35rem; margin: .8rem 0 .6rem; }
h3 { font-size: 1.12rem; margin: 1.2rem 0 .4rem; }
h4 { font-size: 1rem; margin: 1rem 0 .3rem; color: var(--muted); }
p { margin: .45rem 0; max-width: 60rem; }
a { color: var(--accent); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .88em; }
pre { background: var(--soft); padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
/* A table wider than the page scrolls inside its own box, never the page. */
.table-wrap { overflow-x: auto; max-width: 100%; margin: .5rem 0; }
table { border-collapse: collapse; font-size: .9rem; }
p.caption { color: var(--muted); font-size: .87rem; margin: .6rem 0 .2rem; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
  vertical-align: middle; white-space: nowrap; }
td.text { white-space: normal; min-width: 16rem; }
th { background: var(--soft); font-weight: 600; white-space: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
/* A number's interval or qualifier on a second, quieter line: keeps wide tables narrow. */
td .detail { display: block; color: var(--muted); font-size: .85em; }
tr.flag td { background: var(--warn-bg); }
tr.selected td { background: #ddf4ff; font-weight: 600; }
td img { display: block; }
.verdict-pass { color: var(--ok); font-weight: 600; }
.verdict-fail { color: var(--err); font-weight: 600; }
p.more { color: var(--muted); font-size: .85rem; }
/* A table box: the caption takes the width of the image, not the other way round. */
figure { margin: .6rem 0 1rem; display: inline-table; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figure.wide { display: table; }
figcaption { display: table-caption; caption-side: bottom; color: var(--muted);
  font-size: .87rem; margin-top: .2rem; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.note { border-left: 4px solid var(--accent); background: var(--soft); padding: .5rem .8rem;
  margin: .6rem 0; max-width: 60rem; }
.note-warning { border-color: var(--warn); background: var(--warn-bg); }
.note-error { border-color: var(--err); background: var(--err-bg); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem;
  background: var(--soft); border: 1px solid var(--line); color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0; }
dt { font-weight: 600; }
dd { margin: 0; }
ol.refs li { margin: .25rem 0; }
details { margin: .4rem 0; }
summary { cursor: pointer; color: var(--accent); }
@media (max-width: 900px) { .layout { display: block; } nav.toc { position: static;
  max-height: none; } main { padding: 0 1rem 2rem; } }
@media print {
  nav.toc { display: none; }
  main { max-width: none; padding: 0; }
  section { break-inside: auto; }
  figure, table, .note { break-inside: avoid; }
  details > summary { display: none; }
  details { display: block; }
  a { color: inherit; text-decoration: none; }
  header.top { padding: 0 0 .5rem; }
}
"""


def page(title: str, header: str, sections: Sequence[Section]) -> str:
    """The whole HTML document: header, table of contents and sections."""
    toc = "".join(
        f'<li class="status-{escape(s.status.replace(" ", "-"))}">'
        f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>'
        + (' <span class="badge">not run</span>' if s.status == "not run" else "")
        + (' <span class="badge">error</span>' if s.status == "error" else "")
        + "</li>"
        for s in sections
    )
    body = "".join(
        f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network, no scripts: the page must open offline and show everything as is.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header class="top">{header}</header>'
        f'<div class="layout"><nav class="toc" aria-label="Contents"><ol>{toc}</ol></nav>'
        f"<main>{body}</main></div></body></html>\n"
    )
