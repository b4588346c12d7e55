"""Assembling the job report from the ledger and the deployer's own measurements (no I/O)."""

from __future__ import annotations

from datetime import datetime

from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import DataReady, JobSubmitted, ServerChosen, StudentChosen, TeacherChosen
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import HistoryEntry, JobState
from stratos_shared.report import (
    CostBreakdown,
    JobReport,
    ServedEndpoint,
    ServerSection,
    ServingSection,
    StageSpan,
    TeacherSection,
    multi_objective_score,
)
from stratos_shared.report.model import StageName
from stratos_shared.results import PlacedServer

SECONDS_PER_HOUR = 3600.0


class NotPlacedError(ValueError):
    """A report was asked for a job the ledger never placed (a deployment always follows a placement)."""


def build_report(spec: JobSpec, state: JobState, served: ServedEndpoint, at: datetime) -> JobReport:
    """The report for a job deployed on its placed server, measured as `served`, written at `at`."""
    results = state.results
    if results.server is None or results.training is None:
        raise NotPlacedError(f"job {state.job_id} has no placement or no training result to report on")
    server = results.server
    teacher = results.teacher_eval
    cost = CostBreakdown(
        teacher_eval_usd=teacher.cost_usd if teacher else 0.0,
        data_synth_usd=results.data.cost_usd if results.data else 0.0,
        # Every attempt was paid for, not only the one deployed.
        training_usd=sum(a.cost_usd for a in state.attempts) if state.attempts else results.training.cost_usd,
        serving_usd=spec.constraints.serving_hours * server.cost_per_hour,
        budget_usd=spec.constraints.budget_usd,
    )
    serving = _against_constraints(spec, server, served)
    return JobReport(
        job_id=state.job_id,
        name=spec.name,
        task=spec.task.kind,
        generated_at=at,
        server=ServerSection(**server.model_dump(), **(results.placement.model_dump() if results.placement else {})),
        teacher=TeacherSection(**teacher.model_dump(), accuracy=teacher.chosen_accuracy()) if teacher else None,
        data=results.data,
        student=results.training.model_copy(update={"student": state.student or results.training.student}),
        serving=serving,
        cost=cost,
        score=multi_objective_score(
            serving.accuracy, serving.total_latency_ms, serving.slo_ms, cost.total_usd, cost.budget_usd
        ),
        loss_curve=list(results.loss_curve),
        attempts=list(state.attempts),
        escalation=results.escalation,
        timeline=timeline(state, at),
    )


def _against_constraints(spec: JobSpec, server: PlacedServer, served: ServedEndpoint) -> ServingSection:
    """The deployment's latency (with the users' round trip to the server) and accuracy against the job's asks."""
    total_latency = server.latency_ms + served.latency_p50_ms
    return ServingSection(
        **served.model_dump(),
        network_latency_ms=server.latency_ms,
        total_latency_ms=total_latency,
        slo_ms=spec.constraints.latency_slo_ms,
        meets_slo=total_latency <= spec.constraints.latency_slo_ms,
        accuracy_target=spec.constraints.accuracy_target,
        meets_accuracy_target=served.accuracy >= spec.constraints.accuracy_target,
    )


def _first(history: list[HistoryEntry], kind: type[Event]) -> datetime | None:
    return next((h.at for h in history if h.event_type == kind.__name__), None)


def _span(stage: StageName, label: str, start: datetime | None, end: datetime | None) -> list[StageSpan]:
    """The stage's span, or nothing when either end is unknown."""
    if start is None or end is None or end < start:
        return []
    return [StageSpan(stage=stage, label=label, start=start, end=end)]


def timeline(state: JobState, at: datetime) -> list[StageSpan]:
    """Each stage's span, from the ledger: a stage runs from the event that handed it work to the event it
    published (admission: submitted → first placement; an attempt: the decision that asked for it → its result;
    the deployment: the later of the stop decision and the latest re-plan → `at`). A stage whose events are not in
    the ledger (an entry older than these fields, a history cut at its cap) is left out rather than guessed."""
    h = state.history
    placed, chosen, data, screened = (
        _first(h, kind) for kind in (ServerChosen, TeacherChosen, DataReady, StudentChosen)
    )
    spans = [
        *_span("admission", "admission and placement", _first(h, JobSubmitted), placed),
        *_span("teacher-eval", f"teacher evaluation: {state.teacher or '?'} chosen", placed, chosen),
        *_span("data-synth", f"data synthesis ({state.mode or '?'})", chosen, data),
        *_span("pre-screen", "pre-screen of the students", data, screened),
    ]
    start = screened or data
    for attempt in state.attempts:
        label = f"attempt {attempt.attempt}: {attempt.action} {attempt.student}"
        spans += _span("training", label, start, attempt.trained_at)
        start = (attempt.decision.decided_at if attempt.decision else None) or attempt.trained_at
    replans = [e for e in h if e.event_type == ServerChosen.__name__][1:]
    for moved in replans:
        spans += _span("re-plan", f"re-plan: {moved.summary}"[:100], moved.at, moved.at)
    deploy_from = max((t for t in (start, *(e.at for e in replans)) if t is not None), default=None)
    spans += _span("deployment", f"deployment on {state.server_id}", deploy_from, at)
    return sorted(spans, key=lambda s: s.start)
