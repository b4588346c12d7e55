"""One training attempt of a job on this trainer: pre-screen, resume, train, evaluate, upload.

Training runs in a worker thread (TRL is synchronous); checkpoints are uploaded
to the artifact store as they are written, so any trainer on any machine can
resume the attempt after a re-plan or a crash, losing at most one checkpoint
interval of work. A job has one attempt unless it misses its accuracy target and
the ledger asks for another (`TrainingPlan`): continue from an attempt's final
checkpoint, or train the next larger student.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from opentelemetry import trace
from pydantic import BaseModel

from stratos_shared.artifacts import get_dir, get_file, put_dir
from stratos_shared.bus.handler import Redeliver
from stratos_shared.bus.names import server_token
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    DataReady,
    JobFailed,
    ModelTrained,
    StudentChosen,
    StudentScreen,
    TrainingPlan,
    TrainingProgress,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import Split, StageResources, control_uri, split_task, task_of
from stratos_shared.jobs import JobState
from stratos_shared.layout import Artifact, AttemptArtifacts, ServerArtifacts
from stratos_shared.metrics import training_tokens_per_s
from stratos_shared.models import resolve_model
from stratos_shared.tasks import Example, Grade, Task
from stratos_trainer.domain.checkpoints import Progress, TrainResult
from stratos_trainer.domain.config import PrescreenConfig, TrainingConfig
from stratos_trainer.domain.data import grpo_dataset, read_jsonl, sft_dataset
from stratos_trainer.domain.evaluate import EvalResult, evaluate_path
from stratos_trainer.domain.grpo import train_grpo
from stratos_trainer.domain.prescreen import prescreen
from stratos_trainer.domain.sft import train_sft
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings

log = logging.getLogger("stratos.trainer")
tracer = trace.get_tracer("stratos.trainer")

Publish = Callable[[Event], Coroutine[Any, Any, None]]
PROGRESS_EVERY_S = 1.0


class CheckpointRecord(BaseModel):
    """The newest uploaded checkpoint of a job (``checkpoints/latest.json``)."""

    step: int
    uri: str
    wall_seconds: float
    server_id: str
    revision: int = 0
    """The placement revision it was written under: of the pointers in several servers' buckets, the one with the
    highest (revision, step) is the newest (0: written before pointers carried it)."""

    @classmethod
    def newest(cls, copies: list[Any]) -> CheckpointRecord | None:
        records = [cls.model_validate(copy) for copy in copies]
        return max(records, key=lambda r: (r.revision, r.step), default=None)


class Graded:
    """Grades by example id, so the training code can stay task-agnostic (its 'answer' is our id)."""

    def __init__(self, task: Task, examples: list[Example]) -> None:
        self.task = task
        self.by_id = {e.id: e for e in examples}

    def __call__(self, output: str, example_id: str) -> Grade:
        return self.task.grade(output, self.by_id[example_id])


def training_config(spec: JobSpec) -> TrainingConfig:
    training = spec.training
    config = TrainingConfig(
        method=training.method,
        checkpoint_interval=training.checkpoint_every_steps,
        packing=training.packing,
        warm_start_steps=training.warm_start_steps,
    )
    if training.epochs is not None:
        config.epochs = training.epochs
    if training.max_steps is not None:
        config.max_steps = training.max_steps
    if training.learning_rate is not None:
        config.learning_rate = training.learning_rate
    if training.batch_size is not None:
        config.batch_size = training.batch_size
    return config


def attempt_config(spec: JobSpec, plan: TrainingPlan) -> TrainingConfig:
    """The job's training configuration for one attempt: the plan's steps, when it names them, override the spec's."""
    config = training_config(spec)
    if plan.max_steps is not None:
        config.max_steps = plan.max_steps
    return config


WARM_START_MODEL = Artifact.WARM_START_MODEL
WARM_START_RECORD = Artifact.WARM_START_RECORD


@dataclass(frozen=True)
class Start:
    """Where an attempt's training starts: a checkpoint to resume (its own, or the attempt it continues)."""

    checkpoint: Path | None = None
    start_step: int = 0
    """The step the attempt began at (a 'continue' attempt: where the continued one ended)."""
    resumed_from_step: int = 0
    """The attempt's own checkpoint it resumed after a crash or re-plan (0: none)."""
    wall_seconds: float = 0.0
    """This attempt's training time before the resume."""


