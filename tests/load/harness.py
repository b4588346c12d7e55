"""Many concurrent jobs through the real inventory, selector, teacher-eval and data-synth (teacher simulator),
with the trainer and deployer replaced by TEST DOUBLES; shared by tests/load and bench/load.py.

What it measures and checks: every job reaches exactly one outcome (none lost), no stage's
output is published twice for a job (none duplicated), and no server ever holds more jobs
than its capacity, judged on every revision of the placements bucket a KV watcher sees,
not on samples. Each job has its own task seed, so teacher answers are really asked for
(the response cache cannot serve one job from another's answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import yaml
from nats.aio.msg import Msg

from stratos_data_synth.main import build as build_data_synth
from stratos_data_synth.settings import DataSynthSettings
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.admission import task_problem
from stratos_selector.main import build as build_selector
from stratos_selector.placements import ServerLoad
from stratos_selector.settings import SelectorSettings
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET, PLACEMENTS_BUCKET
from stratos_shared.contracts.events import JobCancelRequested, JobSubmitted
from stratos_shared.contracts.job import EscalationSpec, JobSpec, TeacherSpec
from stratos_shared.contracts.servers import ServerSpec
from stratos_shared.jobs import JobState
from stratos_shared.settings import StratosSettings
from stratos_shared.teacher.simulator import ModelSpec, SimulatorConfig, running_simulator
from stratos_teacher_eval.main import build as build_teacher_eval
from stratos_teacher_eval.settings import TeacherEvalSettings
from tests.load.doubles import DeployerDouble, TrainerDouble
from tests.nats.services import running

ROOT = Path(__file__).parents[2]
TERMINAL = ("JobCompleted", "JobFailed", "JobRejected")
STAGE_OUTPUTS = ("ServerChosen", "TeacherChosen", "DataReady", "StudentChosen", "ModelTrained", "ModelDeployed")
"""Events a stage publishes once per job; a second publish means the stage ran twice."""


@dataclass(frozen=True)
class LoadConfig:
    jobs: int
    servers: int = 40
    slack: float = 1.25
    """Server slots per job: enough for every job to be placed at once (the selector rejects when all are full)."""
    questions: int = 16
    """Task size per job (examples generated, about 70% asked to the teacher during synthesis)."""
    eval_samples: int = 3
    replicas: int = 4
    """Trainer and deployer doubles each, on one durable consumer apiece (as N trainer processes would be)."""
    timeout_s: float = 300.0


@dataclass
class LoadReport:
    jobs: int
    completed: int
    failed: int
    rejected: int
    lost: int
    duplicated: int
    duplicate_runs: int
    max_load: int
    capacity: int
    over_capacity: list[str]
    loads_observed: int
    slots_held: int
    """Slots taken once every job is done: a completed job's deployment keeps its slot."""
    slots_left_after_cancel: int
    ledger_completed: int
    wall_s: float
    latencies_s: list[float]
    reasons: list[str] = field(default_factory=list)
    published_twice: dict[str, int] = field(default_factory=dict)
    """Event type: jobs for which it was published more than once (JetStream drops the copy; the work was redone)."""

    stages_done_s: dict[str, float] = field(default_factory=dict)
    """Seconds from the first submission to the last publish of each stage's output (where the time goes)."""

    @property
    def throughput(self) -> float:
        return self.completed / self.wall_s if self.wall_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def table(self) -> str:
        rows = [
            ("jobs", f"{self.jobs}"),
            ("completed", f"{self.completed}"),
            ("failed / rejected", f"{self.failed} / {self.rejected}"),
            ("lost", f"{self.lost}"),
            ("duplicated (stage output published twice)", f"{self.duplicated} {self.published_twice or ''}".strip()),
            ("duplicate side effects (double ran twice)", f"{self.duplicate_runs}"),
            ("max server load / capacity", f"{self.max_load} / {self.capacity} ({self.loads_observed} KV revisions)"),
            ("servers ever over capacity", f"{len(self.over_capacity)}"),
            ("slots held by deployments at the end", f"{self.slots_held}"),
            ("slots left after cancelling every job", f"{self.slots_left_after_cancel}"),
            ("ledger shows completed", f"{self.ledger_completed}"),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("throughput", f"{self.throughput:.1f} jobs/s"),
            (
                "job latency p50 / p99 / max",
                f"{self.percentile(50):.1f} / {self.percentile(99):.1f} / {self.percentile(100):.1f} s",
            ),
        ]
        done = ", ".join(f"{t} {self.stages_done_s[t]:.0f}" for t in STAGE_OUTPUTS if t in self.stages_done_s)
        rows.append(("last output of each stage at (s)", done))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


