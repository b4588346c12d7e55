"""`TrainingRun.run`'s steps one at a time, without a broker: an artifact store in a folder, the spec and ledger
buckets as dictionaries, the tiny local model. The whole run over NATS is `tests/nats/test_escalation.py`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import helpers
import pytest

from stratos_shared.artifacts import FileArtifactStore, put_dir
from stratos_shared.bus.names import server_artifacts_bucket
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import DataReady, ModelTrained, StudentChosen, TrainingPlan, TrainingProgress
from stratos_shared.contracts.job import JobSpec
from stratos_shared.errors import Redeliver
from stratos_shared.jobcontext import StageResources
from stratos_shared.jobs import Attempt, JobState
from stratos_shared.layout import Artifact, AttemptArtifacts
from stratos_trainer.domain.checkpoints import Progress, TrainResult
from stratos_trainer.domain.evaluate import EvalResult
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import CheckpointRecord, Start, TrainingRun, Watch, attempt_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
JOB, SERVER = "steps-1", "a10-us-central"


class Bucket:
    """A KV bucket as a dictionary (what `TypedKV.get` answers)."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    async def get(self, key: str) -> tuple[Any, int] | None:
        return (self.values[key], 1) if key in self.values else None


class Fenced:
    """A server agent whose heartbeats stopped getting through: every run it began is fenced."""

    generation = 0

    def stale(self, generation: int) -> bool:
        return True


def spec() -> JobSpec:
    base = JobSpec.from_yaml(EXAMPLES / "math-alignment.yaml")
    small = {"task": base.task.model_copy(update={"size": 60}), "training": base.training.model_copy(update={
        "max_steps": 4, "checkpoint_every_steps": 2, "batch_size": 4})}  # fmt: skip
    return base.model_copy(update=small)


@pytest.fixture
def run(tmp_path: Path) -> TrainingRun:
    settings = TrainerSettings(server_id=SERVER, home=tmp_path / "home", eval_samples=4, max_new_tokens=8)
    resources = StageResources()
    resources.specs.kv = Bucket(**{JOB: spec()})  # type: ignore[assignment]
    resources._artifacts = FileArtifactStore(tmp_path / "artifacts")
    resources._jobs = Bucket(**{JOB: JobState(job_id=JOB, server_id=SERVER, server_revision=1)})  # type: ignore[assignment]
    return TrainingRun(settings, resources, JobSignals())


async def data_ready(run: TrainingRun) -> DataReady:
    records = helpers.records(40, seed=3)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    train_uri = await run.resources.artifacts.put_bytes(JOB, "data/train.jsonl", data)
    return DataReady(
        job_id=JOB,
        mode="alignment",
        teacher="strong",
        train_uri=train_uri,
        eval_uri=train_uri,
        asked=40,
        accepted=40,
        acceptance_rate=1.0,
        teacher_tokens=0,
        cost_usd=0.0,
    )


def watch_for(reports: list[Event], **fields: Any) -> Watch:
    async def report(event: Event) -> None:
        reports.append(event)

    defaults: dict[str, Any] = {"cut_off": lambda: False}
    return Watch(
        job_id=JOB, attempt=1, server_id=SERVER, trainer="t", report=report, loop=asyncio.get_running_loop(),
        **(defaults | fields),
    )  # fmt: skip


def test_an_attempt_trains_up_to_its_plans_steps_else_the_specs() -> None:
    assert attempt_config(spec(), TrainingPlan()).max_steps == 4
    assert attempt_config(spec(), TrainingPlan(attempt=2, max_steps=9)).max_steps == 9


async def test_the_watch_stops_a_run_out_of_its_allowance_or_cut_off() -> None:
    cut = False
    free = watch_for([], cut_off=lambda: cut, price_per_hour=3600.0, wall_before=10.0)  # no allowance: never priced
    assert not free.should_stop()
    cut = True
    assert free.should_stop() and not free.out_of_allowance
    spent = watch_for([], price_per_hour=3600.0, allowance_usd=5.0, wall_before=10.0)  # $1 a second, 10 s spent
    assert spent.should_stop() and spent.out_of_allowance
    unpriced = watch_for([], price_per_hour=0.0, allowance_usd=0.0, wall_before=10.0)  # no price: no cost to stop at
    assert not unpriced.should_stop()


async def test_the_watch_reports_progress_at_most_once_a_second_and_always_the_last_step() -> None:
    reports: list[Event] = []
    watch = watch_for(reports)

    def steps() -> None:  # the training thread
        for step in (1, 2, 10):
            watch.on_progress(Progress(step=step, max_steps=10, loss=1.0, tokens_per_second=5.0, eta_seconds=1.0))

    await asyncio.to_thread(steps)
    await asyncio.sleep(0.05)
    assert [(r.step, r.total_steps) for r in reports if isinstance(r, TrainingProgress)] == [(1, 10), (10, 10)]
    assert watch.planned_steps == 10
    silenced = watch_for(reports := [], cut_off=lambda: True)
    await asyncio.to_thread(silenced.on_progress, Progress(10, 10, None, 1.0, 0.0))
    await asyncio.sleep(0.05)
    assert reports == []