@dataclass(frozen=True)
class TrainingAttempt:
    """What every step of one training attempt reads: the assignment, the job's task and data, where it works."""

    event: DataReady
    plan: TrainingPlan
    revision: int
    """The placement revision it was assigned under: the fencing token of every write."""
    generation: int
    """`JobSignals.generation` when it began: a stop signalled later concerns this attempt."""
    spec: JobSpec
    task: Task
    split: Split
    held_out: list[Example]
    """The held-out examples it is evaluated on (before and after), at most `eval_samples`."""
    workdir: Path
    written: ServerArtifacts
    """What this job's servers wrote (this one into its own bucket): its decisions, baselines and checkpoints."""
    train_records: list[dict[str, Any]]
    shots: list[list[dict[str, str]]]
    """Few-shot conversations for the pre-screen (the verified traces for GRPO, when there are any)."""

    @property
    def job_id(self) -> str:
        return self.event.job_id

    @property
    def files(self) -> AttemptArtifacts:
        return AttemptArtifacts(self.plan.attempt, self.plan.lineage)

    def items(self) -> list[tuple[list[dict[str, str]], str]]:
        """The held-out prompts, graded by example id (see `Graded`)."""
        return [(self.task.student_prompt(e), e.id) for e in self.held_out]


@dataclass
class Watch:
    """The training thread's view of one attempt: whether to stop (moved, cancelled, fenced or out of its cost
    allowance) and its progress reports, at most one a second. Its clock is the attempt's training time."""

    job_id: str
    attempt: int
    server_id: str
    trainer: str
    report: Publish
    loop: asyncio.AbstractEventLoop
    cut_off: Callable[[], bool]
    """Whether the job was cancelled, moved or fenced on this server (`JobSignals.must_stop`)."""
    price_per_hour: float = 0.0
    allowance_usd: float | None = None
    wall_before: float = 0.0
    """Training seconds the attempt spent before this run (it resumed)."""
    t0: float = field(default_factory=time.monotonic)
    last_progress: float = 0.0
    planned_steps: int = 0
    """Known from the first step's progress report; checkpoints come after it."""
    out_of_allowance: bool = False

    def restart_clock(self) -> None:
        """Count from now (the warm start is priced apart, from its own record)."""
        self.t0 = time.monotonic()

    def wall_seconds(self) -> float:
        return self.wall_before + (time.monotonic() - self.t0)

    def should_stop(self) -> bool:
        if self.allowance_usd is not None and self.price_per_hour > 0:
            spent = self.wall_seconds() / 3600 * self.price_per_hour
            self.out_of_allowance = self.out_of_allowance or spent >= self.allowance_usd
        return self.out_of_allowance or self.cut_off()

    def on_progress(self, progress: Progress) -> None:
        self.planned_steps = progress.max_steps
        if self.should_stop():
            return  # moved, cancelled or fenced: nothing more is said about this run
        if time.monotonic() - self.last_progress < PROGRESS_EVERY_S and progress.step < progress.max_steps:
            return
        self.last_progress = time.monotonic()
        training_tokens_per_s.record(progress.tokens_per_second)
        message = TrainingProgress(
            job_id=self.job_id,
            server_id=self.server_id,
            step=progress.step,
            total_steps=progress.max_steps,
            loss=progress.loss,
            tokens_per_s=progress.tokens_per_second,
            eta_s=progress.eta_seconds,
            trainer=self.trainer,
            attempt=self.attempt,
        )
        asyncio.run_coroutine_threadsafe(self.report(message), self.loop)


