"""`stratos report` writes a real HTML page: tables as tables, the plots embedded, user text escaped.

Parsed here (html.parser) for what a browser would show, so it runs everywhere; test_report_browser.py opens the
page in a real headless Chromium where one is installed."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from stratos_cli.reportpage import to_html
from stratos_shared.contracts.events import TeacherScore
from stratos_shared.report import JobReport, render_plots
from tests.reports import folded_report


class Page(HTMLParser):
    """What a reader sees: the tables (rows of cell texts), the images, the elements used, all the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str | None]] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def report() -> JobReport:
    """The folded job's report, with a hostile name and a teacher that could not be scored."""
    folded = folded_report()
    assert folded.teacher is not None
    broken = TeacherScore(name="weak", accuracy=0, ci_low=0, ci_high=0, graded=0, errors=3, cost_usd=0,
                          error="<b>401</b> | unauthorised")  # fmt: skip
    teacher = folded.teacher.model_copy(update={"scores": [*folded.teacher.scores, broken]})
    return folded.model_copy(update={"name": "<script>alert(1)</script>", "teacher": teacher})


def test_the_report_page_shows_tables_as_tables_and_embeds_the_plots(tmp_path: Path) -> None:
    plots = render_plots(report(), tmp_path)
    page = Page()
    page.feed(to_html(report(), plots))

    assert "pre" not in page.tags and "script" not in page.tags
    headers = [table[0] for table in page.tables]
    assert ["teacher", "accuracy", "95% interval", "errors", "p50 ms", "cost"] in headers
    teachers = page.tables[headers.index(["teacher", "accuracy", "95% interval", "errors", "p50 ms", "cost"])]
    assert teachers[1][:2] == ["strong", "90.0%"]
    assert teachers[2][1] == "unusable: <b>401</b> | unauthorised"  # shown as text, the pipe inside its cell
    attempts = page.tables[
        headers.index(["attempt", "how", "student", "steps", "accuracy", "cost USD", "seconds", "then"])
    ]
    assert [row[0] for row in attempts[1:]] == ["1", "2"] and attempts[2][-1] == "stop"
    cost = page.tables[headers.index(["stage", "USD"])]
    assert cost[-1] == ["total", f"{report().cost.total_usd:.4f} of 200.00 budget"]
    stages = page.tables[headers.index(["stage", "starts at", "takes"])]
    assert [row[0] for row in stages[1:]][-1].startswith("deployment on ")

    assert [image["alt"] for image in page.images] == [f"{name} plot" for name in plots]
    for image, path in zip(page.images, plots.values(), strict=True):
        src = image["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == path.read_bytes()
    assert "<script>alert(1)</script>" in "".join(page.text)  # the user's name, as text
