"""Rich renderings of job state for `stratos status`, `watch` and `jobs`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from stratos_shared.jobs import STAGES, JobState

STATUS_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "rejected": "red", "cancelled": "yellow"}


def stage_table(state: JobState) -> Table:
    """One row per pipeline stage: done, current (with a progress bar), or pending."""
    table = Table(title=f"{state.name or state.job_id}  [{STATUS_STYLE.get(state.status, '')}]{state.status}", box=None)
    table.add_column("stage")
    table.add_column("state")
    table.add_column("progress", width=34)
    current = STAGES.index(state.stage) if state.stage in STAGES else 0
    for index, stage in enumerate(STAGES):
        if index < current or state.status == "completed":
            mark: RenderableType = Text("done", style="green")
        elif index == current and state.status == "running":
            mark = Text("running", style="cyan")
        elif index == current:
            mark = Text(state.status, style=STATUS_STYLE.get(state.status, ""))
        else:
            mark = Text("pending", style="dim")
        progress = state.progress.get(stage)
        bar: RenderableType = ""
        if progress and progress.total:
            bar = Group(
                ProgressBar(total=progress.total, completed=progress.done, width=30),
                Text(f"{progress.done}/{progress.total} {progress.detail}", style="dim"),
            )
        table.add_row(stage, mark, bar)
    return table


def details(state: JobState) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Any]] = [
        ("job", state.job_id),
        ("server", f"{state.server_id} (revision {state.server_revision})" if state.server_id else "-"),
        ("teacher", f"{state.teacher} ({state.mode})" if state.teacher else "-"),
        ("student", state.student or "-"),
        ("endpoint", _endpoint(state)),
        ("report", state.report_uri or "-"),
    ]
    for name, why in state.results.unusable_teachers.items():
        rows.append((f"teacher {name}", Text(f"unusable: {why}", style="yellow")))
    if state.reason:
        rows.append(("reason", Text(state.reason, style="red")))
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def _endpoint(state: JobState) -> str:
    if state.endpoint is None:
        return "-"
    keyed = state.results.deployment is not None and state.results.deployment.api_key_uri is not None
    return f"{state.endpoint} (key: stratos key {state.job_id})" if keyed else state.endpoint


def history(state: JobState, last: int = 12) -> Table:
    table = Table(title="events", box=None)
    table.add_column("time", style="dim")
    table.add_column("event")
    table.add_column("summary")
    for entry in state.history[-last:]:
        table.add_row(entry.at.strftime("%H:%M:%S"), entry.event_type, entry.summary)
    return table


def attempts_table(state: JobState) -> Table:
    """One row per training attempt and what was decided after it (the escalation toward the target)."""
    target = state.results.escalation.target if state.results.escalation else None
    title = f"training attempts (target {target:.0%})" if target else "training attempts"
    table = Table(title=title, box=None)
    for column in ("attempt", "how", "student", "steps", "accuracy", "cost USD", "then", "why"):
        table.add_column(column)
    for a in state.attempts:
        decision = a.decision
        table.add_row(
            str(a.attempt),
            a.action,
            a.student,
            f"{a.start_step}->{a.steps}",
            f"{a.accuracy_before:.0%} -> {a.accuracy:.0%}",
            f"{a.cost_usd:.4f}",
            decision.action if decision else "deciding",
            Text(decision.reason if decision else "", style="dim"),
        )
    return table


def job_view(state: JobState) -> Group:
    parts: list[RenderableType] = [stage_table(state), details(state)]
    if state.attempts:
        parts.append(attempts_table(state))
    return Group(*parts, history(state))


def newest_first(states: list[JobState]) -> list[JobState]:
    """Jobs by their last change, newest first (`stratos jobs` and its JSON list the same order)."""
    return sorted(
        states, key=lambda s: s.updated_at or s.submitted_at or datetime.min.replace(tzinfo=UTC), reverse=True
    )


def jobs_table(states: list[JobState]) -> Table:
    table = Table(title="jobs")
    for column in ("job", "name", "status", "stage", "server", "updated"):
        table.add_column(column)
    for state in newest_first(states):
        table.add_row(
            state.job_id,
            state.name,
            Text(state.status, style=STATUS_STYLE.get(state.status, "")),
            state.stage,
            state.server_id or "-",
            state.updated_at.strftime("%Y-%m-%d %H:%M:%S") if state.updated_at else "-",
        )
    return table