class TrainingRun:
    """Trains one job; `run` returns the events to publish when it is done."""

    def __init__(self, settings: TrainerSettings, resources: StageResources, signals: JobSignals) -> None:
        self.settings = settings
        self.resources = resources
        self.signals = signals

    async def _put_json(self, job_id: str, name: str, value: dict[str, Any]) -> str:
        return await self.resources.artifacts.put_bytes(job_id, name, json.dumps(value).encode())

    async def choose_student(self, attempt: TrainingAttempt) -> tuple[StudentChosen | None, str]:
        """Pre-screen the candidates once per job (the decision is stored, so a resumed job reuses it)."""
        event, spec, task, held_out, shots = attempt.event, attempt.spec, attempt.task, attempt.held_out, attempt.shots
        stored = await attempt.written.get_json(Artifact.PRESCREEN)
        if stored is None:
            paths = {s.name: await asyncio.to_thread(resolve_model, s.model) for s in spec.students}
            config = PrescreenConfig(
                k_shots=self.settings.prescreen_shots,
                n_eval=self.settings.prescreen_items,
                threshold=spec.distillation.prescreen_threshold,
                tolerance=self.settings.prescreen_tolerance,
                max_new_tokens=self.settings.max_new_tokens,
                seed=spec.task.seed,
            )
            items = [(task.student_prompt(e), e.id) for e in held_out]
            with tracer.start_as_current_span("trainer.prescreen", attributes={"job.id": event.job_id}):
                result = await asyncio.to_thread(
                    prescreen, list(paths.values()), shots, items, Graded(task, held_out), config
                )
            by_path = {path: name for name, path in paths.items()}
            screens = [
                StudentScreen(
                    name=by_path[s.path],
                    model=next(x.model for x in spec.students if x.name == by_path[s.path]),
                    params=s.num_parameters,
                    screened_accuracy=s.accuracy,
                    passed=s in result.passed,
                ).model_dump(mode="json")
                for s in result.scores
            ]
            stored = {
                "chosen": by_path[result.chosen.path] if result.chosen else None,
                "reason": result.reason,
                "screens": screens,
            }
            await self._put_json(event.job_id, Artifact.PRESCREEN, stored)
        if stored["chosen"] is None:
            return None, str(stored["reason"])
        student = next(s for s in spec.students if s.name == stored["chosen"])
        return (
            StudentChosen(
                event_id=stable_id(event.job_id, "student-chosen"),
                job_id=event.job_id,
                student=student.name,
                model=student.model,
                threshold=spec.distillation.prescreen_threshold,
                screens=[StudentScreen.model_validate(s) for s in stored["screens"]],
            ),
            str(stored["reason"]),
        )

    async def _warm_start(
        self, attempt: TrainingAttempt, base_path: str | Path, config: TrainingConfig, watch: Watch
    ) -> Path | JobFailed | None:
        """The GRPO cold start: full SFT on the job's verified traces; None when stopped (a re-plan, a cancel).

        Run once per student line and kept in the artifact store: GRPO's checkpoints are taken on top of it, so
        a resumed run needs it again. Stopped part-way, it is redone from the base (it is the short phase).
        """
        store, job_id, files, workdir = self.resources.artifacts, attempt.job_id, attempt.files, attempt.workdir
        done_uri = await attempt.written.find(files.warm_start_model)
        if done_uri is not None:
            return await get_dir(store, done_uri, workdir / "warm-start")
        traces_uri = control_uri(store, job_id, Artifact.TRACES)
        traces = (
            read_jsonl(await get_file(store, traces_uri, workdir / "traces.jsonl"))
            if await store.exists(traces_uri)
            else []
        )
        if not traces:
            return JobFailed(
                event_id=stable_id(job_id, "failed", "warm-start"),
                job_id=job_id,
                stage="training",
                reason="training.warm_start_steps is set, but data-synth kept no verified traces to start GRPO from",
            )
        sft = config.warm_start_config()
        with tracer.start_as_current_span(
            "trainer.warm_start",
            attributes={"job.id": job_id, "training.steps": sft.max_steps, "data.records": len(traces)},
        ):
            result = await asyncio.to_thread(
                train_sft,
                base_path,
                sft_dataset(traces),
                sft,
                workdir / "warm-run",
                should_stop=watch.should_stop,
                progress=watch.on_progress,
            )
        if result.stopped_early:
            return None
        await put_dir(store, job_id, files.warm_start_model, result.model_dir)
        await self._put_json(
            job_id, files.warm_start_record, {"seconds": result.wall_seconds, "steps": result.global_step}
        )
        log.info("job %s: warm start done (%d SFT steps on %d traces)", job_id, result.global_step, len(traces))
        return result.model_dir

    async def still_mine(self, job_id: str, revision: int, generation: int) -> bool:
        """The fence, checked before every write another owner could see: this server still holds the job.

        Fresh from the ledger (the placement revision is the fencing token), and not across a gap in this
        process's heartbeats. A write that races a re-plan after this check is still refused by the ledger,
        which ignores a ModelTrained older than the job's placement.
        """
        if self.signals.must_stop(job_id, revision, generation) and job_id not in self.signals.cancelled:
            return False
        state = await self.resources.job_state(job_id)
        return state is not None and state.server_revision == revision and state.server_id == self.settings.server_id

    async def run(
        self,
        event: DataReady,
        state: JobState,
        publish: Publish,
        revision: int,
        plan: TrainingPlan | None = None,
        report: Publish | None = None,
    ) -> list[Event]:
        """Train one attempt; `publish` says what must be said (the student chosen), `report` (best effort,
        default `publish`) the progress. The steps, each a method: `prepare`, `student`, `accuracy_before`,
        `starting_point`, `train`, `evaluate`, then the fence and `model_trained` (the announcement)."""
        attempt = await self.prepare(event, plan or TrainingPlan(), revision, tuple(state.servers))
        chosen = await self.student(attempt, publish)
        if isinstance(chosen, JobFailed):
            return [chosen]
        base_path: str | Path = await asyncio.to_thread(resolve_model, chosen.model)
        before = await self.accuracy_before(attempt, state, base_path)
        start = await self.starting_point(attempt)
        watch = self.watch(attempt, start, state.results.price_per_hour, report or publish)
        config = attempt_config(attempt.spec, attempt.plan)
        trained = await self.train(attempt, base_path, config, start, watch)
        if not isinstance(trained, TrainResult):
            return trained
        after, model_uri = await self.evaluate(attempt, trained)
        seconds = start.wall_seconds + trained.wall_seconds + await self._warm_start_seconds(attempt, config)
        if not await self.still_mine(attempt.job_id, attempt.revision, attempt.generation):
            log.info("job %s: trained, but revision %d is stale: not announcing it", attempt.job_id, attempt.revision)
            return []
        return [
            self.model_trained(
                attempt, chosen, config.method, start, trained, before, after, model_uri, seconds, watch.price_per_hour
            )
        ]

    async def prepare(
        self, event: DataReady, plan: TrainingPlan, revision: int, servers: tuple[str, ...] = ()
    ) -> TrainingAttempt:
        """The job's spec, task and split, a fresh working folder, and the training data fetched into it; what the
        job's `servers` (the ledger's, first placement first) wrote is read from their buckets."""
        spec = await self.resources.specs.get(event.job_id)
        task = await task_of(event.job_id, spec.task, self.resources.artifacts, self.settings.task_cache_dir())
        split = split_task(task, spec.task)
        generation = self.signals.generation()
        # Per server: a stale trainer elsewhere on this host must not wipe the new owner's working files.
        workdir = self.settings.home / "trainer" / server_token(self.settings.server_id) / event.job_id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        store = self.resources.artifacts
        train_records = read_jsonl(await get_file(store, event.train_uri, workdir / "train.jsonl"))
        shots_source = train_records
        if spec.training.method == "grpo":
            traces_uri = control_uri(store, event.job_id, Artifact.TRACES)
            if await store.exists(traces_uri):
                shots_source = read_jsonl(await get_file(store, traces_uri, workdir / "traces.jsonl"))
        return TrainingAttempt(
            event=event,
            plan=plan,
            revision=revision,
            generation=generation,
            spec=spec,
            task=task,
            split=split,
            held_out=split.eval[: self.settings.eval_samples],
            workdir=workdir,
            written=ServerArtifacts(store, event.job_id, servers),
            train_records=train_records,
            shots=[r["messages"] for r in shots_source[: self.settings.prescreen_shots] if "messages" in r],
        )

    async def student(self, attempt: TrainingAttempt, publish: Publish) -> StudentChosen | JobFailed:
        """The first attempt's student is the pre-screen's choice (published here); a later attempt names its own."""
        event, plan, spec = attempt.event, attempt.plan, attempt.spec
        if plan.student is None:
            chosen, reason = await self.choose_student(attempt)
            if chosen is None:
                return JobFailed(
                    event_id=stable_id(event.job_id, "failed", "prescreen"),
                    job_id=event.job_id,
                    stage="prescreen",
                    reason=f"no candidate student is capable enough: {reason}; {await self._relax(attempt)}",
                )
            await publish(chosen)
            return chosen
        student = next((s for s in spec.students if s.name == plan.student), None)
        if student is None:
            return JobFailed(
                event_id=stable_id(event.job_id, "failed", "attempt", plan.attempt),
                job_id=event.job_id,
                stage="training",
                reason=f"attempt {plan.attempt} names student {plan.student!r}, which the spec does not list",
            )
        return StudentChosen(
            job_id=event.job_id,
            student=student.name,
            model=student.model,
            threshold=spec.distillation.prescreen_threshold,
            screens=[],
        )

    async def _relax(self, attempt: TrainingAttempt) -> str:
        """Which constraint to relax, and by how much, when the pre-screen dropped every candidate."""
        stored = await attempt.written.get_json(Artifact.PRESCREEN) or {}
        screens = [StudentScreen.model_validate(s) for s in stored.get("screens", [])]
        if not screens:
            return "add a student to the spec"
        best = max(screens, key=lambda s: (s.screened_accuracy, -s.params))
        return (
            f"the best, {best.name}, screened {best.screened_accuracy:.0%}: lower distillation.prescreen_threshold "
            f"to {best.screened_accuracy:.2f} or below, or add a larger student"
        )

    async def accuracy_before(self, attempt: TrainingAttempt, state: JobState, base_path: str | Path) -> dict[str, Any]:
        """Where the attempt starts from: the attempt it continues, else the base (evaluated once per line)."""
        plan, files = attempt.plan, attempt.files
        continued = state.attempt(plan.resume_attempt) if plan.resume_attempt else None
        if continued is not None:
            return {"accuracy": continued.accuracy, "extractions": {}}
        before = await attempt.written.get_json(files.baseline)
        if before is None:
            baseline = await asyncio.to_thread(
                evaluate_path,
                base_path,
                attempt.items(),
                Graded(attempt.task, attempt.held_out),
                max_new_tokens=self.settings.max_new_tokens,
            )
            before = {"accuracy": baseline.accuracy, "extractions": baseline.extraction_counts()}
            await self._put_json(attempt.job_id, files.baseline, before)
        return before

    async def starting_point(self, attempt: TrainingAttempt) -> Start:
        """Resume the attempt's own newest checkpoint; else, continuing, the final one of the attempt continued."""
        store, job_id, plan, workdir = self.resources.artifacts, attempt.job_id, attempt.plan, attempt.workdir
        # Each server that trained the attempt points at its own newest checkpoint: the highest revision's is newest.
        latest = CheckpointRecord.newest(await attempt.written.every_json(attempt.files.latest))
        continued = (
            CheckpointRecord.newest(
                await attempt.written.every_json(AttemptArtifacts(plan.resume_attempt, plan.lineage).latest)
            )
            if plan.resume_attempt
            else None
        )
        start_step = continued.step if continued else 0
        if latest is not None:
            path = await get_dir(store, latest.uri, workdir / "resume" / f"checkpoint-{latest.step}")
            log.info("job %s attempt %d resumes from step %d (%s)", job_id, plan.attempt, latest.step, latest.server_id)
            return Start(path, start_step, latest.step, latest.wall_seconds)
        if continued is not None:
            record = continued
            path = await get_dir(store, record.uri, workdir / "continue" / f"checkpoint-{record.step}")
            log.info("job %s attempt %d continues from step %d", job_id, plan.attempt, record.step)
            return Start(path, start_step)
        return Start()

    def watch(self, attempt: TrainingAttempt, start: Start, price_per_hour: float, report: Publish) -> Watch:
        """The attempt's stop rule and progress reports, for the training thread; the clock starts now."""
        return Watch(
            job_id=attempt.job_id,
            attempt=attempt.plan.attempt,
            server_id=self.settings.server_id,
            trainer=self.settings.instance,
            report=report,
            loop=asyncio.get_running_loop(),
            cut_off=partial(self.signals.must_stop, attempt.job_id, attempt.revision, attempt.generation),
            price_per_hour=price_per_hour,
            allowance_usd=attempt.plan.max_cost_usd,
            wall_before=start.wall_seconds,
        )

    async def train(
        self, attempt: TrainingAttempt, base_path: str | Path, config: TrainingConfig, start: Start, watch: Watch
    ) -> TrainResult | list[Event]:
        """The warm start when GRPO asks for one, then the training itself; the events to publish instead of a
        result when it cannot train (no traces to warm-start from) or was stopped before its end."""
        if config.method == "grpo" and config.warm_start_steps:
            warm = await self._warm_start(attempt, base_path, config, watch)
            if isinstance(warm, JobFailed):
                return [warm]
            if warm is None:
                return await self.stopped(attempt)
            base_path = warm
        watch.restart_clock()
        result = await self._fit(attempt, base_path, config, start, watch)
        if result.stopped_early:
            if not watch.out_of_allowance or watch.cut_off():
                return await self.stopped(attempt)
            # Stopped by its allowance, not cut off: what it trained so far is the attempt's result.
            log.info(
                "job %s attempt %d: allowance spent at step %d",
                attempt.job_id,
                attempt.plan.attempt,
                result.global_step,
            )
        return result

    async def _fit(
        self, attempt: TrainingAttempt, base_path: str | Path, config: TrainingConfig, start: Start, watch: Watch
    ) -> TrainResult:
        """Run the training loop in a worker thread, its checkpoints uploaded as they are written."""
        sink = CheckpointUploads(self, attempt, watch)
        with tracer.start_as_current_span(
            "trainer.train",
            attributes={
                "job.id": attempt.job_id,
                "server.id": self.settings.server_id,
                "training.method": config.method,
                "training.attempt": attempt.plan.attempt,
                "training.resumed_from_step": start.resumed_from_step or start.start_step,
                "data.records": len(attempt.train_records),
            },
        ) as span:
            train_fn: Callable[..., TrainResult]
            if config.method == "grpo":
                # grpo_dataset takes prompts (what data-synth writes) or SFT records; rewards grade by id (train split)
                records = [{**r, "answer": r["id"]} for r in attempt.train_records]
                grader = Graded(attempt.task, list(attempt.split.train))
                dataset, train_fn = grpo_dataset(records), partial(train_grpo, grader=grader)
            else:
                dataset, train_fn = sft_dataset(attempt.train_records), train_sft
            result = await asyncio.to_thread(
                train_fn,
                base_path,
                dataset,
                cfg=config,
                output_dir=attempt.workdir / "run",
                resume_from=start.checkpoint,
                sink=sink,
                should_stop=watch.should_stop,
                progress=watch.on_progress,
            )
            span.set_attributes({"training.steps": result.global_step, "training.tokens": result.tokens_seen})
        return result

    async def upload_checkpoint(self, attempt: TrainingAttempt, watch: Watch, step: int, path: Path) -> None:
        """Store one checkpoint and point `latest.json` at it, unless the job moved: then the new owner's
        checkpoints are the ones to resume from, not ours."""
        job_id, revision = attempt.job_id, attempt.revision
        if not await self.still_mine(job_id, revision, attempt.generation):
            log.info("job %s: not uploading checkpoint %d, revision %d is stale", job_id, step, revision)
            return
        # The revision in the name: a stale owner can never overwrite the new owner's files.
        uri = await put_dir(self.resources.artifacts, job_id, attempt.files.checkpoint(revision, step), path)
        record = CheckpointRecord(
            step=step, uri=uri, wall_seconds=watch.wall_seconds(), server_id=self.settings.server_id, revision=revision
        )
        await self._put_json(job_id, attempt.files.latest, record.model_dump())
        await watch.report(
            TrainingProgress(
                job_id=job_id,
                server_id=self.settings.server_id,
                step=step,
                total_steps=max(step, watch.planned_steps),
                checkpoint_uri=uri,
                trainer=self.settings.instance,
                attempt=attempt.plan.attempt,
            )
        )

    async def stopped(self, attempt: TrainingAttempt) -> list[Event]:
        """Stopped early: cancelled or moved (ack: the new server has its own assignment), or fenced while still
        ours (hand it back, to resume once this process is connected again)."""
        job_id, revision, server_id = attempt.job_id, attempt.revision, self.settings.server_id
        if job_id in self.signals.cancelled:
            return []
        now = await self.resources.job_state(job_id)
        moved = self.signals.moved(job_id, revision) or now is None or now.server_revision > revision
        if moved or (now is not None and now.server_id != server_id):
            log.info("job %s: stopped; it is no longer this server's (revision %d)", job_id, revision)
            return []
        raise Redeliver(f"job {job_id} stopped on {server_id} (cut off); resuming from its checkpoint")

    async def evaluate(self, attempt: TrainingAttempt, result: TrainResult) -> tuple[EvalResult, str]:
        """The trained model's held-out accuracy, and where it is stored (the adapter alone for LoRA)."""
        after = await asyncio.to_thread(
            evaluate_path,
            result.model_dir,
            attempt.items(),
            Graded(attempt.task, attempt.held_out),
            max_new_tokens=self.settings.max_new_tokens,
        )
        model_uri = await put_dir(
            self.resources.artifacts,
            attempt.job_id,
            attempt.files.model(result.adapter_dir is not None),
            result.adapter_dir if result.adapter_dir is not None else result.model_dir,
        )
        return after, model_uri

    async def _warm_start_seconds(self, attempt: TrainingAttempt, config: TrainingConfig) -> float:
        """The warm start's training time, charged to the first attempt of its line (a continue reuses it)."""
        if not config.warm_start_steps or attempt.plan.action == "continue":
            return 0.0
        record = await attempt.written.get_json(attempt.files.warm_start_record)
        return float((record or {}).get("seconds", 0.0))

    def model_trained(
        self,
        attempt: TrainingAttempt,
        chosen: StudentChosen,
        method: str,
        start: Start,
        result: TrainResult,
        before: dict[str, Any],
        after: EvalResult,
        model_uri: str,
        seconds: float,
        price_per_hour: float,
    ) -> ModelTrained:
        """The attempt's announcement; its id is (job, revision[, attempt]), so one said twice is a duplicate."""
        plan, revision = attempt.plan, attempt.revision
        id_parts: tuple[object, ...] = (attempt.job_id, "trained", revision)
        if plan.attempt > 1:
            id_parts += ("attempt", plan.attempt)
        return ModelTrained(
            event_id=stable_id(*id_parts),
            job_id=attempt.job_id,
            server_id=self.settings.server_id,
            student=chosen.student,
            base_model=chosen.model,
            method=method,
            model_uri=model_uri,
            is_adapter=result.adapter_dir is not None,
            accuracy_before=float(before["accuracy"]),
            accuracy_after=after.accuracy,
            extractions_before=dict(before.get("extractions", {})),
            extractions_after=after.extraction_counts(),
            training_seconds=seconds,
            steps=result.global_step,
            tokens=result.tokens_seen,
            resumed_from_step=start.resumed_from_step,
            cost_usd=seconds / 3600 * price_per_hour,
            trainer=self.settings.instance,
            revision=revision,
            attempt=plan.attempt,
            start_step=start.start_step,
        )


class CheckpointUploads:
    """The training loop's checkpoint sink: each checkpoint is uploaded on the event loop before training goes on,
    so a resume elsewhere loses at most one checkpoint interval."""

    def __init__(self, run: TrainingRun, attempt: TrainingAttempt, watch: Watch) -> None:
        self.run, self.attempt, self.watch = run, attempt, watch

    def on_checkpoint(self, step: int, path: Path) -> None:
        upload = self.run.upload_checkpoint(self.attempt, self.watch, step, path)
        asyncio.run_coroutine_threadsafe(upload, self.watch.loop).result(timeout=600)
