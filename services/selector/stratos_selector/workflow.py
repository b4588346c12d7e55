"""A job's workflow, as the selector's ledger runs it: how each event folds into the job's state, and what the job
owes next.

Stratos is choreographed (each stage reacts to events), yet one job has one life, and this module tells it top to
bottom: submitted, placed, a teacher chosen, data made, attempts trained and decided, served, completed; failed or
cancelled at any point. The ledger consumer (`handlers.project`) feeds `apply` every job event in stream order and
stores the result in ``stratos-jobs``; `next_events` then says what follows: the decision a trained attempt needs
(`domain.escalation.decide`) or the work the job's placement owes (`assignments`). Both are pure: the one thing
read from outside, the job's spec, comes through the caller (an activity, in Temporal's words).

Events arrive at least once and not always in order, so every step is written for that: an event already applied
changes nothing (each entry remembers the ids it saw), the newest placement stands, the first result of an attempt
and the first decision on it stand, the first outcome stands, and a worker's event counts only from the server that
holds the job's placement at that revision (`fenced_out`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stratos_selector.domain.escalation import decide, needs_decision
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
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import (
    MAX_CURVE,
    MAX_HISTORY,
    MAX_SEEN,
    Attempt,
    Decision,
    HistoryEntry,
    JobState,
    Progress,
    Status,
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

OWES_WORK = (ServerChosen, DataReady, ModelTrained, AttemptDecided)
"""After these, what the job owes can change: a placement takes the work with it, the data starts the first
attempt, a trained attempt needs its decision, a decision names the next attempt or the deployment."""

ENDINGS = (JobCompleted, JobFailed, JobRejected, JobCancelRequested)
"""The events that can give a job its outcome (counted in ``stratos_jobs_finished_total``)."""

SpecReader = Callable[[str], Awaitable[JobSpec | None]]


# The job's life, one event at a time: each step returns the job as the event leaves it.


def submitted(job: JobState, event: JobSubmitted) -> JobState:
    """The entry opens (only a valid submission opens one: `apply`), and the job waits for a server."""
    stage = "placing" if job.stage == "submitted" else job.stage
    return job.model_copy(update={"name": event.spec.name, "submitted_at": event.occurred_at, "stage": stage})


def rejected(job: JobState, event: JobRejected) -> JobState:
    """Admission refused the job. A placed job is not rejected by a later submission that re-used its id."""
    return job if job.server_revision else ended(job, "rejected", event.reason)


def placed(job: JobState, event: ServerChosen) -> JobState:
    """The job has a server. At-least-once delivery can bring an older placement after a newer one (a
    redelivery after a crash): the highest revision stands, or the workers would follow a lost server."""
    stage = "teacher-eval" if job.stage in ("submitted", "placing") else job.stage
    servers = job.servers if event.server.id in job.servers else [*job.servers, event.server.id]
    if event.revision < job.server_revision:
        return job.model_copy(update={"stage": stage, "servers": servers})
    server = PlacedServer(**event.server.model_dump(), revision=event.revision, reason=event.reason)
    results = job.results.model_copy(update={"server": server, "placement": event.explanation})
    update = {
        "server_id": event.server.id,
        "server_revision": event.revision,
        "servers": servers,
        "stage": stage,
        "results": results,
    }
    return job.model_copy(update=update)


def teacher_chosen(job: JobState, event: TeacherChosen) -> JobState:
    """The teacher and the mode are chosen; data synthesis starts."""
    results = job.results.model_copy(
        update={
            "teacher": {s.name: s.accuracy for s in event.scores if s.error is None},
            "unusable_teachers": {s.name: s.error for s in event.scores if s.error is not None},
            "teacher_eval": TeacherEvalResult(
                teacher=event.teacher, mode=event.mode, tau=event.tau, cost_usd=event.cost_usd, scores=event.scores
            ),
        }
    )
    update = {"teacher": event.teacher, "mode": event.mode, "stage": "data-synth", "results": results}
    return job.model_copy(update=update)


def data_progress(job: JobState, event: DataProgress) -> JobState:
    progress = Progress(done=event.done, total=event.total, detail=f"{event.accepted} accepted")
    return job.model_copy(update={"progress": {**job.progress, "data-synth": progress}})


def data_ready(job: JobState, event: DataReady) -> JobState:
    """The training set exists: the first attempt is owed (`assignments`)."""
    data = DataResult(
        accepted=event.accepted,
        asked=event.asked,
        rate=event.acceptance_rate,
        rejected=event.rejected_by_reason,
        cost_usd=event.cost_usd,
        mode=event.mode,
    )
    return job.model_copy(
        update={
            "stage": "training",
            "inputs": job.inputs.model_copy(update={"data": event}),
            "results": job.results.model_copy(update={"data": data}),
        }
    )


def student_chosen(job: JobState, event: StudentChosen) -> JobState:
    """The trainer's pre-screen picked the student (the screens are what `escalation` climbs)."""
    results = job.results.model_copy(update={"students": list(event.screens)})
    return job.model_copy(update={"student": event.student, "results": results})


