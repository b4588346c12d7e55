"""The report as one standalone HTML page: what a reader wants at a glance drawn first (the score and the
constraints, the stage timeline, the attempts), then every section as tables, the plots embedded.

Nothing is fetched: the styles are inline, the charts are inline SVG drawn here, the plots are data URIs, so the
file alone can be mailed or archived. Every text that came from a user or a teacher (names, reasons, errors) is
escaped; the Markdown is rendered with raw HTML off.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from markdown_it import MarkdownIt

from stratos_shared.report import JobReport, StageSpan
from stratos_shared.report.markdown import duration, markdown_body, pct, title_lines

STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}"
    "th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}code{background:#f3f3f3;padding:0 .2em}"
    "figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{text-align:center;color:#555}"
    ".glance{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}"
    ".card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:11em;flex:1}"
    ".card .value{font-size:1.6em;font-weight:600}.card .note{color:#555;font-size:.9em}"
    ".met{color:#1a7f37}.missed{color:#c0392b}"
    ".costbar{display:flex;height:.9em;background:#eee;border-radius:3px;margin:.4em 0;position:relative}"
    ".costbar span{display:block;height:100%}.costbar .budget{position:absolute;top:-.2em;bottom:-.2em;"
    "width:2px;background:#c0392b}"
    "svg text{font:12px system-ui,sans-serif;fill:#333}svg .axis{stroke:#ccc}"
)
STAGE_COLOURS = {
    "admission": "#8e9aaf",
    "teacher-eval": "#e0a458",
    "data-synth": "#59a5d8",
    "pre-screen": "#a37cc2",
    "training": "#4caf7a",
    "deployment": "#3b6fb6",
    "re-plan": "#c0392b",
}
COST_COLOURS = {
    "teacher evaluation": "#e0a458",
    "data synthesis": "#59a5d8",
    "training": "#4caf7a",
    "serving": "#3b6fb6",
}


def to_html(report: JobReport, plots: dict[str, Path]) -> str:
    """The page for `report`, with the PNG plots at `plots` embedded."""
    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    figures = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" '
        f'alt="{html.escape(name)} plot"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, path in plots.items()
    )
    parts = [
        markdown.render("\n".join(title_lines(report))),
        glance(report),
        timeline_svg(report.timeline),
        attempts_svg(report),
        f"<h2>Plots</h2>{figures}" if figures else "",
        markdown.render(markdown_body(report.model_copy(update={"plots": {}}))),
    ]
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Stratos report {html.escape(report.name)} ({html.escape(report.job_id)})</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def _card(metric: str, value: str, note: str, extra: str = "") -> str:
    return (
        f'<div class="card" data-metric="{metric}"><div>{metric}</div><div class="value">{html.escape(value)}</div>'
        f'<div class="note">{note}</div>{extra}</div>'
    )


def _verdict(ok: bool) -> str:
    return '<span class="met">met</span>' if ok else '<span class="missed">missed</span>'


def glance(report: JobReport) -> str:
    """The score and each constraint, met or missed, with the spend per stage as one bar against the budget."""
    sv, c = report.serving, report.cost
    target = f"target {pct(sv.accuracy_target)}: {_verdict(sv.meets_accuracy_target)}" if sv.accuracy_target else ""
    teacher = report.teacher.accuracy if report.teacher else None
    accuracy_note = target or f"teacher {pct(teacher)}, before training {pct(report.student.before)}"
    parts = {
        "teacher evaluation": c.teacher_eval_usd,
        "data synthesis": c.data_synth_usd,
        "training": c.training_usd,
        "serving": c.serving_usd,
    }
    scale = max(c.total_usd, c.budget_usd) or 1.0
    segments = "".join(
        f'<span title="{stage}: ${usd:.4f}" style="width:{100 * usd / scale:.2f}%;background:{COST_COLOURS[stage]}">'
        "</span>"
        for stage, usd in parts.items()
    )
    bar = (
        f'<div class="costbar" role="img" aria-label="cost per stage against the budget">{segments}'
        f'<span class="budget" title="budget" style="left:{100 * c.budget_usd / scale:.2f}%"></span></div>'
    )
    return (
        '<section class="glance">'
        + "".join(
            [
                _card("score", f"{report.score.total:.2f}", "accuracy, latency and cost, each 0 to 1"),
                _card("accuracy", pct(sv.accuracy), f"through the endpoint; {accuracy_note}"),
                _card(
                    "latency",
                    f"{sv.total_latency_ms:.0f} ms",
                    f"of the {sv.slo_ms:.0f} ms SLO: {_verdict(sv.meets_slo)}",
                ),
                _card("cost", f"${c.total_usd:.2f}", f"of the ${c.budget_usd:.2f} budget", bar),
            ]
        )
        + "</section>"
    )


LABEL_W, BAR_W, TAIL_W, ROW_H = 270, 470, 90, 24


def timeline_svg(spans: list[StageSpan]) -> str:
    """One row per stage, bars on a shared clock from the submission; a re-plan is a red tick."""
    if not spans:
        return ""
    origin, end = spans[0].start, max(s.end for s in spans)
    total = max((end - origin).total_seconds(), 1e-3)
    width, height = LABEL_W + BAR_W + TAIL_W, ROW_H * len(spans) + 28

    def x(at: float) -> float:
        return LABEL_W + BAR_W * at / total

    ticks = "".join(
        f'<line class="axis" x1="{x(total * f):.1f}" x2="{x(total * f):.1f}" y1="0" y2="{height - 20}"/>'
        f'<text x="{x(total * f):.1f}" y="{height - 6}" text-anchor="middle">+{duration(total * f)}</text>'
        for f in (0, 0.25, 0.5, 0.75, 1)
    )
    rows = []
    for i, s in enumerate(spans):
        y, offset = ROW_H * i + 4, (s.start - origin).total_seconds()
        wide = max(BAR_W * s.seconds / total, 3.0)
        shown = s.label if len(s.label) <= 36 else s.label[:35] + "…"
        took = duration(s.seconds) if s.seconds else ""
        rows.append(
            f'<g class="stage" data-stage="{s.stage}"><title>{html.escape(s.label)}: {s.start:%H:%M:%S} to '
            f"{s.end:%H:%M:%S} UTC</title>"
            f'<text x="{LABEL_W - 8}" y="{y + 14}" text-anchor="end">{html.escape(shown)}</text>'
            f'<rect x="{x(offset):.1f}" y="{y + 2}" width="{wide:.1f}" height="{ROW_H - 8}" rx="2" '
            f'fill="{STAGE_COLOURS[s.stage]}"/>'
            f'<text x="{x(offset) + wide + 4:.1f}" y="{y + 14}">{took}</text></g>'
        )
    return (
        f'<h2>Timeline</h2><svg class="timeline" role="img" aria-label="stage timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{ticks}{"".join(rows)}</svg>'
    )


def attempts_svg(report: JobReport) -> str:
    """Each attempt's held-out accuracy as a bar, the target as a dashed line, the cost under each bar."""
    if not report.attempts:
        return ""
    col, chart_h, width = 130, 150, 130 * len(report.attempts) + 60
    target = report.escalation.target if report.escalation else report.serving.accuracy_target
    deployed = report.escalation.best_attempt if report.escalation else report.student.attempt
    bars = []
    for i, a in enumerate(report.attempts):
        high, left = max(chart_h * a.accuracy, 1.0), 50 + col * i
        colour = "#3b6fb6" if a.attempt == deployed else "#9bb7dd"
        bars.append(
            f'<g class="attempt" data-attempt="{a.attempt}"><title>{html.escape(a.student)}: {pct(a.accuracy)}, '
            f"${a.cost_usd:.4f}, then {a.decision.action if a.decision else '-'}</title>"
            f'<rect x="{left}" y="{10 + chart_h - high:.1f}" width="{col - 40}" height="{high:.1f}" fill="{colour}"/>'
            f'<text x="{left}" y="{chart_h + 26}">#{a.attempt} {pct(a.accuracy)}</text>'
            f'<text x="{left}" y="{chart_h + 42}">${a.cost_usd:.4f}</text></g>'
        )
    line_y = 10 + chart_h * (1 - target)
    goal = (
        f'<line x1="40" x2="{width}" y1="{line_y:.1f}" y2="{line_y:.1f}" stroke="#c0392b" stroke-dasharray="5 4"/>'
        f'<text x="0" y="{line_y + 4:.1f}">{pct(target)}</text>'
        if target
        else ""
    )
    return (
        f'<h2>Attempts</h2><svg class="attempts" role="img" aria-label="accuracy and cost per attempt" '
        f'width="{width}" height="{chart_h + 50}">{goal}{"".join(bars)}</svg>'
    )