async def test_prepare_fetches_the_data_into_a_fresh_folder(run: TrainingRun) -> None:
    stale = run.settings.home / "trainer" / SERVER / JOB / "left-over"
    stale.parent.mkdir(parents=True)
    stale.write_text("a previous run's file")
    attempt = await run.prepare(await data_ready(run), TrainingPlan(), revision=1)
    assert not stale.exists() and (attempt.workdir / "train.jsonl").exists()
    assert len(attempt.train_records) == 40 and len(attempt.held_out) == 4
    assert attempt.shots == [r["messages"] for r in attempt.train_records[:3]]
    assert {e.id for e in attempt.held_out} <= {e.id for e in attempt.split.eval}
    assert attempt.files == AttemptArtifacts(1, 1)


async def test_the_starting_point_is_its_own_checkpoint_else_the_continued_attempts(run: TrainingRun) -> None:
    store = run.resources.artifacts
    attempt = await run.prepare(await data_ready(run), TrainingPlan(attempt=2, resume_attempt=1), revision=1)
    assert await run.starting_point(attempt) == Start()  # nothing stored: from the base
    checkpoint = attempt.workdir / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "weights").write_text("w")
    for files, step, seconds in ((AttemptArtifacts(1, 1), 30, 12.0), (attempt.files, 35, 3.0)):
        uri = await put_dir(store, JOB, files.checkpoint(1, step), checkpoint)
        record = CheckpointRecord(step=step, uri=uri, wall_seconds=seconds, server_id=SERVER)
        await store.put_bytes(JOB, files.latest, record.model_dump_json().encode())
        start = await run.starting_point(attempt)
        assert start.start_step == 30 and start.checkpoint is not None
        assert (start.checkpoint / "weights").read_text() == "w"
    assert (start.resumed_from_step, start.wall_seconds) == (35, 3.0)  # its own, after a crash, wins


async def test_a_moved_job_resumes_from_the_newest_pointer_in_any_of_its_servers_buckets(run: TrainingRun) -> None:
    """Each server writes only its own bucket: a job placed here (r1), moved to l4 (r2) and back (r3) resumes from
    l4's r2 checkpoint, not from the older one in this server's own bucket, and reuses l4's pre-screen decision."""
    event = await data_ready(run)
    own = run.resources.artifacts.in_bucket(server_artifacts_bucket(SERVER))
    run.resources._artifacts = own
    other = own.in_bucket(server_artifacts_bucket("l4-us-west"))
    attempt = await run.prepare(event, TrainingPlan(), revision=3, servers=(SERVER, "l4-us-west"))
    checkpoint = attempt.workdir / "ckpt"
    checkpoint.mkdir()
    for store, revision, step in ((own, 1, 4), (other, 2, 6)):
        (checkpoint / "weights").write_text(f"r{revision}")
        uri = await put_dir(store, JOB, attempt.files.checkpoint(revision, step), checkpoint)
        record = CheckpointRecord(step=step, uri=uri, wall_seconds=1.0, server_id=SERVER, revision=revision)
        await store.put_bytes(JOB, attempt.files.latest, record.model_dump_json().encode())
    await other.put_bytes(JOB, Artifact.PRESCREEN, b'{"chosen": null, "reason": "decided on l4", "screens": []}')
    start = await run.starting_point(attempt)
    assert start.resumed_from_step == 6 and start.checkpoint is not None
    assert (start.checkpoint / "weights").read_text() == "r2"
    assert (await attempt.written.get_json(Artifact.PRESCREEN))["reason"] == "decided on l4"
    alone = await run.prepare(event, TrainingPlan(), revision=3)  # the ledger names no other server: only its own
    assert (await run.starting_point(alone)).resumed_from_step == 4


async def test_the_baseline_is_the_continued_attempts_else_the_base_evaluated_once(
    run: TrainingRun, base_model: Path
) -> None:
    attempt = await run.prepare(await data_ready(run), TrainingPlan(), revision=1)
    state = JobState(job_id=JOB)
    before = await run.accuracy_before(attempt, state, base_model)
    assert set(before) == {"accuracy", "extractions"} and 0.0 <= before["accuracy"] <= 1.0
    assert await run.accuracy_before(attempt, state, "/no/such/model") == before  # stored: not evaluated again
    continuing = await run.prepare(await data_ready(run), TrainingPlan(attempt=2, resume_attempt=1), revision=1)
    earlier = state.model_copy(
        update={
            "attempts": [
                Attempt(
                    attempt=1,
                    action="first",
                    student="tiny-1m",
                    base_model="tiny:tiny-1m",
                    start_step=0,
                    steps=4,
                    accuracy_before=0.1,
                    accuracy=0.75,
                    cost_usd=0.0,
                    seconds=1.0,
                )
            ]
        }
    )
    assert await run.accuracy_before(continuing, earlier, "/no/such/model") == {"accuracy": 0.75, "extractions": {}}


