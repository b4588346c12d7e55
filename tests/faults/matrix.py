"""The kill -9 matrix: SIGKILL a service while a job is in a given stage, restart it, check what survived.

A `Fault` is (service, stage, job). `FaultRun.run` submits the jobs, waits until
each fault's job is in its stage, SIGKILLs and relaunches the service, waits
for every job to finish, then checks each job against the stream and the
teacher's request log:

- completed: one JobCompleted in the stream, no JobFailed, the ledger says completed;
- events lost: a stage event missing from the stream;
- duplicate side effects: a stage event stored twice for one revision, a training
  run completed twice, more than one model server for a job, or a teacher request
  sent again that was not in flight when its client died (the teacher cache is
  written as each answer arrives, so only requests in flight may be re-sent).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from stratos_cli.client import wait_for_workers, wait_until_ready
from stratos_cli.stack import WORKERS
from stratos_selector.placements import JobPlacement, job_key
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import EVENTS_STREAM, JOBS_BUCKET, PLACEMENTS_BUCKET
from stratos_shared.contracts.events import JobCancelRequested, JobSubmitted, ServerDownRequested, ServerUpRequested
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.embedded import NatsServerProcess, start_cluster
from stratos_shared.jobs import JobState
from stratos_shared.teacher.simulator import ModelSpec, SimulatorConfig
from tests.faults.stack import (
    ROOT,
    SERVERS,
    Published,
    ServiceSet,
    connect,
    poll,
    replicated_infrastructure,
    services,
    serving_pids,
    stream_events,
    watch_published,
)
from tests.faults.teacher import GatedTeacher, Hold, gated_teacher

SERVICES = ("inventory", "selector", "teacher-eval", "data-synth", "trainer", "deployer")
STAGES = ("placement", "teacher-eval", "data-synth", "training", "deploy", "completed")
"""Where a job can be when a fault hits; `completed` is after JobCompleted (the deployment is live)."""
BROKER_FAULTS = ("nats", "server-down", "server-kill")
"""Besides the services: kill -9 the nats-server and restart it on its store; drain the job's server (an
operator's `server down`); SIGKILL every process of the job's server and say nothing (noticed from silence)."""
HOME_STAGE = {
    "inventory": "placement",
    "selector": "placement",
    "teacher-eval": "teacher-eval",
    "data-synth": "data-synth",
    "trainer": "training",
    "deployer": "deploy",
}
STAGE_OUTPUT = {
    "placement": "ServerChosen",
    "teacher-eval": "TeacherChosen",
    "data-synth": "DataReady",
    "training": "ModelTrained",
    "deploy": "ModelDeployed",
    "completed": "ServerDown",
}
REQUIRED: tuple[str, ...] = (
    "JobSubmitted",
    "ServerChosen",
    "TeacherChosen",
    "DataReady",
    "StudentChosen",
    "ModelTrained",
)
REQUIRED += ("ModelDeployed", "JobCompleted")
ONCE_PER_REVISION = ("ServerChosen", "ModelDeployed")
ONCE = ("JobSubmitted", "TeacherChosen", "DataReady", "StudentChosen", "ModelTrained", "JobCompleted", "JobFailed")
TEACHER_CALLERS = ("teacher-eval", "data-synth")
HOLD_AFTER = {"teacher-eval": 8, "data-synth": 20}
"""Requests answered (and cached) before the rest of a stage is held: a redo must not ask these again."""

CHECKPOINT_EVERY = 2
ENV = {
    "STRATOS_ACK_WAIT_S": "5",
    "STRATOS_EVAL_SAMPLES": "4",
    "STRATOS_PRESCREEN_ITEMS": "2",
    "STRATOS_MAX_NEW_TOKENS": "24",
    "STRATOS_PROBE_REQUESTS": "2",
    "STRATOS_ACCURACY_SAMPLES": "4",
    "STRATOS_MAX_TOKENS": "24",
    "STRATOS_TEACHER_CONCURRENCY": "4",
    "STRATOS_LOG_FORMAT": "text",
    "OMP_NUM_THREADS": "1",
}
"""Small stages: a few held-out items, short generations, four teacher requests in flight, a 5 s lease."""


def teacher_models(job_id: str) -> dict[str, str]:
    """Each job asks its own simulated models, so every teacher request can be traced to its job."""
    return {"strong": f"sim-strong-{job_id}", "weak": f"sim-weak-{job_id}"}


def simulator_config(job_ids: list[str]) -> SimulatorConfig:
    models: dict[str, ModelSpec] = {}
    for job_id in job_ids:
        names = teacher_models(job_id)
        models[names["strong"]] = ModelSpec(accuracy={"math": 0.9})
        models[names["weak"]] = ModelSpec(accuracy={"math": 0.3})
    return SimulatorConfig(seed=5, models=models)


def tiny_job(job_id: str, teacher_url: str, seed: int = 7) -> JobSpec:
    """The example math job at the smallest size that still runs every stage (tiny-1m student, 8 steps)."""
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    models = teacher_models(job_id)
    return spec.model_copy(
        update={
            "name": f"faults-{job_id}",
            "teachers": [
                t.model_copy(update={"base_url": teacher_url, "model": models[t.name], "api_key_ref": None})
                for t in spec.teachers
            ],
            "students": spec.students[:1],
            "escalation": EscalationSpec(max_attempts=1),  # one attempt: not what this test is about
            "task": spec.task.model_copy(update={"size": 100, "seed": seed, "generator": {"max_steps": 1}}),
            "training": spec.training.model_copy(
                update={"max_steps": 8, "batch_size": 2, "checkpoint_every_steps": CHECKPOINT_EVERY}
            ),
            "distillation": spec.distillation.model_copy(update={"eval_samples": 12, "min_dataset_size": 10}),
        }
    )


@dataclass(frozen=True)
class Fault:
    service: str
    stage: str
    job_id: str


def default_faults(job_id: str = "kill-1") -> list[Fault]:
    """Each service killed once, in the stage where it works, all on one job (the CI size)."""
    return [Fault(service, HOME_STAGE[service], job_id) for service in SERVICES]


def default_run() -> list[Fault]:
    """The CI size: the six kills on one job; a nats-server kill -9 while a second job trains; a third
    job's server marked down before training (it is re-planned and trained elsewhere)."""
    return [*default_faults(), Fault("nats", "training", "nats-1"), Fault("server-down", "data-synth", "down-1")]


