"""`stratos report`'s page in a real headless browser (Debian's Chromium, driven by Playwright): what a user sees.

Playwright's own browser download needs a host this project cannot reach, so the browser is the system's Chromium
(`make browser` installs it with apt, and Playwright from PyPI). Without one the tests skip, naming that command.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stratos_cli.reportpage import to_html
from stratos_shared.report import JobReport, render_plots
from tests.reports import folded_report, legacy_report

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = os.environ.get("STRATOS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
STAGES = {"admission", "teacher-eval", "data-synth", "pre-screen", "training", "deployment"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright: `make browser` installs it")
    if CHROMIUM is None:
        pytest.skip("no headless Chromium: `make browser` installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def seen(browser: Browser, report: JobReport, folder: Path) -> dict[str, Any]:
    """Open the page as `stratos report` writes it and collect what is on screen, the console's errors and any
    request that left the file (the page must need nothing but itself)."""
    page_file = folder / "report.html"
    page_file.write_text(to_html(report, render_plots(report, folder / "plots")), encoding="utf-8")
    for plot in (folder / "plots").iterdir():
        plot.unlink()  # the page must not lean on the files beside it
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_file.as_uri(), wait_until="load")
    shown = page.evaluate(
        """() => {
            const box = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
            const table = [...document.querySelectorAll('table')]
                .find(t => t.rows[0] && t.rows[0].cells[0].textContent.trim() === 'attempt');
            return {
                attempts: table ? [...table.rows].slice(1).map(r => r.cells[0].textContent.trim()) : [],
                stages: [...document.querySelectorAll('svg.timeline g.stage')].map(g => ({
                    stage: g.dataset.stage, hover: g.querySelector('title').textContent,
                    bar: box(g.querySelector('rect')),
                })),
                images: [...document.images].map(i => ({
                    alt: i.alt, loaded: i.complete && i.naturalWidth > 0, box: box(i),
                    visible: getComputedStyle(i).visibility === 'visible' && getComputedStyle(i).display !== 'none',
                })),
                cards: [...document.querySelectorAll('.glance .card')].map(c => c.dataset.metric),
                title: document.title,
            };
        }"""
    )
    page.screenshot(path=str(folder / "report.png"), full_page=True)
    page.close()
    return {**shown, "errors": errors, "requests": [url for url in requests if url != page_file.as_uri()]}


@pytest.mark.timeout(120)
def test_the_report_page_shows_timeline_attempts_and_plots_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    report = folded_report()
    shown = seen(browser, report, tmp_path)

    assert shown["errors"] == [] and shown["requests"] == [], shown
    assert report.job_id in shown["title"] and shown["cards"] == ["score", "accuracy", "latency", "cost"]
    assert shown["attempts"] == ["1", "2"], shown["attempts"]
    assert {s["stage"] for s in shown["stages"]} >= STAGES, shown["stages"]
    assert len(shown["stages"]) == len(report.timeline)
    assert all(s["hover"].startswith(span.label) for s, span in zip(shown["stages"], report.timeline, strict=True))
    assert all(width > 0 and height > 0 for width, height in (s["bar"] for s in shown["stages"]))
    assert {image["alt"] for image in shown["images"]} == {"accuracy plot", "loss plot", "cost plot"}
    assert_visible(shown["images"])


@pytest.mark.timeout(120)
def test_a_report_stored_before_the_timeline_still_opens(browser: Browser, tmp_path: Path) -> None:
    shown = seen(browser, legacy_report(), tmp_path)
    assert shown["errors"] == [] and shown["requests"] == [], shown
    assert shown["attempts"] == ["1", "2"] and shown["stages"] == []
    assert len(shown["images"]) == 3
    assert_visible(shown["images"])


def assert_visible(images: list[dict[str, Any]]) -> None:
    """Each plot decoded and laid out at a readable size."""
    for image in images:
        width, height = image["box"]
        assert image["loaded"] and image["visible"] and width > 100 and height > 50, image