def catalog(config: LoadConfig) -> list[ServerSpec]:
    """Identical GPUs with spread cost and latency (a real Pareto front), enough slots for every job."""
    per_server = max(1, math.ceil(config.jobs * config.slack / config.servers))
    return [
        ServerSpec(
            id=f"load-{i:03d}",
            gpu_model="A100-80G",
            gpu_count=1,
            gpu_memory_gb=80,
            cost_per_hour=round(1.0 + (i % 10) * 0.2, 2),
            region="local",
            latency_ms=float(5 + (i * 7) % 50),
            capacity=per_server,
        )
        for i in range(config.servers)
    ]


def job_spec(index: int, config: LoadConfig, base_url: str) -> JobSpec:
    """A tiny math job with its own task seed, one simulated teacher and a one-record minimum dataset."""
    base = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    teacher = TeacherSpec(name="sim", base_url=base_url, model="sim-load")
    seed = index
    while True:
        spec = base.model_copy(
            update={
                "name": f"load-{index}",
                "teachers": [teacher],
                "escalation": EscalationSpec(max_attempts=1),  # one attempt: not what this test is about
                "task": base.task.model_copy(update={"size": config.questions, "seed": seed, "eval_fraction": 0.3}),
                "distillation": base.distillation.model_copy(
                    update={"eval_samples": config.eval_samples, "samples_per_question": 1, "min_dataset_size": 1}
                ),
            }
        )
        if task_problem(spec) is None:  # a 16-example task can, rarely, hash every example into one split
            return spec
        seed += 100_000


@dataclass
class Observed:
    """What a core subscription to every event saw: publishes per (job, type) and when each job ended."""

    published: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    ended_at: dict[str, float] = field(default_factory=dict)
    outcome: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    expected: int = 0
    last_at: dict[str, float] = field(default_factory=dict)
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, msg: Msg) -> None:
        try:
            body: dict[str, Any] = json.loads(msg.data)
        except ValueError:
            return
        job_id, event_type = body.get("job_id"), body.get("event_type")
        if not isinstance(job_id, str) or not isinstance(event_type, str):
            return
        if event_type == "ServerChosen" and body.get("revision") != 1:
            event_type = "ServerChosen(re-plan)"
        self.published[job_id][event_type] += 1
        self.last_at[event_type] = time.monotonic()
        if event_type in TERMINAL and job_id not in self.ended_at:
            self.ended_at[job_id] = time.monotonic()
            self.outcome[job_id] = event_type
            if "reason" in body:
                self.reasons[job_id] = str(body["reason"])
            if len(self.ended_at) >= self.expected:
                self.all_ended.set()


@dataclass
class CapacityWatch:
    """Every revision of every ``server.*`` placement key, checked against the server's capacity."""

    capacity: dict[str, int]
    max_load: int = 0
    revisions: int = 0
    over: set[str] = field(default_factory=set)
    current: dict[str, int] = field(default_factory=dict)

    def see(self, key: str, value: bytes | None) -> None:
        if not value:
            return
        load = ServerLoad.model_validate_json(value)
        self.revisions += 1
        self.current[load.server_id] = len(load.jobs)
        self.max_load = max(self.max_load, len(load.jobs))
        if len(load.jobs) > self.capacity.get(load.server_id, 0) or len(set(load.jobs)) != len(load.jobs):
            self.over.add(load.server_id)