def training_progress(job: JobState, event: TrainingProgress) -> JobState:
    loss = f"loss {event.loss:.3f}" if event.loss is not None else ""
    detail = f"attempt {event.attempt}, {loss}" if event.attempt > 1 else loss
    progress = {**job.progress, "training": Progress(done=event.step, total=event.total_steps, detail=detail)}
    if event.loss is None:
        return job.model_copy(update={"progress": progress})
    curve = [*job.results.loss_curve, (event.step, event.loss)][-MAX_CURVE:]
    results = job.results.model_copy(update={"loss_curve": curve})
    return job.model_copy(update={"progress": progress, "results": results})


def trained(job: JobState, event: ModelTrained) -> JobState:
    """An attempt is trained: recorded (the first result of an attempt stands), and its decision is owed. The
    best attempt so far is what would be deployed, so it becomes the job's student and training result."""
    if job.attempt(event.attempt) is not None:
        return job
    attempts = [*job.attempts, attempt_record(job, event)]
    best = best_attempt(attempts)
    if best.attempt != event.attempt:
        return job.model_copy(update={"attempts": attempts})
    line = [a for a in attempts if a.lineage == best.lineage]  # a 'continue' starts from the attempt before it
    training = TrainingResult(
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
    return job.model_copy(
        update={
            "attempts": attempts,
            "student": event.student,
            "inputs": job.inputs.model_copy(update={"trained": event}),
            "results": job.results.model_copy(update={"training": training}),
        }
    )


def attempt_record(job: JobState, event: ModelTrained) -> Attempt:
    """The attempt `event` reports, with how it came about (the plan the previous decision made)."""
    previous = job.attempt(event.attempt - 1)
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


def attempt_decided(job: JobState, event: AttemptDecided) -> JobState:
    """What follows an attempt: another attempt (training goes on) or stop (the best attempt is deployed). Only
    for an attempt recorded and not yet decided: the first decision stands."""
    done = job.attempt(event.attempt)
    if done is None or done.decision is not None:
        return job
    decision = Decision(
        action=event.action,
        reason=event.reason,
        estimated_cost_usd=event.estimated_cost_usd,
        next=event.next,
        decided_at=event.occurred_at,
    )
    escalation = EscalationResult(
        target=event.target,
        target_met=event.target_met,
        best_attempt=event.best_attempt,
        best_accuracy=event.best_accuracy,
        spent_usd=event.spent_usd,
        budget_left_usd=event.budget_left_usd,
        last_action=event.action,
        reason=event.reason,
    )
    return job.model_copy(
        update={
            "attempts": [
                a.model_copy(update={"decision": decision}) if a.attempt == event.attempt else a for a in job.attempts
            ],
            "stage": "deploying" if event.action == "stop" else "training",
            "results": job.results.model_copy(update={"escalation": escalation}),
        }
    )


def deployed(job: JobState, event: ModelDeployed) -> JobState:
    """The model serves. A redeployment after a re-plan outranks an older one delivered late."""
    if job.results.deployment and event.revision < job.results.deployment.revision:
        return job
    deployment = DeploymentResult(
        p50_ms=event.latency_p50_ms,
        p95_ms=event.latency_p95_ms,
        ttft_p50_ms=event.ttft_p50_ms,
        accuracy=event.accuracy,
        backend=event.backend,
        server_id=event.server_id,
        revision=event.revision,
        api_key_uri=event.api_key_uri,
    )
    results = job.results.model_copy(update={"deployment": deployment})
    # a redeployment's report is in the new server's bucket
    report = {"report_uri": event.report_uri} if event.report_uri is not None else {}
    return job.model_copy(update={"endpoint": event.endpoint, "results": results, **report})


def completed(job: JobState, event: JobCompleted) -> JobState:
    """The report is written; the job keeps serving (and its server slot) until cancelled or lost."""
    return ended(job, "completed", job.reason).model_copy(update={"stage": "completed", "report_uri": event.report_uri})


def failed(job: JobState, event: JobFailed) -> JobState:
    """A stage gave up. A completed job that fails has lost its deployment (its server went down with nowhere
    to go): the deployer tears the endpoint down."""
    if job.status == "completed":
        reason = f"deployment lost: {event.reason}"
        return job.model_copy(update={"status": "failed", "reason": reason, "endpoint": None})
    return ended(job, "failed", f"{event.stage}: {event.reason}")


def cancel_requested(job: JobState, event: JobCancelRequested) -> JobState:
    """The user cancelled: a running job stops, a completed one stops serving; an ended one stays as it ended."""
    if job.status == "running":
        return job.model_copy(update={"status": "cancelled", "reason": "cancelled by user"})
    if job.status == "completed":
        reason = "cancelled by user: deployment stopped"
        return job.model_copy(update={"status": "cancelled", "reason": reason, "endpoint": None})
    return job


def ended(job: JobState, status: Status, reason: str | None) -> JobState:
    """The job's outcome: the first one stands, though a later event's reason is still recorded."""
    return job.model_copy(update={"status": status if job.status == "running" else job.status, "reason": reason})


def step(job: JobState, event: Event) -> JobState:
    """The job as `event` leaves it: the step of the job's life that the event's class names."""
    match event:
        case JobSubmitted():
            return submitted(job, event)
        case JobRejected():
            return rejected(job, event)
        case ServerChosen():
            return placed(job, event)
        case TeacherChosen():
            return teacher_chosen(job, event)
        case DataProgress():
            return data_progress(job, event)
        case DataReady():
            return data_ready(job, event)
        case StudentChosen():
            return student_chosen(job, event)
        case TrainingProgress():
            return training_progress(job, event)
        case ModelTrained():
            return trained(job, event)
        case AttemptDecided():
            return attempt_decided(job, event)
        case ModelDeployed():
            return deployed(job, event)
        case JobCompleted():
            return completed(job, event)
        case JobFailed():
            return failed(job, event)
        case JobCancelRequested():
            return cancel_requested(job, event)
        case _:
            return job  # nothing of the job's own (a server's news, an assignment)


# The ledger: every job event, in stream order.


def apply(state: JobState | None, event: Event) -> JobState | None:
    """The job's state after `event`; None when the event concerns no job, no admitted job, or was applied."""
    if event.job_id is None:
        return None
    if state is None and not isinstance(event, JobSubmitted):
        return None  # only a valid submission opens an entry: no phantom jobs from stray events or garbage
    if isinstance(event, JobSubmitted) and state is not None and state.submitted_at is not None:
        return None  # the first submission of an id stands; the selector refuses a re-used id
    job = state or JobState(job_id=event.job_id)
    if event.event_id in job.seen:
        return None
    ignored = fenced_out(job, event)
    after = step(job, event) if ignored is None else job
    return recorded(after, event, ignored)


def fenced_out(job: JobState, event: Event) -> str | None:
    """Why a worker's event changes nothing (None when it counts): only the server that holds the job's current
    placement, at that revision, has a say. Everything else (a server the job has left, a paused worker that woke up
    on the far side of a partition, a revision the ledger never issued, a result with no revision, another server's
    credential speaking for a job that is not its own) is recorded in the history, marked ignored."""
    if not isinstance(event, FromServer):
        return None  # not a worker's word
    if event.server_id is None:
        # A control service's failure travels on a subject no server may publish on; anything else needs a server.
        return None if event.FROM_CONTROL_TOO else "it names no server"
    if event.server_id != job.server_id:
        return f"from {event.server_id}, but the job is placed on {job.server_id or 'no server'}"
    if event.revision is None:
        return "it carries no placement revision"
    if event.revision != job.server_revision:
        return f"revision {event.revision}, but the placement is at revision {job.server_revision}"
    return None


def recorded(job: JobState, event: Event, ignored: str | None) -> JobState:
    """`job` with `event` in its history (progress only updates the progress) and among the ids it has seen."""
    history = job.history
    if not isinstance(event, (DataProgress, TrainingProgress)):
        summary = summarize(event) if ignored is None else f"ignored ({ignored}): {summarize(event)}"
        history = [*history, HistoryEntry(at=event.occurred_at, event_type=event.event_type, summary=summary)]
    update = {
        "updated_at": event.occurred_at,
        "history": history[-MAX_HISTORY:],
        "seen": [*job.seen, event.event_id][-MAX_SEEN:],
    }
    return job.model_copy(update=update)


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
            before, after = event.accuracy_before, event.accuracy_after
            return f"attempt {event.attempt} trained: accuracy {before:.0%} -> {after:.0%}"
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


# What the job owes next.


async def next_events(job: JobState, event: Event, spec_of: SpecReader) -> list[Event]:
    """What follows `event` for the job: the decision on an attempt just trained, else the work its placement owes.

    Also said when the fold wrote nothing (a redelivery after a crash between the fold and the publish): every
    event returned has a stable id, so saying it again is a duplicate JetStream drops.
    """
    if not isinstance(event, OWES_WORK):
        return []
    if needs_decision(job):
        # The decision is an event of its own (status, explain, the trace); folded, it dispatches the work.
        spec = await spec_of(job.job_id)
        if spec is None:
            reason = "its spec can no longer be read, so the next attempt cannot be decided"
            return [JobFailed(event_id=stable_id(job.job_id, "failed", "escalation"), job_id=job.job_id,
                              stage="escalation", reason=reason)]  # fmt: skip
        return [decide(job, spec)]
    return assignments(job)


def assignments(job: JobState) -> list[Event]:
    """The work the job's current placement owes, or nothing (not placed, not ready, undecided, or ended).

    The first attempt once the data is ready, the attempt the last decision asked for, and serving the best attempt
    once the decision is to stop. Each assignment's id is (job, kind, revision, attempt), so saying it again after
    every fold publishes a duplicate JetStream drops, and a re-plan (a new revision) assigns the same work again to
    the new server: an escalation resumes, not restarts.
    """
    if not job.server_id or job.server_revision < 1 or job.status not in ("running", "completed"):
        return []
    if not job.attempts:
        return training(job, TrainingPlan())
    decision = job.attempts[-1].decision
    if decision is None:
        return []  # the ledger decides first (escalation.decide), then assigns what it decided
    if decision.next is not None:
        return training(job, decision.next)
    if job.inputs.trained is None:
        return []
    deploy = DeploymentAssigned(
        event_id=stable_id(job.job_id, "assign-deploy", job.server_revision),
        job_id=job.job_id,
        server_id=job.server_id,
        revision=job.server_revision,
        trained=job.inputs.trained,
    )
    return [deploy]


def training(job: JobState, plan: TrainingPlan) -> list[Event]:
    """The training attempt `plan` on the job's placement, once the data is ready and while the job runs."""
    if job.inputs.data is None or job.status != "running" or job.server_id is None:
        return []
    parts: tuple[object, ...] = (job.job_id, "assign-train", job.server_revision)
    if plan.attempt > 1:
        parts += ("attempt", plan.attempt)
    assign = TrainingAssigned(
        event_id=stable_id(*parts),
        job_id=job.job_id,
        server_id=job.server_id,
        revision=job.server_revision,
        data=job.inputs.data,
        plan=plan,
    )
    return [assign]
