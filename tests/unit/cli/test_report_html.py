"""`stratos report` writes a real HTML page: tables as tables, the plots embedded, user text escaped.

No browser exists on the development machine, so the page is checked by parsing it (html.parser) for what a
browser would show: table cells, image data, text."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from stratos_cli.reports import to_html
from stratos_shared.report import CostBreakdown, JobReport, ScoreBreakdown, render_plots

ATTEMPT = {
    "attempt": 1, "action": "first", "student": "tiny-1m", "start_step": 0, "steps": 600, "accuracy_before": 0.03,
    "accuracy": 0.2, "cost_usd": 0.01, "seconds": 120.0, "decision": {"action": "continue"},
}  # fmt: skip


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
    return JobReport(
        job_id="j-1", name="<script>alert(1)</script>", task="math",
        server={"id": "a10-us-central", "revision": 1}, data={"accepted": 80, "asked": 100, "rate": 0.8},
        teacher={"teacher": "strong", "mode": "alignment", "tau": 0.5, "accuracy": 0.9, "scores": [
            {"name": "strong", "accuracy": 0.9, "ci_low": 0.8, "ci_high": 0.95, "errors": 0, "latency_p50_ms": 40.0,
             "cost_usd": 0.5},
            {"name": "weak", "error": "<b>401</b> | unauthorised", "errors": 3},
        ]},
        student={"student": "tiny-1m", "before": 0.03, "after": 0.33}, serving={"accuracy": 0.3},
        cost=CostBreakdown(teacher_eval_usd=0.5, data_synth_usd=1.0, training_usd=0.02, serving_usd=2.0, budget_usd=10),
        score=ScoreBreakdown(accuracy=0.3, latency=1.0, cost=0.6), loss_curve=[(1, 2.0), (2, 1.5)],
        attempts=[ATTEMPT, {**ATTEMPT, "attempt": 2, "action": "continue", "decision": {"action": "stop"}}],
        escalation={"target": 0.5, "target_met": False, "best_attempt": 2, "reason": "budget spent"},
    )  # fmt: skip


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
    assert cost[-1] == ["total", "3.5200 of 10.00 budget"]

    assert [image["alt"] for image in page.images] == [f"{name} plot" for name in plots]
    for image, path in zip(page.images, plots.values(), strict=True):
        src = image["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == path.read_bytes()
    assert "<script>alert(1)</script>" in "".join(page.text)  # the user's name, as text
