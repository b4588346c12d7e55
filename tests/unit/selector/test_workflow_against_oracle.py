"""The selector's workflow module folds any event sequence exactly as the ledger fold it replaced.

The oracle is a frozen copy of the old fold and dispatch (`ledger_oracle.py`). Hypothesis draws sequences of one
job's events as the ledger may meet them: in order or not, delivered twice (the same id again), forged (another
server, no revision, a revision never issued), several attempts and decisions, cancels and failures at any point,
a second submission of the id, an event of no job. After every event both folds must agree on whether they wrote,
on the stored entry (its JSON, what ``stratos-jobs`` holds and the CLI reads) and on the work owed.
"""

from __future__ import annotations

from pathlib import Path

import ledger_oracle as oracle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.strategies import Infeasible, select
from stratos_selector.workflow import OWES_WORK, apply, assignments
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    AttemptDecided,
    DataProgress,
    DataReady,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobSubmitted,
    ModelDeployed,
    ModelTrained,
    ServerChosen,
    ServerDown,
    StudentChosen,
    StudentScreen,
    TeacherChosen,
    TeacherScore,
    TrainingPlan,
    TrainingProgress,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import JobState

ROOT = Path(__file__).resolve().parents[3]
SPEC = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
OTHER_SPEC = SPEC.model_copy(update={"name": "the same id, another spec"})
SERVERS = generate_catalog(20, seed=3)
FIRST = select(SERVERS, SPEC)
assert not isinstance(FIRST, Infeasible)
SECOND = select(SERVERS, SPEC, exclude={FIRST.server.id})
assert not isinstance(SECOND, Infeasible)
J = "j"


def ids(kind: str) -> st.SearchStrategy[str]:
    """A few ids per kind of event: drawing one twice is a redelivery (or a forgery re-using an id)."""
    return st.sampled_from([f"{kind}-{n}" for n in range(3)])


# Mostly the first placement's server at its revision (so results count and jobs get far), else forgeries.
servers = st.sampled_from([FIRST.server.id] * 4 + [SECOND.server.id, "intruder-1", None])
revisions = st.sampled_from([1] * 4 + [None, 2, 3])
attempts = st.sampled_from([1, 1, 2, 3])
accuracies = st.sampled_from([0.0, 0.25, 0.5, 0.75])  # few values: ties between attempts happen


@st.composite
def placement(draw: st.DrawFn) -> ServerChosen:
    choice = draw(st.sampled_from([FIRST, SECOND]))
    return ServerChosen(event_id=draw(ids("placed")), job_id=J, revision=draw(st.integers(1, 3)),
                        server=choice.server, reason=draw(st.sampled_from(["initial", "re-plan"])),
                        explanation=choice.explanation)  # fmt: skip


@st.composite
def teacher(draw: st.DrawFn) -> TeacherChosen:
    scores = [
        TeacherScore(name="strong", accuracy=draw(accuracies), ci_low=0.0, ci_high=1.0, graded=10, errors=0,
                     latency_p50_ms=1.0, cost_usd=0.1),
        TeacherScore(name="broken", accuracy=0.0, ci_low=0.0, ci_high=0.0, graded=0, errors=3, latency_p50_ms=0.0,
                     cost_usd=0.0, error=draw(st.sampled_from([None, "timeouts"]))),
    ]  # fmt: skip
    return TeacherChosen(event_id=draw(ids("teacher")), job_id=J, teacher="strong", mode="alignment", tau=0.5,
                         scores=scores, sample_ids=["q1"], cost_usd=0.1)  # fmt: skip


@st.composite
def data(draw: st.DrawFn) -> DataReady | DataProgress:
    if draw(st.booleans()):
        return DataProgress(event_id=draw(ids("data-progress")), job_id=J, done=draw(st.integers(0, 9)), total=9,
                            accepted=draw(st.integers(0, 9)))  # fmt: skip
    return DataReady(event_id=draw(ids("data")), job_id=J, mode="alignment", teacher="strong", train_uri="t",
                     eval_uri="e", asked=10, accepted=draw(st.integers(0, 10)), acceptance_rate=0.5,
                     teacher_tokens=100, cost_usd=0.2)  # fmt: skip