async def run_load(config: LoadConfig, nats_url: str, home: Path) -> LoadReport:
    """Submit `config.jobs` jobs at once, wait for every outcome, and report what happened."""
    servers = catalog(config)
    catalog_file = home / "servers.yaml"
    home.mkdir(parents=True, exist_ok=True)
    catalog_file.write_text(yaml.safe_dump({"servers": [s.model_dump() for s in servers]}))
    base: dict[str, Any] = {"nats_url": nats_url, "home": home, "ack_wait_s": 10.0}
    sim_config = SimulatorConfig(seed=1, models={"sim-load": ModelSpec(accuracy={"math": 0.9})})
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_infrastructure(js)
    observed = Observed(expected=config.jobs)
    watch = CapacityWatch({s.id: s.capacity for s in servers})
    await nc.subscribe("stratos.evt.>", cb=observed.on_message)
    placements = await js.key_value(PLACEMENTS_BUCKET)
    watcher = await placements.watch("server.>")

    async def follow_loads() -> None:
        async for entry in watcher:
            if entry is not None:
                watch.see(entry.key, entry.value)

    follower = asyncio.ensure_future(follow_loads())
    trained: Counter[str] = Counter()
    deployed: Counter[str] = Counter()
    trainers = [TrainerDouble(StratosSettings(**base), trained) for _ in range(config.replicas)]
    deployers = [DeployerDouble(StratosSettings(**base), deployed) for _ in range(config.replicas)]
    try:
        with running_simulator(sim_config) as sim:
            specs = [job_spec(i, config, sim.base_url) for i in range(config.jobs)]
            runtimes = [
                build_inventory(InventorySettings(**base, catalog=catalog_file)),
                # the doubles stand in for every server's workers and send no heartbeats
                build_selector(SelectorSettings(**base, require_workers=False)),
                build_teacher_eval(TeacherEvalSettings(**base, teacher_timeout_s=10.0)),
                build_data_synth(DataSynthSettings(**base, progress_every=1000, teacher_timeout_s=10.0)),
                *(double.runtime for double in trainers),
                *(double.runtime for double in deployers),
            ]
            async with running(*runtimes):
                await wait_for_inventory(nats_url, len(servers))
                job_ids = [f"load-{i:04d}" for i in range(config.jobs)]
                submitted_at: dict[str, float] = {}
                started = time.monotonic()

                async def submit(job_id: str, spec: JobSpec) -> None:
                    event = JobSubmitted(job_id=job_id, spec=spec, submitted_by="load-test")
                    submitted_at[job_id] = time.monotonic()
                    await js.publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})

                await asyncio.gather(*(submit(j, s) for j, s in zip(job_ids, specs, strict=True)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(observed.all_ended.wait(), config.timeout_s)
                wall = (max(observed.ended_at.values(), default=started)) - started
                ledger_completed = await ledger_outcomes(nc, job_ids, deadline=time.monotonic() + 60)
                loads = TypedKV(placements, ServerLoad)
                # A completed job keeps its slot (its deployment serves there) until it is cancelled.
                held = await slots_taken(loads)
                for job_id in job_ids:
                    cancel = JobCancelRequested(job_id=job_id)
                    await js.publish(cancel.SUBJECT, cancel.to_bytes(), headers={"Nats-Msg-Id": cancel.event_id})
                left = await slots_taken(loads, until=0, deadline=time.monotonic() + 60)
                await asyncio.sleep(0.5)  # the watcher catching up with the last releases
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
        await nc.drain()

    outcomes = Counter(observed.outcome.get(j, "lost") for j in job_ids)
    twice = Counter(t for j in job_ids for t in (*STAGE_OUTPUTS, *TERMINAL) if observed.published[j][t] > 1)
    duplicated = sum(
        1
        for j in job_ids
        if any(observed.published[j][t] > 1 for t in (*STAGE_OUTPUTS, *TERMINAL))
        or sum(observed.published[j][t] for t in TERMINAL) > 1
    )
    runs = [*trained.values(), *deployed.values()]
    return LoadReport(
        jobs=len(job_ids),
        completed=outcomes["JobCompleted"],
        failed=outcomes["JobFailed"],
        rejected=outcomes["JobRejected"],
        lost=outcomes["lost"],
        duplicated=duplicated,
        duplicate_runs=sum(1 for r in runs if r > 1),
        max_load=watch.max_load,
        capacity=max(watch.capacity.values()),
        over_capacity=sorted(watch.over),
        loads_observed=watch.revisions,
        slots_held=held,
        slots_left_after_cancel=left,
        ledger_completed=ledger_completed,
        wall_s=wall,
        latencies_s=[observed.ended_at[j] - submitted_at[j] for j in job_ids if j in observed.ended_at],
        reasons=sorted({observed.reasons[j] for j in job_ids if j in observed.reasons})[:5],
        published_twice=dict(twice),
        stages_done_s={t: observed.last_at[t] - started for t in STAGE_OUTPUTS if t in observed.last_at},
    )


async def wait_for_inventory(nats_url: str, servers: int, timeout_s: float = 30.0) -> None:
    """Submit only once the inventory has registered every server (as `stratos up` does)."""
    from stratos_shared.bus.names import SERVERS_BUCKET

    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(SERVERS_BUCKET)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if len(await kv.keys()) >= servers:
                    return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the inventory did not register {servers} servers within {timeout_s:g} s")
    finally:
        await nc.drain()


async def ledger_outcomes(nc: nats.NATS, job_ids: list[str], deadline: float) -> int:
    """How many jobs the ledger shows as completed, once it has caught up (or the deadline passed)."""
    jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
    completed = 0
    while True:
        states = await asyncio.gather(*(jobs.get(j) for j in job_ids))
        completed = sum(1 for s in states if s is not None and s[0].status == "completed")
        finished = sum(1 for s in states if s is not None and s[0].status != "running")
        if finished == len(job_ids) or time.monotonic() > deadline:
            return completed
        await asyncio.sleep(0.2)


async def slots_taken(loads: TypedKV[ServerLoad], until: int | None = None, deadline: float = 0.0) -> int:
    """Server slots held now, or once they are down to `until` (the selector catching up) or the deadline passed."""
    while True:
        taken = sum(len(v.jobs) for v in (await loads.items(prefix="server.")).values())
        if until is None or taken <= until or time.monotonic() > deadline:
            return taken
        await asyncio.sleep(0.2)
