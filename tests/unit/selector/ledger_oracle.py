"""THE ORACLE: a frozen copy of the ledger fold as it was before issue 31 (`stratos_shared.jobs.apply` and
`stratos_selector.domain.dispatch.assignments` at d26d094), kept only so that
`test_workflow_against_oracle.py` can check the selector's workflow module against it on random event sequences.

Do not change it to follow the workflow: it is the behaviour the workflow must keep. Its one edit from the original
is the state class: `JobState` here keeps the untyped ``inputs: dict[str, dict[str, Any]]`` it wrote (the typed
`WorkInputs` serialises to the same JSON, which is what the test compares).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from stratos_shared import jobs
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    AttemptDecided,
    DataProgress,
    DataReady,
    DeploymentAssigned,
    FromServer,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobSubmitted,
    ModelDeployed,
    ModelTrained,
    ServerChosen,
    StudentChosen,
    TeacherChosen,
    TrainingAssigned,
    TrainingPlan,
    TrainingProgress,
)
from stratos_shared.jobs import (
    MAX_CURVE,
    MAX_HISTORY,
    MAX_SEEN,
    Attempt,
    Decision,
    HistoryEntry,
    Progress,
    best_attempt,
)
from stratos_shared.results import (
    DataResult,
    DeploymentResult,
    EscalationResult,
    PlacedServer,
    TeacherEvalResult,
    TrainingResult,
)


class JobState(jobs.JobState):
    """The ledger entry as the old fold wrote it: ``inputs`` by event name, as published."""

    inputs: dict[str, dict[str, Any]] = Field(default_factory=dict)  # type: ignore[assignment]


def fenced_out(state: JobState, event: Event) -> str | None:
    """Why a worker's event changes nothing (None when it counts): only the server that holds the job's current
    placement, at that revision, has a say. Everything else (a server the job has left, a paused worker that woke up
    on the far side of a partition, a revision the ledger never issued, a result with no revision, another server's
    credential speaking for a job that is not its own) is recorded in the history, marked ignored."""
    if not isinstance(event, FromServer):
        return None  # not a worker's word
    if event.server_id is None:
        # A control service's failure travels on a subject no server may publish on; anything else needs a server.
        return None if event.FROM_CONTROL_TOO else "it names no server"
    if event.server_id != state.server_id:
        return f"from {event.server_id}, but the job is placed on {state.server_id or 'no server'}"
    if event.revision is None:
        return "it carries no placement revision"
    if event.revision != state.server_revision:
        return f"revision {event.revision}, but the placement is at revision {state.server_revision}"
    return None


def summarize(event: Event) -> str:
    """One line saying what `event` did to its job: a history entry, and a line of `stratos logs -f`."""
    match event:
        case JobSubmitted():
            return f"submitted '{event.spec.name}' ({event.spec.task.kind}, {len(event.spec.teachers)} teachers)"
        case JobRejected():
            return f"rejected: {event.reason}"
        case ServerChosen():
            return f"server {event.server.id} (revision {event.revision}): {event.reason}"
        case TeacherChosen():
            unusable = "".join(f"; teacher '{s.name}' unusable: {s.error}" for s in event.scores if s.error)
            return f"teacher {event.teacher}, mode {event.mode}{unusable}"
        case DataProgress():
            return f"data: {event.done}/{event.total} asked, {event.accepted} accepted"
        case TrainingProgress():
            loss = f", loss {event.loss:.3f}" if event.loss is not None else ""
            return f"attempt {event.attempt} training: step {event.step}/{event.total_steps}{loss}"
        case DataReady():
            return f"dataset: {event.accepted}/{event.asked} accepted ({event.acceptance_rate:.0%})"
        case StudentChosen():
            return f"student {event.student} ({event.model})"
        case ModelTrained():
            return (
                f"attempt {event.attempt} trained: accuracy {event.accuracy_before:.0%} -> {event.accuracy_after:.0%}"
            )
        case AttemptDecided():
            return f"after attempt {event.attempt}: {event.action}: {event.reason}"
        case ModelDeployed():
            return f"deployed at {event.endpoint} ({event.backend}), p50 {event.latency_p50_ms:.0f} ms"
        case JobCompleted():
            return "completed"
        case JobFailed():
            return f"failed in {event.stage}: {event.reason}"
        case JobCancelRequested():
            return "cancel requested"
        case _:
            return event.event_type


def _attempt_record(state: JobState, event: ModelTrained) -> Attempt:
    """The attempt `event` reports, with how it came about (the plan the previous decision made)."""
    previous = state.attempt(event.attempt - 1)
    plan = previous.decision.next if previous and previous.decision and previous.decision.next else TrainingPlan()
    return Attempt(
        attempt=event.attempt,
        action=plan.action,
        lineage=plan.lineage,
        student=event.student,
        base_model=event.base_model,
        start_step=event.start_step,
        steps=event.steps,
        accuracy_before=event.accuracy_before,
        accuracy=event.accuracy_after,
        cost_usd=event.cost_usd,
        seconds=event.training_seconds,
        revision=event.revision,
        trained_at=event.occurred_at,
    )


def apply(state: JobState | None, event: Event) -> JobState | None:
    """The state after `event`; None when the event does not concern a job or was already applied."""
    if event.job_id is None:
        return None
    if state is None and not isinstance(event, JobSubmitted):
        return None  # only a valid submission opens an entry: no phantom jobs from stray events or garbage
    if isinstance(event, JobSubmitted) and state is not None and state.submitted_at is not None:
        return None  # the first submission of an id stands; the selector refuses a re-used id
    current = state or JobState(job_id=event.job_id)
    if event.event_id in current.seen:
        return None
    changes: dict[str, Any] = {"updated_at": event.occurred_at}
    progress = dict(current.progress)
    results: dict[str, Any] = {}  # sections of JobResults this event replaces
    terminal = current.status != "running"
    ignored = fenced_out(current, event)
    match event:
        case FromServer() if ignored is not None:
            pass  # fenced: kept in the history, marked ignored
        case JobSubmitted():
            changes |= {"name": event.spec.name, "submitted_at": event.occurred_at}
            if current.stage == "submitted":
                changes["stage"] = "placing"
        case JobRejected() if current.server_revision:
            pass  # a placed job is not rejected by a later submission that re-used its id (history only)
        case JobRejected():
            changes |= {"status": "rejected", "reason": event.reason}
        case ServerChosen():
            if event.server.id not in current.servers:  # issue 26: whose buckets hold the job's artifacts
                changes["servers"] = [*current.servers, event.server.id]
            # At-least-once delivery can bring an older placement after a newer one (a redelivery after a
            # crash): the highest revision stands, or the trainer and deployer would follow a lost server.
            if event.revision >= current.server_revision:
                changes |= {"server_id": event.server.id, "server_revision": event.revision}
                results["server"] = PlacedServer(
                    **event.server.model_dump(), revision=event.revision, reason=event.reason
                )
                results["placement"] = event.explanation
            if current.stage in ("submitted", "placing"):
                changes["stage"] = "teacher-eval"
        case TeacherChosen():
            changes |= {"teacher": event.teacher, "mode": event.mode, "stage": "data-synth"}
            results["teacher"] = {s.name: s.accuracy for s in event.scores if s.error is None}
            results["unusable_teachers"] = {s.name: s.error for s in event.scores if s.error is not None}
            results["teacher_eval"] = TeacherEvalResult(
                teacher=event.teacher, mode=event.mode, tau=event.tau, cost_usd=event.cost_usd, scores=event.scores
            )
        case DataProgress():
            progress["data-synth"] = Progress(done=event.done, total=event.total, detail=f"{event.accepted} accepted")
        case DataReady():
            changes["stage"] = "training"
            changes["inputs"] = {**current.inputs, "DataReady": event.model_dump(mode="json")}
            results["data"] = DataResult(
                accepted=event.accepted,
                asked=event.asked,
                rate=event.acceptance_rate,
                rejected=event.rejected_by_reason,
                cost_usd=event.cost_usd,
                mode=event.mode,
            )
        case StudentChosen():
            changes["student"] = event.student
            results["students"] = list(event.screens)
        case TrainingProgress():
            loss = f"loss {event.loss:.3f}" if event.loss is not None else ""
            detail = f"attempt {event.attempt}, {loss}" if event.attempt > 1 else loss
            progress["training"] = Progress(done=event.step, total=event.total_steps, detail=detail)
            if event.loss is not None:
                curve = [*current.results.loss_curve, (event.step, event.loss)]
                results["loss_curve"] = curve[-MAX_CURVE:]
        case ModelTrained() if current.attempt(event.attempt) is not None:
            pass  # this attempt is already recorded (a retrained duplicate): the first result stands
        case ModelTrained():
            attempts = [*current.attempts, _attempt_record(current, event)]
            changes["attempts"] = attempts
            best = best_attempt(attempts)
            if best.attempt == event.attempt:
                changes |= {"student": event.student}
                changes["inputs"] = {**current.inputs, "ModelTrained": event.model_dump(mode="json")}
                # A 'continue' attempt starts from the one before it: the student's line is what was trained.
                line = [a for a in attempts if a.lineage == best.lineage]
                results["training"] = TrainingResult(
                    before=line[0].accuracy_before,
                    after=event.accuracy_after,
                    cost_usd=sum(a.cost_usd for a in line),
                    seconds=sum(a.seconds for a in line),
                    steps=event.steps,
                    tokens=event.tokens,
                    method=event.method,
                    student=event.student,
                    resumed_from_step=event.resumed_from_step,
                    model_uri=event.model_uri,
                    is_adapter=event.is_adapter,
                    base_model=event.base_model,
                    attempt=event.attempt,
                )
        case AttemptDecided() if (done := current.attempt(event.attempt)) is None or done.decision is not None:
            pass  # no such attempt yet, or already decided: the first decision stands
        case AttemptDecided():
            decision = Decision(
                action=event.action,
                reason=event.reason,
                estimated_cost_usd=event.estimated_cost_usd,
                next=event.next,
                decided_at=event.occurred_at,
            )
            changes["attempts"] = [
                a.model_copy(update={"decision": decision}) if a.attempt == event.attempt else a
                for a in current.attempts
            ]
            changes["stage"] = "deploying" if event.action == "stop" else "training"
            results["escalation"] = EscalationResult(
                target=event.target,
                target_met=event.target_met,
                best_attempt=event.best_attempt,
                best_accuracy=event.best_accuracy,
                spent_usd=event.spent_usd,
                budget_left_usd=event.budget_left_usd,
                last_action=event.action,
                reason=event.reason,
            )
        case ModelDeployed() if event.revision >= (d.revision if (d := current.results.deployment) else 0):
            changes["endpoint"] = event.endpoint
            if event.report_uri is not None:  # issue 26: a redeployment's report, in the new server's bucket
                changes["report_uri"] = event.report_uri
            results["deployment"] = DeploymentResult(
                p50_ms=event.latency_p50_ms,
                p95_ms=event.latency_p95_ms,
                ttft_p50_ms=event.ttft_p50_ms,
                accuracy=event.accuracy,
                backend=event.backend,
                server_id=event.server_id,
                revision=event.revision,
                api_key_uri=event.api_key_uri,
            )
        case JobCompleted():
            changes |= {"status": "completed", "stage": "completed", "report_uri": event.report_uri}
        case JobFailed() if current.status == "completed":
            # A deployed job lost its server with nowhere to go: the deployer tears its endpoint down.
            changes |= {"status": "failed", "reason": f"deployment lost: {event.reason}", "endpoint": None}
        case JobFailed():
            changes |= {"status": "failed", "reason": f"{event.stage}: {event.reason}"}
        case JobCancelRequested():
            if not terminal:
                changes |= {"status": "cancelled", "reason": "cancelled by user"}
            elif current.status == "completed":
                # A completed job is still serving; the deployer tears its endpoint down, so it no longer has one.
                changes |= {"status": "cancelled", "reason": "cancelled by user: deployment stopped", "endpoint": None}
        case _:
            pass
    ends_a_deployment = event.event_type in ("JobCancelRequested", "JobFailed") and current.status == "completed"
    if terminal and "status" in changes and event.event_type != "ModelDeployed" and not ends_a_deployment:
        changes.pop("status")  # the first outcome stands; later events are still recorded
    history = current.history
    if not isinstance(event, (DataProgress, TrainingProgress)):
        summary = summarize(event)
        if ignored is not None:
            summary = f"ignored ({ignored}): {summary}"
        history = [*history, HistoryEntry(at=event.occurred_at, event_type=event.event_type, summary=summary)]
    changes |= {
        "progress": progress,
        "results": current.results.model_copy(update=results) if results else current.results,
        "history": history[-MAX_HISTORY:],
        "seen": [*current.seen, event.event_id][-MAX_SEEN:],
    }
    return current.model_copy(update=changes)


DISPATCHING = frozenset({"ServerChosen", "DataReady", "ModelTrained", "AttemptDecided"})
"""The events after which a job's assignments can change."""