async def test_train_uploads_checkpoints_and_evaluate_stores_the_model(run: TrainingRun, base_model: Path) -> None:
    attempt = await run.prepare(await data_ready(run), TrainingPlan(), revision=1)
    reports: list[Event] = []
    watch = run.watch(attempt, Start(), 0.0, _collect(reports))
    result = await run.train(attempt, base_model, attempt_config(attempt.spec, attempt.plan), Start(), watch)
    assert isinstance(result, TrainResult) and result.global_step == 4 and not result.stopped_early
    latest = CheckpointRecord.model_validate_json(await run.resources.artifacts.get_bytes(
        run.resources.artifacts.uri_for(JOB, attempt.files.latest)))  # fmt: skip
    assert (latest.step, latest.server_id) == (4, SERVER)
    uploaded = [r.step for r in reports if isinstance(r, TrainingProgress) and r.checkpoint_uri]
    assert uploaded == [2, 4]
    after, model_uri = await run.evaluate(attempt, result)
    assert isinstance(after, EvalResult) and after.n == len(attempt.held_out)
    assert model_uri == run.resources.artifacts.uri_for(JOB, attempt.files.model(False))
    assert await run.resources.artifacts.exists(model_uri)


async def test_a_run_out_of_its_allowance_keeps_what_it_trained(run: TrainingRun, base_model: Path) -> None:
    attempt = await run.prepare(await data_ready(run), TrainingPlan(max_cost_usd=0.0), revision=1)
    watch = run.watch(attempt, Start(), 1.0, _collect([]))
    result = await run.train(attempt, base_model, attempt_config(attempt.spec, attempt.plan), Start(), watch)
    assert isinstance(result, TrainResult) and result.stopped_early and result.global_step < 4


async def test_a_fenced_run_hands_its_job_back_and_a_cancelled_one_ends(run: TrainingRun, base_model: Path) -> None:
    run.signals.agent = Fenced()  # type: ignore[assignment]
    attempt = await run.prepare(await data_ready(run), TrainingPlan(), revision=1)
    watch = run.watch(attempt, Start(), 0.0, _collect([]))
    with pytest.raises(Redeliver, match="cut off"):
        await run.train(attempt, base_model, attempt_config(attempt.spec, attempt.plan), Start(), watch)
    assert not await run.resources.artifacts.exists(run.resources.artifacts.uri_for(JOB, attempt.files.latest))
    run.signals.cancelled.add(JOB)
    assert await run.stopped(attempt) == []
    run.signals.cancelled.clear()
    run.signals.latest_revision[JOB] = 2  # re-planned: the new server has its own assignment
    assert await run.stopped(attempt) == []


async def test_the_announcement_prices_the_attempt_and_names_it_by_attempt(run: TrainingRun, tmp_path: Path) -> None:
    chosen = StudentChosen(job_id=JOB, student="tiny-1m", model="tiny:tiny-1m", threshold=0.0, screens=[])
    result = TrainResult(
        method="sft", output_dir=tmp_path, model_dir=tmp_path, adapter_dir=None, global_step=4, loss_history=[],
        tokens_seen=100, tokens_per_second=1.0, wall_seconds=1.0, stopped_early=False, last_checkpoint=None,
    )  # fmt: skip
    after = EvalResult(accuracy=0.5, n=4)
    ids = set()
    for plan in (TrainingPlan(), TrainingPlan(attempt=2, action="continue", resume_attempt=1)):
        attempt = await run.prepare(await data_ready(run), plan, revision=1)
        trained = run.model_trained(
            attempt, chosen, "sft", Start(start_step=2), result, {"accuracy": 0.25}, after, "file:///m", 1800.0, 2.0
        )
        assert isinstance(trained, ModelTrained)
        assert (trained.cost_usd, trained.attempt, trained.start_step) == (1.0, plan.attempt, 2)
        assert (trained.accuracy_before, trained.accuracy_after, trained.server_id) == (0.25, 0.5, SERVER)
        ids.add(trained.event_id)
    assert len(ids) == 2


def _collect(into: list[Event]) -> Any:
    async def report(event: Event) -> None:
        into.append(event)

    return report