@st.composite
def student(draw: st.DrawFn) -> StudentChosen:
    screens = [StudentScreen(name="tiny-1m", model="tiny:tiny-1m", params=1, screened_accuracy=0.1, passed=True)]
    return StudentChosen(event_id=draw(ids("student")), job_id=J, student="tiny-1m", model="tiny:tiny-1m",
                         threshold=0.0, screens=screens, server_id=draw(servers), revision=draw(revisions))  # fmt: skip


@st.composite
def progress(draw: st.DrawFn) -> TrainingProgress:
    return TrainingProgress(event_id=draw(ids("progress")), job_id=J, server_id=draw(servers) or "intruder-1",
                            revision=draw(revisions), step=draw(st.integers(0, 20)), total_steps=20,
                            loss=draw(st.sampled_from([None, 1.5, 0.5])), attempt=draw(attempts))  # fmt: skip


@st.composite
def trained(draw: st.DrawFn) -> ModelTrained:
    attempt = draw(attempts)
    name = draw(st.sampled_from(["tiny-1m", "tiny-2m"]))
    return ModelTrained(event_id=draw(ids(f"trained-{attempt}")), job_id=J, server_id=draw(servers) or "intruder-1",
                        revision=draw(revisions), attempt=attempt, student=name,
                        base_model="tiny", method="sft", model_uri=f"u{attempt}", is_adapter=False,
                        accuracy_before=draw(accuracies), accuracy_after=draw(accuracies), training_seconds=2.0,
                        steps=20 * attempt, start_step=draw(st.sampled_from([0, 20])), tokens=5,
                        cost_usd=0.01)  # fmt: skip


@st.composite
def decided(draw: st.DrawFn) -> AttemptDecided:
    attempt = draw(attempts)
    action = draw(st.sampled_from(["continue", "next-student", "stop"]))
    plan = None if action == "stop" else TrainingPlan(attempt=attempt + 1, action=action, lineage=attempt + 1)
    return AttemptDecided(event_id=draw(ids(f"decided-{attempt}")), job_id=J, attempt=attempt, action=action,
                          reason="why", target=0.6, target_met=False, best_attempt=1, best_accuracy=0.5,
                          spent_usd=0.3, budget_left_usd=9.0, next=plan)  # fmt: skip


@st.composite
def served(draw: st.DrawFn) -> ModelDeployed | JobCompleted:
    server, revision = draw(servers), draw(revisions)
    if draw(st.booleans()):
        return ModelDeployed(event_id=draw(ids("deployed")), job_id=J, server_id=server or "intruder-1",
                             revision=revision or 1, endpoint=f"http://e{revision}", backend="cpu", ttft_p50_ms=1.0,
                             ttft_p95_ms=1.0, latency_p50_ms=1.0, latency_p95_ms=1.0, accuracy=0.5)  # fmt: skip
    return JobCompleted(event_id=draw(ids("completed")), job_id=J, report_uri=f"r{revision}", server_id=server,
                        revision=revision)  # fmt: skip


@st.composite
def ending(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(["failed", "cancel", "rejected", "submitted", "no job"]))
    if kind == "failed":
        return JobFailed(event_id=draw(ids("failed")), job_id=J, stage=draw(st.sampled_from(["training", "placement"])),
                         reason="broke", server_id=draw(servers), revision=draw(revisions))  # fmt: skip
    if kind == "cancel":
        return JobCancelRequested(event_id=draw(ids("cancel")), job_id=J)
    if kind == "rejected":
        return JobRejected(event_id=draw(ids("rejected")), job_id=J, reason=draw(st.sampled_from(["bad", "worse"])))
    if kind == "submitted":
        return JobSubmitted(event_id=draw(ids("submitted")), job_id=J, spec=draw(st.sampled_from([SPEC, OTHER_SPEC])))
    return ServerDown(event_id=draw(ids("down")), server_id=FIRST.server.id, reason="heartbeat-timeout")


# Endings weigh three times: what an ending does after another (the first outcome stands) needs two of them.
any_event = st.one_of(
    placement(), teacher(), data(), student(), progress(), trained(), decided(), served(), ending(), ending(), ending()
)


def worker(cls: type[ModelTrained] | type[StudentChosen], **fields: object) -> Event:
    return cls(job_id=J, server_id=FIRST.server.id, revision=1, **fields)  # type: ignore[arg-type]