def _training(state: JobState, server: str, revision: int, plan: TrainingPlan) -> TrainingAssigned | None:
    data = state.inputs.get("DataReady")
    if data is None or state.status != "running":
        return None
    parts: tuple[object, ...] = (state.job_id, "assign-train", revision)
    if plan.attempt > 1:
        parts += ("attempt", plan.attempt)
    return TrainingAssigned(
        event_id=stable_id(*parts),
        job_id=state.job_id,
        server_id=server,
        revision=revision,
        data=DataReady.model_validate(data),
        plan=plan,
    )


def assignments(state: JobState) -> list[Event]:
    """The work the job's current placement owes, or nothing (not placed, not ready, undecided, or ended)."""
    if not state.server_id or state.server_revision < 1 or state.status not in ("running", "completed"):
        return []
    server, revision = state.server_id, state.server_revision
    if not state.attempts:
        first = _training(state, server, revision, TrainingPlan())
        return [first] if first else []
    decision = state.attempts[-1].decision
    if decision is None:
        return []  # the ledger decides first (escalation.decide), then assigns what it decided
    if decision.next is not None:
        following = _training(state, server, revision, decision.next)
        return [following] if following else []
    trained = state.inputs.get("ModelTrained")  # the best attempt's
    if trained is None:
        return []
    return [
        DeploymentAssigned(
            event_id=stable_id(state.job_id, "assign-deploy", revision),
            job_id=state.job_id,
            server_id=server,
            revision=revision,
            trained=ModelTrained.model_validate(trained),
        )
    ]