def server_kill_round() -> list[Fault]:
    """Every process of the job's server SIGKILLed at each stage it can reach (from placement to serving)."""
    return [Fault("server-kill", stage, f"dead-{stage}") for stage in STAGES]


def full_rounds() -> list[list[Fault]]:
    """Each service killed at every stage, one job per (service, stage): one round of five jobs per service;
    then the broker and server faults at every stage, and a server lost after deployment."""
    rounds = [[Fault(service, stage, f"{service}-{stage}") for stage in STAGES[:-1]] for service in SERVICES]
    rounds.append([Fault("nats", stage, f"nats-{stage}") for stage in STAGES[:-1]])
    rounds.append([Fault("server-down", stage, f"down-{stage}") for stage in STAGES])
    rounds.append(server_kill_round())
    return rounds


@dataclass
class JobOutcome:
    job_id: str
    completed: bool
    events_lost: list[str]
    duplicates: list[str]
    teacher_requests: int
    teacher_resent: int
    training_runs: int
    model_servers: int
    resumed_from_step: int
    timeline: str = ""


@dataclass
class FaultOutcome:
    service: str
    stage: str
    job_id: str
    hit: bool
    """The stage's output event was not yet published when the service died."""
    seconds: float


@dataclass
class MatrixReport:
    faults: list[FaultOutcome] = field(default_factory=list)
    jobs: list[JobOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, int]:
        return {
            "faults_injected": len(self.faults),
            "stage_hit": sum(f.hit for f in self.faults),
            "jobs": len(self.jobs),
            "jobs_completed": sum(j.completed for j in self.jobs),
            "events_lost": sum(len(j.events_lost) for j in self.jobs),
            "duplicate_side_effects": sum(len(j.duplicates) for j in self.jobs),
            "teacher_requests_resent": sum(j.teacher_resent for j in self.jobs),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "seconds": round(self.seconds, 1),
            "faults": [asdict(f) for f in self.faults],
            "jobs": [asdict(j) for j in self.jobs],
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    def render(self) -> str:
        """service x stage -> outcome of the job killed there, then one line per job."""
        jobs = {j.job_id: j for j in self.jobs}
        cells: dict[tuple[str, str], str] = {}
        for f in self.faults:
            job = jobs.get(f.job_id)
            if job is None:
                cells[(f.service, f.stage)] = "not run"
                continue
            mark = "completed" if job.completed else "NOT COMPLETED"
            if job.events_lost:
                mark += f" lost={len(job.events_lost)}"
            if job.duplicates:
                mark += f" dup={len(job.duplicates)}"
            cells[(f.service, f.stage)] = mark + ("" if f.hit else " (stage passed)")
        width = max([len("service")] + [len(c) for c in cells.values()] + [len(s) for s in STAGES])
        lines = ["kill -9 matrix (service x stage of the job when it died)"]
        lines.append("service".ljust(14) + "".join(s.ljust(width + 2) for s in STAGES))
        for service in SERVICES:
            row = [cells.get((service, stage), "-") for stage in STAGES]
            lines.append(service.ljust(14) + "".join(c.ljust(width + 2) for c in row))
        lines.append("")
        for j in self.jobs:
            lines.append(
                f"job {j.job_id}: {'completed' if j.completed else 'NOT COMPLETED'}, events lost {j.events_lost or 0}, "
                f"duplicate side effects {j.duplicates or 0}, teacher requests {j.teacher_requests} "
                f"(re-sent after a kill: {j.teacher_resent}), training runs {j.training_runs}, "
                f"model servers {j.model_servers}, resumed from step {j.resumed_from_step}"
            )
            lines.append(f"  first seen: {j.timeline}")
        s = self.summary()
        lines.append(
            f"faults injected {s['faults_injected']} (in stage {s['stage_hit']}), jobs completed "
            f"{s['jobs_completed']}/{s['jobs']}, events lost {s['events_lost']}, duplicate side effects "
            f"{s['duplicate_side_effects']}  [{self.seconds:.0f} s]"
        )
        return "\n".join(lines)


class FaultRun:
    """Drives jobs through a live stack and injects each fault when its job is in its stage.

    Each job's faults are injected in pipeline order by one task per job; injections never overlap
    (a lock), so a relaunched service never starts while the broker is down.
    """

    def __init__(
        self,
        stack: ServiceSet,
        teacher: GatedTeacher,
        nc: Client,
        published: Published,
        brokers: list[NatsServerProcess],
    ) -> None:
        self.stack = stack
        self.teacher = teacher
        self.nc = nc
        self.published = published
        self.brokers = brokers
        self.may_resend: Counter[str] = Counter()
        self.checkpoint_at_kill: dict[str, int] = {}
        self.downed_before_training: dict[str, list[str]] = {}
        self.expected_revision: dict[str, int] = {}
        self._inject = asyncio.Lock()

    async def submit(self, job_id: str, seed: int) -> None:
        event = JobSubmitted(job_id=job_id, spec=tiny_job(job_id, self.teacher.base_url, seed))
        ack = await self.nc.jetstream(timeout=10).publish(
            event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id}
        )
        assert ack.seq, "the job was not stored"

    def _published(self, event_type: str, job_id: str) -> bool:
        return bool(self.published.of(event_type, job_id))

    def _revision(self, job_id: str) -> int:
        """The job's latest placement: one per server it lost (its own, or a neighbour's on a shared server)."""
        chosen = [int(b["revision"]) for b in self.published.of("ServerChosen", job_id)]
        return max([*chosen, self.expected_revision.get(job_id, 1)])

    async def placement(self, job_id: str) -> JobPlacement:
        """The selector's current placement of the job."""
        placements = TypedKV(await self.nc.jetstream(timeout=10).key_value(PLACEMENTS_BUCKET), JobPlacement)
        found = await placements.get(job_key(job_id))
        assert found is not None, f"job {job_id} has no placement"
        return found[0]

    async def reach(self, fault: Fault, hold: Hold | None, timeout_s: float) -> None:
        """Return once the fault's job is in the fault's stage (held there when the stage asks a teacher)."""
        job = fault.job_id

        async def ready() -> bool:
            if fault.service in ("server-down", "server-kill") and not self._published("ServerChosen", job):
                return False  # nothing to take down before the job is placed
            if fault.stage == "placement":
                return True
            if hold is not None:
                return bool(self.teacher.gate.held(hold))
            if fault.stage == "training":
                return any(b.get("checkpoint_uri") for b in self.published.of("TrainingProgress", job))
            if fault.stage == "completed":
                return self._published("JobCompleted", job)
            return bool(serving_pids(self.stack.home, job))  # deploy: the deployer is starting the model server

        async def ready_or_ended() -> bool:
            if await ready():
                return True
            ended = [t for t in ("JobFailed", "JobRejected") if self._published(t, job)]
            if ended or (fault.stage != "completed" and self._published("JobCompleted", job)):
                reasons = [b.get("reason") for t in ended for b in self.published.of(t, job)]
                timeline = self.published.timeline(job)
                raise AssertionError(f"job {job} ended before reaching {fault.stage}: {timeline}; {reasons}")
            return False

        try:
            await poll(ready_or_ended, timeout_s, what=f"job {job} reaching {fault.stage}")
        except TimeoutError as exc:  # say where the job stood, so a failure in CI can be read without a rerun
            seen = self.published.timeline(job)
            raise TimeoutError(f"{exc}; events seen: {seen}; ledger: {await self.ledger_line(job)}") from None

    async def inject(self, fault: Fault) -> bool:
        """Break what the fault names; True when the job had not left the stage yet."""
        job = fault.job_id
        hit = not self._published(STAGE_OUTPUT[fault.stage], job)
        in_flight = self.teacher.gate.unanswered(fault.service) if fault.service in TEACHER_CALLERS else set()
        if fault.service == "trainer" and not self._published("ModelTrained", job):
            # Killed mid-training: the resumed run must start at or after the last checkpoint. (Killed after
            # ModelTrained, there is nothing to resume; `training runs` catches a second training.)
            steps = [b["step"] for b in self.published.of("TrainingProgress", job) if b.get("checkpoint_uri")]
            self.checkpoint_at_kill[job] = max(steps, default=0)
        if fault.service == "nats":
            await self.kill_broker()
        elif fault.service == "server-kill":
            placement = await self.placement(job)
            server = placement.server_id
            if not self._published("ModelTrained", job):
                self.downed_before_training.setdefault(job, []).append(server)
            self.expected_revision[job] = placement.revision + 1
            self.stack.kill_server(server)
            await self.revive(server, job)
        elif fault.service == "server-down":
            placement = await self.placement(job)
            server = placement.server_id
            if not self._published("ModelTrained", job):
                self.downed_before_training.setdefault(job, []).append(server)
            # The selector's record, not the events seen so far: a neighbour's re-plan may have moved the job already.
            self.expected_revision[job] = placement.revision + 1
            down = ServerDownRequested(server_id=server, reason=f"fault test: lost during {fault.stage}")
            await self.nc.jetstream(timeout=10).publish(
                down.SUBJECT, down.to_bytes(), headers={"Nats-Msg-Id": down.event_id}
            )
            await self.bring_back(server, job)
        else:
            name = fault.service
            if name in WORKERS:  # the worker of the server the job is placed on: the one doing its work
                name = f"{name}@{(await self.placement(job)).server_id}"
            self.stack.kill(name)
            if fault.service in TEACHER_CALLERS:
                # Also what was answered between the first look and the kill, or was still on its way to the
                # client's cache when it died (seen on a loaded machine: three answers within that gap).
                in_flight |= self.teacher.gate.unanswered(fault.service, window_s=5.0)
            self.stack.restart(name)
        self.may_resend.update(in_flight)
        return hit

    async def bring_back(self, server: str, job_id: str) -> None:
        """Once the job has moved off it, the server comes back: outages are transient.

        Without this the full matrix's server-down round took six of eight servers down for good, and the
        jobs that had completed (they keep their slots while serving) ran out of feasible servers.
        """
        revision = self._revision(job_id)

        async def moved() -> bool:
            chosen = {int(b["revision"]) for b in self.published.of("ServerChosen", job_id)}
            return revision in chosen or self._published("JobFailed", job_id)

        await poll(moved, 60, what=f"job {job_id} re-planned off {server}")
        up = ServerUpRequested(server_id=server)
        await self.nc.jetstream(timeout=10).publish(up.SUBJECT, up.to_bytes(), headers={"Nats-Msg-Id": up.event_id})

    async def revive(self, server: str, job_id: str) -> None:
        """Once the job has moved off the dead server, the machine comes back: its workers start again (a
        transient outage), and their first heartbeat brings the server back up."""
        revision = self._revision(job_id)

        async def moved() -> bool:
            chosen = {int(b["revision"]) for b in self.published.of("ServerChosen", job_id)}
            return revision in chosen or self._published("JobFailed", job_id)

        await poll(moved, 60, what=f"job {job_id} re-planned off the dead {server}")
        self.stack.revive_server(server)

    async def kill_broker(self) -> None:
        """One server: kill -9 and restart it on its port and file store. A cluster: kill -9 the node leading
        the events stream, for good (the other two keep a quorum)."""
        if len(self.brokers) == 1:
            self.brokers[0].stop(kill=True)
            self.brokers[0].start()
        else:
            info = await self.nc.jetstream(timeout=10).stream_info(EVENTS_STREAM)
            leader = info.cluster.leader if info.cluster else None
            node = next(n for n in self.brokers if n.name == leader and n.process and n.process.poll() is None)
            node.stop(kill=True)

        async def connected() -> bool:
            return bool(self.nc.is_connected)

        await poll(connected, 30, what="the test client reconnecting")

    async def _drive(self, faults: list[Fault], holds: dict[Fault, Hold], timeout_s: float) -> list[FaultOutcome]:
        """One job's faults in pipeline order; within a stage the selector dies first, so the job is still
        placing when the inventory does."""
        done: list[FaultOutcome] = []
        for fault in sorted(faults, key=lambda f: (STAGES.index(f.stage), f.service != "selector")):
            t0 = time.monotonic()
            hold = holds.get(fault)
            await self.reach(fault, hold, timeout_s)
            async with self._inject:
                hit = await self.inject(fault)
            if hold is not None:
                self.teacher.gate.release(hold)
            done.append(FaultOutcome(fault.service, fault.stage, fault.job_id, hit, time.monotonic() - t0))
        return done

    async def run(self, faults: list[Fault], timeout_s: float = 600.0) -> MatrixReport:
        started = time.monotonic()
        report = MatrixReport()
        job_ids = list(dict.fromkeys(f.job_id for f in faults))
        holds = {
            f: self.teacher.gate.hold(set(teacher_models(f.job_id).values()), f.stage, HOLD_AFTER[f.stage])
            for f in faults
            if f.stage in TEACHER_CALLERS
        }
        for seed, job_id in enumerate(job_ids, start=11):
            await self.submit(job_id, seed)
        per_job = await asyncio.gather(
            *(self._drive([f for f in faults if f.job_id == job], holds, timeout_s) for job in job_ids)
        )
        report.faults = [outcome for outcomes in per_job for outcome in outcomes]
        await self.wait_finished(job_ids, timeout_s)
        stream = await stream_events(self.nc)
        for job_id in job_ids:
            report.jobs.append(await self.check(job_id, stream))
        report.seconds = time.monotonic() - started
        return report

    async def wait_finished(self, job_ids: list[str], timeout_s: float) -> None:
        """Every job completed or failed, and every job that lost its server after completing redeployed."""

        async def finished() -> bool:
            for job in job_ids:
                if not (self._published("JobCompleted", job) or self._published("JobFailed", job)):
                    return False
                deployed = {int(b["revision"]) for b in self.published.of("ModelDeployed", job)}
                if self._published("JobCompleted", job) and self._revision(job) not in deployed:
                    return False  # a server lost after deployment: wait for the redeployment
            return True

        try:
            await poll(finished, timeout_s, what="every job finishing")
        except TimeoutError as exc:
            seen = "; ".join(f"{job}: {self.published.timeline(job)}" for job in job_ids)
            ledgers = "; ".join([f"{job}: {await self.ledger_line(job)}" for job in job_ids])
            raise TimeoutError(f"{exc}; events seen: {seen}; ledger: {ledgers}") from None

    async def check(self, job_id: str, stream: list[dict[str, Any]]) -> JobOutcome:
        mine = [e for e in stream if e.get("job_id") == job_id]
        types = Counter(e["event_type"] for e in mine)
        lost = [t for t in REQUIRED if not types[t]]
        duplicates = [f"{t} stored {n} times" for t, n in types.items() if t in ONCE and n > 1]
        revisions = Counter((e["event_type"], e.get("revision")) for e in mine if e["event_type"] in ONCE_PER_REVISION)
        duplicates += [f"{t} revision {r} stored {n} times" for (t, r), n in revisions.items() if n > 1]
        lost += self._replan_gaps(job_id, mine)
        training_runs = len(self.published.of("ModelTrained", job_id))
        if training_runs > 1:
            duplicates.append(f"training completed {training_runs} times")
        servers = len(serving_pids(self.stack.home, job_id))
        if servers > 1:
            duplicates.append(f"{servers} model servers running for the job")
        models = set(teacher_models(job_id).values())
        sent = {k: n for k, n in self.teacher.gate.counts.items() if self.teacher.gate.model_of.get(k) in models}
        resent = sum(n - 1 for n in sent.values())
        unexplained = sum(max(0, n - 1 - self.may_resend[k]) for k, n in sent.items())
        if unexplained:
            duplicates.append(f"{unexplained} teacher requests sent again although already answered")
        trained = [e for e in mine if e["event_type"] == "ModelTrained"]
        resumed = int(trained[0].get("resumed_from_step", 0)) if trained else 0
        if job_id in self.checkpoint_at_kill and resumed < self.checkpoint_at_kill[job_id]:
            duplicates.append(
                f"training resumed from step {resumed}, before the checkpoint at step "
                f"{self.checkpoint_at_kill[job_id]} (work redone)"
            )
        redone = self._steps_redone(job_id)
        if redone > CHECKPOINT_EVERY:
            duplicates.append(f"{redone} training steps redone (more than one checkpoint interval)")
        state = await self.ledger(job_id)
        completed = types["JobCompleted"] == 1 and not types["JobFailed"] and state == "completed"
        return JobOutcome(
            job_id=job_id,
            completed=completed,
            events_lost=lost,
            duplicates=duplicates,
            teacher_requests=sum(sent.values()),
            teacher_resent=resent,
            training_runs=training_runs,
            model_servers=servers,
            resumed_from_step=resumed,
            timeline=self.published.timeline(job_id),
        )

    def _steps_redone(self, job_id: str) -> int:
        """How far training went back after an interruption: at most one checkpoint interval may be lost."""
        steps = [int(b["step"]) for b in self.published.of("TrainingProgress", job_id)]
        highest, redone = 0, 0
        for step in steps:
            redone = max(redone, highest - step)
            highest = max(highest, step)
        return redone

    def _replan_gaps(self, job_id: str, mine: list[dict[str, Any]]) -> list[str]:
        """What a re-planned job is missing: a placement per server lost, training and serving on a live server."""
        expected = self._revision(job_id)
        chosen = {int(e["revision"]): e["server"]["id"] for e in mine if e["event_type"] == "ServerChosen"}
        gaps = [f"ServerChosen revision {r}" for r in range(1, expected + 1) if r not in chosen]
        trained = next((e for e in mine if e["event_type"] == "ModelTrained"), None)
        if trained is not None and trained["server_id"] in self.downed_before_training.get(job_id, []):
            gaps.append(f"ModelTrained on a live server (trained on {trained['server_id']}, which was down)")
        deployed = {int(e["revision"]): e["server_id"] for e in mine if e["event_type"] == "ModelDeployed"}
        if expected in chosen and deployed.get(expected) != chosen[expected]:
            gaps.append(f"ModelDeployed revision {expected} on {chosen[expected]}")
        return gaps

    async def ledger_line(self, job_id: str) -> str:
        """Where the ledger has the job (what the workers act on): a stuck job's timeout says it at once."""
        try:
            jobs = TypedKV(await self.nc.jetstream(timeout=10).key_value(JOBS_BUCKET), JobState)
            found = await jobs.get(job_id)
        except Exception as exc:  # a diagnostic: never hide the timeout behind another error
            return f"unreadable ({type(exc).__name__})"
        if found is None:
            return "no entry"
        state = found[0]
        folded = ", ".join(h.event_type for h in state.history[-8:])
        return f"{state.status}/{state.stage} on {state.server_id}@{state.server_revision}, last folded: {folded}"

    async def ledger(self, job_id: str) -> str | None:
        """The job's status in the ledger, given a moment to catch up with the last event."""
        jobs = TypedKV(await self.nc.jetstream(timeout=10).key_value(JOBS_BUCKET), JobState)
        status = None
        for _ in range(50):
            found = await jobs.get(job_id)
            status = found[0].status if found else None
            if status not in (None, "running"):
                break
            await asyncio.sleep(0.2)
        return status


