"""The job ledger folds events delivered at least once and not always in order: the newest placement stands."""

from __future__ import annotations

from pathlib import Path

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.escalation import decide
from stratos_selector.domain.strategies import Infeasible, select
from stratos_selector.workflow import apply, assignments
from stratos_shared.contracts.events import (
    DataReady,
    DeploymentAssigned,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobSubmitted,
    ModelDeployed,
    ModelTrained,
    ServerChosen,
    TrainingAssigned,
    TrainingProgress,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import JobState

ROOT = Path(__file__).resolve().parents[3]
SPEC = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")


def placements() -> tuple[ServerChosen, ServerChosen]:
    """Revision 1 on one server, revision 2 (a re-plan) on another."""
    servers = generate_catalog(20, seed=3)
    first = select(servers, SPEC)
    assert not isinstance(first, Infeasible)
    second = select(servers, SPEC, exclude={first.server.id})
    assert not isinstance(second, Infeasible)
    return tuple(  # type: ignore[return-value]
        ServerChosen(job_id="j", revision=rev, server=s.server, reason="r", explanation=s.explanation)
        for rev, s in ((1, first), (2, second))
    )


def deployed(revision: int, server_id: str) -> ModelDeployed:
    return ModelDeployed(
        job_id="j",
        server_id=server_id,
        revision=revision,
        endpoint=f"http://127.0.0.1:{8000 + revision}/v1",
        backend="cpu",
        ttft_p50_ms=1.0,
        ttft_p95_ms=1.0,
        latency_p50_ms=1.0,
        latency_p95_ms=1.0,
        accuracy=0.5,
    )


def fold(*events: object) -> JobState:
    """Fold events in order; a JobState first continues from it."""
    state: JobState | None = None
    for event in events:
        if isinstance(event, JobState):
            state = event
            continue
        state = apply(state, event) or state  # type: ignore[arg-type]
    assert state is not None
    return state


def test_an_old_placement_redelivered_after_a_re_plan_does_not_move_the_job_back() -> None:
    """Seen in the fault matrix: the selector died before acking revision 1, its redelivery came after
    revision 2, and the trainer trained on the server that was down."""
    one, two = placements()
    submitted = JobSubmitted(job_id="j", spec=SPEC)
    in_order = fold(submitted, one, two)
    redelivered = fold(submitted, two, one)
    assert (redelivered.server_id, redelivered.server_revision) == (two.server.id, 2)
    assert redelivered.results.server == in_order.results.server
    assert [h.event_type for h in redelivered.history] == ["JobSubmitted", "ServerChosen", "ServerChosen"]
    assert apply(redelivered, one) is None  # and once seen, it is not applied again


def completed(server_id: str, revision: int | None) -> JobCompleted:
    return JobCompleted(job_id="j", report_uri="nats-obj://r", summary={}, server_id=server_id, revision=revision)


def test_an_old_deployment_redelivered_after_a_redeploy_keeps_the_new_endpoint() -> None:
    one, two = placements()
    state = fold(JobSubmitted(job_id="j", spec=SPEC), one, two, deployed(2, two.server.id), deployed(1, one.server.id))
    assert state.endpoint == "http://127.0.0.1:8002/v1"
    assert state.results.deployment is not None and state.results.deployment.revision == 2


def test_a_deployed_job_that_loses_its_server_for_good_is_failed_without_an_endpoint() -> None:
    one, _ = placements()
    lost = JobFailed(job_id="j", stage="placement", reason="server s1 went down and no other server fits: budget")
    done = completed(one.server.id, 1)
    state = fold(JobSubmitted(job_id="j", spec=SPEC), one, deployed(1, one.server.id), done, lost)
    assert (state.status, state.endpoint) == ("failed", None)
    assert state.reason == f"deployment lost: {lost.reason}"


def test_the_first_outcome_stands_for_a_job_that_never_deployed() -> None:
    one, _ = placements()
    failed = JobFailed(job_id="j", stage="training", reason="out of memory", server_id=one.server.id, revision=1)
    state = fold(JobSubmitted(job_id="j", spec=SPEC), one, failed, completed(one.server.id, 1))
    assert (state.status, state.reason) == ("failed", "training: out of memory")


def test_only_the_placed_server_at_its_revision_has_a_say() -> None:
    """What another server's credential (or a worker on the wrong side of a partition) might publish about a job:
    results with no revision, a revision the ledger never issued, another server's name. Each is recorded as
    ignored and changes nothing; the placed server's own results then count as usual."""
    one, _ = placements()
    placed = fold(JobSubmitted(job_id="j", spec=SPEC), one, data_ready())
    me, other = one.server.id, "intruder-1"
    forged = [
        trained(None, me),  # no revision
        trained(7, me),  # a revision far in the future: it would lock the endpoint against the real one
        trained(1, other),
        deployed(1, other),
        deployed(9, me),
        completed(other, 1),
        completed(me, None),
        JobCompleted(job_id="j", report_uri="nats-obj://r", summary={}),  # names no server at all
        JobFailed(job_id="j", stage="training", reason="forged", server_id=other, revision=1),
        JobFailed(job_id="j", stage="training", reason="forged", server_id=me, revision=2),
        TrainingProgress(job_id="j", server_id=other, step=1, total_steps=2, revision=1),
    ]
    after = fold(placed, *forged)
    assert (after.status, after.attempts, after.endpoint, after.results) == ("running", [], None, placed.results)
    assert "training" not in after.progress and after.inputs == placed.inputs
    ignored = [h.summary for h in after.history[len(placed.history) :]]
    assert len(ignored) == len(forged) - 1 and all(s.startswith("ignored (") for s in ignored), ignored
    assert "from intruder-1, but the job is placed on" in ignored[2] and "carries no placement revision" in ignored[0]
    assert "revision 7, but the placement is at revision 1" in ignored[1]
    real = fold(after, trained(1, me))
    assert [a.attempt for a in real.attempts] == [1] and real.results.training is not None


def trained(revision: int | None, server_id: str) -> ModelTrained:
    return ModelTrained(
        job_id="j",
        server_id=server_id,
        student="tiny-1m",
        base_model="tiny:tiny-1m",
        method="lora-sft",
        model_uri="nats-obj://stratos-artifacts/j/model/adapter.tar.gz",
        is_adapter=True,
        accuracy_before=0.0,
        accuracy_after=0.4,
        training_seconds=3.0,
        steps=8,
        tokens=100,
        cost_usd=0.0,
        revision=revision,
    )


def data_ready() -> DataReady:
    return DataReady(
        job_id="j",
        mode="alignment",
        teacher="strong",
        train_uri="nats-obj://stratos-artifacts/j/data/train.jsonl",
        eval_uri="nats-obj://stratos-artifacts/j/data/eval.jsonl",
        asked=10,
        accepted=8,
        acceptance_rate=0.8,
        teacher_tokens=100,
        cost_usd=0.0,
    )


def test_a_fenced_servers_results_are_recorded_but_not_accepted() -> None:
    """A server paused past its job's re-plan resumes and publishes: its revision is older than the job's."""
    one, two = placements()
    state = fold(JobSubmitted(job_id="j", spec=SPEC), one, data_ready(), two)
    stale_progress = TrainingProgress(job_id="j", server_id=one.server.id, step=50, total_steps=100, loss=1.0)
    stale = fold(state, stale_progress, trained(1, one.server.id), deployed(1, one.server.id))
    assert stale.results.training is None and stale.inputs.trained is None and stale.endpoint is None
    assert "training" not in stale.progress, "progress from the server the job left was taken"
    assert [h.summary.startswith(f"ignored (from {one.server.id}") for h in stale.history[-2:]] == [True, True]
    fresh = fold(stale, trained(2, two.server.id))
    assert (
        fresh.results.training is not None
        and fresh.results.training.after == 0.4
        and fresh.inputs.trained is not None
        and fresh.inputs.trained.revision == 2
    )


def test_work_is_assigned_to_the_current_placement_once_per_revision() -> None:
    one, two = placements()
    placed = fold(JobSubmitted(job_id="j", spec=SPEC), one)
    assert assignments(placed) == [], "nothing to train before the data is ready"
    ready = fold(placed, data_ready())
    [train] = assignments(ready)
    assert isinstance(train, TrainingAssigned) and (train.server_id, train.revision) == (one.server.id, 1)
    assert assignments(ready)[0].event_id == train.event_id, "said again, it is a duplicate JetStream drops"
    [moved] = assignments(fold(ready, two))
    assert (moved.server_id, moved.revision) == (two.server.id, 2) and moved.event_id != train.event_id
    undecided = fold(ready, two, trained(2, two.server.id))
    assert assignments(undecided) == [], "the ledger decides on the attempt before it assigns anything"
    no_target = SPEC.model_copy(update={"constraints": SPEC.constraints.model_copy(update={"accuracy_target": 0.0})})
    [deploy] = assignments(fold(undecided, decide(undecided, no_target)))
    assert isinstance(deploy, DeploymentAssigned) and deploy.server_id == two.server.id
    assert deploy.trained.revision == 2
    assert assignments(fold(ready, JobCancelRequested(job_id="j"))) == [], "a cancelled job has no work"
