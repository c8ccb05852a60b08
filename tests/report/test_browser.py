"""The report in a real browser: headless Chromium, offline, JavaScript off.

Drives Debian's ``chromium`` (``/usr/bin/chromium``, or ``RSXAI_CHROMIUM``)
through the ``playwright`` Python package, never a browser that playwright
downloads. Skipped, with the reason, where either is missing. The screenshot
is saved beside the test's report, and also to ``RSXAI_REPORT_SCREENSHOT``
when that variable names a file.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from rsxai.report import write_report
from tests.fixtures.report import SECTION_IDS, make_fabricated_output

# Flags for a root user on a machine without display or network (Chromium's
# background services would otherwise try to reach Google's hosts).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    candidates = [os.environ.get("RSXAI_CHROMIUM"), shutil.which("chromium")]
    candidates.append(shutil.which("chromium-browser"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip(
        "Chromium not found (install Debian's package: apt-get install chromium, "
        "or set RSXAI_CHROMIUM to its executable)."
    )


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install playwright; the test drives the "
        "system's Chromium, no browser download is needed)",
    )
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = make_fabricated_output(tmp_path_factory.mktemp("browser") / "out")
    return write_report(out)


@pytest.fixture
def page(browser):
    # Offline and without JavaScript: the report must be whole with neither.
    context = browser.new_context(
        java_script_enabled=False, offline=True, viewport={"width": 1280, "height": 900}
    )
    opened = context.new_page()
    yield opened
    context.close()


def test_report_loads_offline_without_errors(page, report):
    console_errors, page_errors, requests = [], [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.resolve().as_uri(), wait_until="load")

    n_tags = len(re.findall(r"<img ", report.read_text(encoding="utf-8")))
    assert n_tags > 20
    assert page.evaluate("document.images.length") == n_tags
    broken = page.evaluate(
        "Array.from(document.images)"
        ".filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0))"
        ".map(i => i.alt)"
    )
    assert broken == []
    assert console_errors == [] and page_errors == []
    # The page itself, nothing else: every figure is inside the file.
    assert requests == [report.resolve().as_uri()]

    headings = page.locator("section > h2")
    assert headings.count() == len(SECTION_IDS)
    for index in range(len(SECTION_IDS)):
        assert headings.nth(index).is_visible()
    assert page.locator("section#classification").inner_text().count("transductive") >= 1

    screenshot = report.with_name("report.png")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("RSXAI_REPORT_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["RSXAI_REPORT_SCREENSHOT"])


def test_report_prints_without_navigation(page, report):
    page.goto(report.resolve().as_uri(), wait_until="load")
    assert page.locator("nav.toc").is_visible()
    page.emulate_media(media="print")
    assert not page.locator("nav.toc").is_visible()
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) > 3  # a multi-page document


def test_no_table_is_cut_in_a_1200px_window(browser, report):
    # A common laptop window: the page must not scroll sideways, and no table of
    # the fabricated report (the metrics table is the widest) may need its own scroll.
    context = browser.new_context(
        java_script_enabled=True, offline=True, viewport={"width": 1200, "height": 900}
    )
    try:
        page = context.new_page()
        page.goto(report.resolve().as_uri(), wait_until="load")
        root = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert root[0] <= root[1]
        cut = page.evaluate(
            "Array.from(document.querySelectorAll('.table-wrap'))"
            ".filter(box => box.scrollWidth > box.clientWidth)"
            ".map(box => box.closest('section').id + ': ' + box.querySelector('th').textContent)"
        )
        assert page.locator(".table-wrap > table").count() > 10
        assert cut == []
    finally:
        context.close()
