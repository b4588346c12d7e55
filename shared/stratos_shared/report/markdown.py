"""The report as Markdown (the artifact store's report.md and the body of `stratos report`'s HTML page)."""

from __future__ import annotations

from stratos_shared.report.model import (
    CostBreakdown,
    JobReport,
    ServerSection,
    ServingSection,
    StageSpan,
    TeacherSection,
)
from stratos_shared.results import DataResult, TrainingResult


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def duration(seconds: float) -> str:
    """'0.4 s', '42 s', '3 min 05 s', '1 h 02 min': short enough for a timeline label."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _cell(text: str) -> str:
    """`text` safe inside one Markdown table cell (one line, no column breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")[:300]


def render_markdown(report: JobReport) -> str:
    """The report as Markdown: the title and score, then :func:`markdown_body`."""
    return "\n".join([*title_lines(report), "", markdown_body(report)])


def title_lines(report: JobReport) -> list[str]:
    return [
        f"# Stratos job report: {report.name} (`{report.job_id}`)",
        "",
        f"Task **{report.task}**, generated {report.generated_at:%Y-%m-%d %H:%M} UTC. "
        f"Multi-objective score **{report.score.total:.2f}** (accuracy {report.score.accuracy:.2f}, "
        f"latency {report.score.latency:.2f}, cost {report.score.cost:.2f}).",
    ]


def markdown_body(report: JobReport) -> str:
    """One section per stage, then the timeline, the cost and the plots (the page draws the title itself)."""
    lines = [
        *_server_section(report.server),
        "",
        *_teacher_section(report.teacher),
        "",
        *_data_section(report.data),
        "",
        *_student_section(report.student, report.teacher),
        *_attempts_section(report),
        "",
        *_serving_section(report.serving, report.job_id),
        "",
        *_timeline_section(report.timeline),
        *_cost_section(report.cost),
    ]
    if report.plots:
        lines += ["", "## Plots", *[f"- {name}: `{uri}`" for name, uri in report.plots.items()]]
    return "\n".join(lines) + "\n"


def _server_section(s: ServerSection) -> list[str]:
    return [
        "## Server",
        f"- **{s.id}** ({s.gpu_model} × {s.gpu_count}, ${s.cost_per_hour:.2f}/h, {s.latency_ms:.0f} ms), "
        f"placement revision {s.revision}: {s.reason}",
        f"- {s.feasible_count} of {s.total_count} servers feasible, {s.pareto_size} on the Pareto front "
        f"(strategy {s.strategy})",
    ]


def _teacher_section(t: TeacherSection | None) -> list[str]:
    """The choice, and every candidate's score; a teacher that could not be scored says why."""
    if t is None:
        return ["## Teacher", "- not evaluated"]
    lines = [
        "## Teacher",
        f"- chosen **{t.teacher}** → mode **{t.mode}** (τ = {t.tau})",
        "",
        "| teacher | accuracy | 95% interval | errors | p50 ms | cost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for score in t.scores:
        if score.error:  # not scored: say why rather than show an accuracy of 0
            lines.append(f"| {score.name} | unusable: {_cell(score.error)} | - | {score.errors} | - | - |")
            continue
        p50 = "-" if score.latency_p50_ms is None else f"{score.latency_p50_ms:.0f}"
        interval = f"{pct(score.ci_low)}–{pct(score.ci_high)}" if score.latency_p50_ms is not None else "-"
        lines.append(
            f"| {score.name} | {pct(score.accuracy)} | {interval} | {score.errors} | {p50} | ${score.cost_usd:.4f} |"
        )
    return lines


def _data_section(d: DataResult | None) -> list[str]:
    if d is None:
        return ["## Data", "- no training set was synthesised"]
    rejected = ", ".join(f"{why} {count}" for why, count in d.rejected.items()) or "none"
    return [
        "## Data",
        f"- {d.accepted} training records from {d.asked} teacher traces (acceptance {pct(d.rate)}); "
        f"rejected: {rejected}",
    ]


def _student_section(st: TrainingResult, teacher: TeacherSection | None) -> list[str]:
    resumed = f", resumed from step {st.resumed_from_step}" if st.resumed_from_step else ""
    return [
        "## Student",
        f"- **{st.student}** trained with {st.method} in {st.seconds:.0f} s ({st.steps} steps, {st.tokens} tokens"
        f"{resumed})",
        f"- held-out accuracy: before **{pct(st.before)}**, after **{pct(st.after)}**; "
        f"teacher on the held-out sample: {pct(teacher.accuracy if teacher else None)}",
    ]


def _serving_section(sv: ServingSection, job_id: str) -> list[str]:
    target = (
        f" against the {pct(sv.accuracy_target)} target ({'met' if sv.meets_accuracy_target else 'missed'})"
        if sv.accuracy_target
        else ""
    )
    return [
        "## Serving",
        f"- {sv.backend} backend at `{sv.endpoint}` on {sv.server_id}",
        *([f"- clients send `Authorization: Bearer <key>`; `stratos key {job_id}` prints the key"] if sv.auth else []),
        *([f"- engine: {sv.engine_note}"] if sv.engine_note else []),
        f"- time to first token p50 {sv.ttft_p50_ms:.0f} ms; end-to-end p50 {sv.latency_p50_ms:.0f} ms, "
        f"p95 {sv.latency_p95_ms:.0f} ms; with network {sv.total_latency_ms:.0f} ms against the "
        f"{sv.slo_ms:.0f} ms SLO ({'met' if sv.meets_slo else 'missed'})",
        f"- accuracy through the endpoint: {pct(sv.accuracy)}{target}",
    ]


def _timeline_section(spans: list[StageSpan]) -> list[str]:
    """Each stage's start (from the job's submission) and duration; nothing for a report without a timeline."""
    if not spans:
        return []
    origin = spans[0].start
    lines = ["## Timeline", "| stage | starts at | takes |", "| --- | --- | --- |"]
    for span in spans:
        offset = duration((span.start - origin).total_seconds())
        lines.append(f"| {_cell(span.label)} | +{offset} | {duration(span.seconds) if span.seconds else '-'} |")
    return [*lines, ""]


def _cost_section(c: CostBreakdown) -> list[str]:
    return [
        "## Cost",
        "| stage | USD |",
        "| --- | --- |",
        f"| teacher evaluation | {c.teacher_eval_usd:.4f} |",
        f"| data synthesis | {c.data_synth_usd:.4f} |",
        f"| training | {c.training_usd:.4f} |",
        f"| serving (planned hours) | {c.serving_usd:.4f} |",
        f"| **total** | **{c.total_usd:.4f}** of {c.budget_usd:.2f} budget |",
    ]


def _attempts_section(report: JobReport) -> list[str]:
    """Every training attempt, one row each, with the decision that followed it (none for a report without)."""
    if not report.attempts:
        return []
    e = report.escalation
    heading = (
        f"### Attempts (target {pct(e.target)}: {'met' if e.target_met else 'missed'}; "
        f"deployed attempt {e.best_attempt})"
        if e
        else "### Attempts"
    )
    lines = [
        "",
        heading,
        e.reason if e else "",
        "",
        "| attempt | how | student | steps | accuracy | cost USD | seconds | then |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in report.attempts:
        lines.append(
            f"| {a.attempt} | {a.action} | {_cell(a.student)} | {a.start_step}→{a.steps} | "
            f"{pct(a.accuracy_before)}→{pct(a.accuracy)} | {a.cost_usd:.4f} | {a.seconds:.0f} | "
            f"{a.decision.action if a.decision else '-'} |"
        )
    return lines
