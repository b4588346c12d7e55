"""`stratos trace JOB`: a job's spans, from the local span store, as a terminal waterfall or an HTML page."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

BAR_WIDTH = 48


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    links: list[str] = field(default_factory=list)
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def read_spans(trace_dir: Path) -> list[Span]:
    spans: list[Span] = []
    for path in sorted(trace_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write
            spans.append(
                Span(
                    trace_id=raw["trace_id"],
                    span_id=raw["span_id"],
                    parent_id=raw.get("parent_id"),
                    name=raw["name"],
                    service=raw.get("service") or "?",
                    start_ns=raw["start_ns"],
                    end_ns=raw.get("end_ns") or raw["start_ns"],
                    status=raw.get("status", "UNSET"),
                    attributes=raw.get("attributes") or {},
                    links=raw.get("links") or [],
                )
            )
    return spans


def job_trace_ids(spans: list[Span], job_id: str) -> set[str]:
    """Traces that carry the job: any span tagged with its id."""
    return {s.trace_id for s in spans if s.attributes.get("job.id") == job_id}


def job_spans(spans: list[Span], job_id: str) -> list[Span]:
    ids = job_trace_ids(spans, job_id)
    return sorted((s for s in spans if s.trace_id in ids), key=lambda s: s.start_ns)


def without_progress(spans: list[Span]) -> list[Span]:
    """Drop progress-event spans (hundreds per training run) and anything below them."""
    noisy = {s.span_id for s in spans if ".progress " in s.name}
    kept: list[Span] = []
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        node: Span | None = span
        seen: set[str] = set()
        while node is not None and node.span_id not in noisy and node.span_id not in seen:
            seen.add(node.span_id)
            node = by_id.get(node.parent_id or "")
        if node is None or node.span_id in seen:  # reached a root, or a cycle with no progress span in it
            kept.append(span)
    return kept


def tree(spans: list[Span]) -> list[tuple[int, Span]]:
    """Depth-first (depth, span) order; spans whose parent is missing become roots."""
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        span.children = []
    roots: list[Span] = []
    for span in spans:
        parent = by_id.get(span.parent_id or "")
        (parent.children if parent else roots).append(span)
    out: list[tuple[int, Span]] = []
    placed: set[int] = set()

    def walk(span: Span, depth: int) -> None:
        if id(span) in placed:
            return
        placed.add(id(span))
        out.append((depth, span))
        for child in sorted(span.children, key=lambda s: s.start_ns):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.start_ns):
        walk(root, 0)
    for span in spans:  # spans caught in a parent cycle (ids reused by a broken generator) still show
        walk(span, 0)
    return out


def waterfall(spans: list[Span], job_id: str) -> Table:
    ordered = tree(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(1, end - start)
    table = Table(
        title=f"trace of {job_id}: {len(spans)} spans, {total / 1e9:.1f} s, {len({s.service for s in spans})} services",
        box=None,
    )
    table.add_column("service", style="cyan")
    table.add_column("span")
    table.add_column("duration", justify="right")
    table.add_column("timeline", no_wrap=True)
    for depth, span in ordered:
        offset = int((span.start_ns - start) / total * BAR_WIDTH)
        width = max(1, int((span.end_ns - span.start_ns) / total * BAR_WIDTH))
        style = "red" if span.status == "ERROR" else "green"
        bar = Text(" " * offset) + Text("█" * min(width, BAR_WIDTH - offset), style=style)
        name = Text("  " * depth + span.name, style="red" if span.status == "ERROR" else "")
        table.add_row(span.service, name, f"{span.duration_ms:,.0f} ms", bar)
    return table


def html_page(spans: list[Span], job_id: str) -> str:
    ordered = tree(spans)
    start = min(s.start_ns for s in spans)
    total = max(1, max(s.end_ns for s in spans) - start)
    rows = []
    for depth, span in ordered:
        left = (span.start_ns - start) / total * 100
        width = max(0.3, (span.end_ns - span.start_ns) / total * 100)
        colour = "#d9534f" if span.status == "ERROR" else "#5cb85c"
        attributes = html.escape(json.dumps(span.attributes, indent=1))
        rows.append(
            f'<tr title="{attributes}"><td>{html.escape(span.service)}</td>'
            f'<td style="padding-left:{depth * 14}px">{html.escape(span.name)}</td>'
            f"<td>{span.duration_ms:,.0f} ms</td>"
            f'<td class="lane"><div style="margin-left:{left:.2f}%;width:{width:.2f}%;'
            f'background:{colour}"></div></td></tr>'
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>Stratos trace " + html.escape(job_id) + "</title>"
        "<style>body{font:13px system-ui}td{padding:2px 8px;white-space:nowrap}.lane{width:60%}"
        ".lane div{height:12px;border-radius:2px}</style>"
        f"<h2>Trace of job {html.escape(job_id)}</h2><p>{len(spans)} spans; hover a row for its attributes.</p>"
        "<table><tr><th>service</th><th>span</th><th>duration</th><th>timeline</th></tr>" + "".join(rows) + "</table>"
    )