SCREENS = [StudentScreen(name="tiny-1m", model="tiny:tiny-1m", params=1, screened_accuracy=0.1, passed=True)]
TRAINED = {"base_model": "tiny", "method": "sft", "is_adapter": False, "training_seconds": 2.0, "tokens": 5,
           "cost_usd": 0.01, "student": "tiny-1m"}  # fmt: skip
DECIDED = {"reason": "why", "target": 0.6, "target_met": False, "best_attempt": 1, "best_accuracy": 0.5,
           "spent_usd": 0.3, "budget_left_usd": 9.0}  # fmt: skip
HAPPY: list[Event] = [
    ServerChosen(event_id="placed-0", job_id=J, revision=1, server=FIRST.server, reason="initial",
                 explanation=FIRST.explanation),
    DataReady(event_id="data-0", job_id=J, mode="alignment", teacher="strong", train_uri="t", eval_uri="e",
              asked=10, accepted=8, acceptance_rate=0.8, teacher_tokens=100, cost_usd=0.2),
    worker(StudentChosen, event_id="student-0", student="tiny-1m", model="tiny:tiny-1m", threshold=0.0,
           screens=SCREENS),
    worker(ModelTrained, event_id="trained-1-0", attempt=1, model_uri="u1", accuracy_before=0.0,
           accuracy_after=0.25, steps=20, **TRAINED),
    AttemptDecided(event_id="decided-1-0", job_id=J, attempt=1, action="continue", **DECIDED,
                   next=TrainingPlan(attempt=2, action="continue", lineage=1, resume_attempt=1)),
    worker(ModelTrained, event_id="trained-2-0", attempt=2, model_uri="u2", accuracy_before=0.25,
           accuracy_after=0.5, steps=40, start_step=20, **TRAINED),
    AttemptDecided(event_id="decided-2-0", job_id=J, attempt=2, action="stop", **DECIDED),
    ModelDeployed(event_id="deployed-0", job_id=J, server_id=FIRST.server.id, revision=1, endpoint="http://e1",
                  backend="cpu", ttft_p50_ms=1.0, ttft_p95_ms=1.0, latency_p50_ms=1.0, latency_p95_ms=1.0,
                  accuracy=0.5),
    JobCompleted(event_id="completed-0", job_id=J, report_uri="r1", server_id=FIRST.server.id, revision=1),
]  # fmt: skip
"""A whole life on the first placement (two attempts, then served), which `lives` perturbs."""


@st.composite
def lives(draw: st.DrawFn) -> list[Event]:
    """A job's happy life with steps left out, random events (forged, stale, duplicated, ending) slipped in
    anywhere and neighbours swapped; mostly after a submission, sometimes with none (no entry may open)."""
    events = [e for e in HAPPY if draw(st.integers(0, 7))]
    noise = draw(st.lists(any_event, max_size=25)) + draw(st.lists(st.sampled_from(HAPPY), max_size=3))
    for extra in noise:
        events.insert(draw(st.integers(0, len(events))), extra)
    for _ in range(draw(st.integers(0, 3))):
        if len(events) > 1:
            at = draw(st.integers(0, len(events) - 2))
            events[at], events[at + 1] = events[at + 1], events[at]
    opened = draw(st.integers(0, 5)) > 0
    return [JobSubmitted(event_id="submitted-0", job_id=J, spec=SPEC), *events] if opened else events


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lives())
def test_the_workflow_folds_like_the_old_ledger(events: list[Event]) -> None:
    new: JobState | None = None
    old: oracle.JobState | None = None
    for index, event in enumerate(events):
        folded, expected = apply(new, event), oracle.apply(old, event)
        assert (folded is None) == (expected is None), (index, event.event_type)
        new, old = folded or new, expected or old
        assert (new is None) == (old is None)
        if new is None or old is None:
            continue
        assert new.model_dump(mode="json") == old.model_dump(mode="json"), (index, event.event_type)
        assert JobState.model_validate_json(old.model_dump_json()) == new, "an entry the old ledger wrote reads"
        owed = assignments(new) if isinstance(event, OWES_WORK) else []
        expected_owed = oracle.assignments(old) if event.event_type in oracle.DISPATCHING else []
        assert unstamped(owed) == unstamped(expected_owed), (index, event.event_type)


def unstamped(events: list[Event]) -> list[dict[str, object]]:
    """Events as compared: all but the time each was made (now, at each call)."""
    return [e.model_dump(mode="json", exclude={"occurred_at"}) for e in events]