async def release(job_ids: list[str], nc: Client, timeout_s: float = 120.0) -> None:
    """Cancel a finished round's jobs and wait for their server slots to be free.

    A completed job keeps its slot while its deployment serves, and a full catalog rejects new jobs:
    without this, later rounds of the full matrix were rejected at placement.
    """
    js = nc.jetstream()
    for job_id in job_ids:
        cancel = JobCancelRequested(job_id=job_id)
        await js.publish(cancel.SUBJECT, cancel.to_bytes(), headers={"Nats-Msg-Id": cancel.event_id})
    placements = TypedKV(await js.key_value(PLACEMENTS_BUCKET), JobPlacement)

    async def freed() -> bool:
        for job_id in job_ids:
            found = await placements.get(job_key(job_id))
            if found is not None and found[0].active:
                return False
        return True

    deadline = time.monotonic() + timeout_s
    while not await freed():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the slots of {job_ids} were not freed within {timeout_s:.0f} s of cancelling")
        await asyncio.sleep(0.2)


async def run_matrix(
    rounds: list[list[Fault]], workdir: Path, timeout_s: float = 600.0, cluster: bool = False
) -> MatrixReport:
    """One nats-server (or a 3-node cluster with R3 streams), one gated teacher, the six services;
    each round's jobs run together, rounds in turn."""
    job_ids = [f.job_id for faults in rounds for f in faults]
    if cluster:
        brokers = start_cluster(workdir / "cluster", size=3)
    else:
        brokers = [NatsServerProcess(store_dir=workdir / "jetstream", log_file=workdir / "nats.log").start()]
    url = ",".join(b.url for b in brokers)
    replicas = len(brokers)
    report = MatrixReport()
    started = time.monotonic()
    try:
        await replicated_infrastructure(url, replicas)
        with (
            gated_teacher(simulator_config(job_ids)) as teacher,
            services(url, workdir / "home", ENV, replicas) as stack,
        ):
            await wait_until_ready(url)
            await wait_for_workers(url, SERVERS)
            nc = await connect(url)
            try:
                published = await watch_published(nc)
                run = FaultRun(stack, teacher, nc, published, brokers)
                for faults in rounds:
                    part = await run.run(faults, timeout_s)
                    report.faults += part.faults
                    report.jobs += part.jobs
                    await release([f.job_id for f in faults], nc)
            finally:
                await nc.close()
    finally:
        for broker in brokers:
            broker.stop(kill=True)
    report.seconds = time.monotonic() - started
    return report
