"""The whole pipeline over a real nats-server with the six services as separate processes.

The same code path as `make demo`, at a smaller size: the job is placed, the
teacher and mode chosen, data synthesised, the student pre-screened and
trained; mid-training every process of its server is SIGKILLed and nothing else
is said: the inventory notices the silence (ServerDown, heartbeat-timeout), the
job is re-planned and resumes from its checkpoint on the other server, is
deployed there (at that server's address), measured and completed.
The same run checks that the job is one trace across the services and that
the teacher's API key appears nowhere: not in events, KV, artifacts, logs or spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from stratos_cli.client import wait_for_workers, wait_until_ready
from stratos_cli.stack import advertise_host, signal_server
from stratos_cli.tracing import Span, job_spans, read_spans
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import ARTIFACTS_BUCKET, JOBS_BUCKET, server_buckets
from stratos_shared.bus.permissions import Credential, write_auth
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from stratos_shared.teacher.simulator import ModelSpec, SimulatorConfig, running_simulator
from stratos_shared.telemetry import JsonlSpanExporter
from tests.e2e.stack import ROOT, SERVERS, logs_of, service_processes
from tests.variation import SEED, record

pytestmark = pytest.mark.nats

SECRET = "sk-test-7f3a9c1e5b2d48a6b0c4e8f1a2b3c4d5"
SERVICES = {"inventory", "selector", "teacher-eval", "data-synth", "trainer", "deployer"}


def small_job(teacher_url: str) -> JobSpec:
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    return spec.model_copy(
        update={
            "teachers": [
                t.model_copy(update={"base_url": teacher_url, "api_key_ref": "env:TEACHER_KEY_E2E"})
                for t in spec.teachers
            ],
            "students": spec.students[:1],
            "escalation": EscalationSpec(max_attempts=1),  # one attempt: not what this test is about
            "task": spec.task.model_copy(update={"size": 400, "generator": {"max_steps": 1}}),
            # Enough steps to be killed after a checkpoint and resume past it; what training reaches is
            # `tests/unit/trainer/test_sft.py`'s claim, not this test's (it would hang on the numeric path).
            "training": spec.training.model_copy(
                update={"max_steps": 40, "batch_size": 8, "checkpoint_every_steps": 10, "seed": SEED}
            ),
            "distillation": spec.distillation.model_copy(update={"eval_samples": 30, "min_dataset_size": 20}),
        }
    )


async def submit_with_trace(nc: Client, event: JobSubmitted, trace_dir: Path) -> str:
    """Publish as `stratos submit` does: inside a root span (kept in the span store) whose context rides in headers."""
    provider = TracerProvider(resource=Resource.create({"service.name": "cli"}))
    provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(trace_dir / "cli.jsonl")))
    with provider.get_tracer("test").start_as_current_span(
        "stratos.submit", attributes={"job.id": event.job_id}
    ) as root:
        headers = {"Nats-Msg-Id": event.event_id}
        propagate.inject(headers)
        await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers=headers)
        trace_id = f"{root.get_span_context().trace_id:032x}"
    provider.shutdown()
    return trace_id


async def everything_stored(nc: Client) -> str:
    """Every event in the stream, every KV value and every artifact, as one text to scan."""
    js = nc.jetstream()
    parts: list[str] = []
    for subject in ("stratos.evt.>", "stratos.cmd.>"):
        subscription = await js.subscribe(subject, stream="STRATOS_EVENTS", ordered_consumer=True)
        while True:
            try:
                message = await subscription.next_msg(timeout=1.0)
            except TimeoutError:
                break
            parts.append(message.data.decode(errors="replace"))
            parts.append(json.dumps(message.headers or {}))
        await subscription.unsubscribe()
    for bucket in ("stratos-jobs", "stratos-specs", "stratos-servers", "stratos-placements"):
        kv = await js.key_value(bucket)
        for key in await kv.keys():
            parts.append((await kv.get(key)).value.decode(errors="replace"))
    for bucket in (ARTIFACTS_BUCKET, *(b for server_id in SERVERS for b in server_buckets(server_id))):
        store = await js.object_store(bucket)  # the control plane's artifacts, each server's, each server's keys
        with contextlib.suppress(NotFoundError):  # nats-py: an empty bucket has nothing to list
            for info in await store.list():
                parts.append((await store.get(info.name)).data.decode(errors="replace"))
    return "\n".join(parts)


@pytest.fixture
def credentials(tmp_path: Path) -> tuple[Path, dict[str, Credential]]:
    """Per-service and per-server NATS users, as `stratos up` makes them: the job runs under least privilege."""
    return write_auth(tmp_path / "auth", list(SERVERS))


@pytest.fixture
def nats_server(tmp_path: Path, credentials: tuple[Path, dict[str, Credential]]) -> Iterator[NatsServerProcess]:
    config, _ = credentials
    server = NatsServerProcess(store_dir=tmp_path / "jetstream", config_file=config, log_file=tmp_path / "nats.log")
    yield server.start()
    server.stop()


@pytest.fixture
async def nc(nats_server: NatsServerProcess, credentials: tuple[Path, dict[str, Credential]]) -> AsyncIterator[Client]:
    """The test speaks as the CLI does (`stratos submit`, `status`, `trace` read everything)."""
    cli = credentials[1]["cli"]
    client = await nats.connect(nats_server.url, user=cli.user, password=cli.password)
    await ensure_infrastructure(client.jetstream())
    yield client
    await client.drain()


@pytest.mark.timeout(1200)
async def test_job_runs_end_to_end_across_processes(
    nats_server,
    tmp_path: Path,
    nc: Client,
    collect,
    credentials: tuple[Path, dict[str, Credential]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the credentials `stratos up` hands out: each control service, and each server's workers, log in as
    themselves and may do only their own work (`stratos_shared.bus.permissions`)."""
    cli = credentials[1]["cli"]
    monkeypatch.setenv("STRATOS_NATS_USER", cli.user)  # the CLI helpers this test calls log in as `stratos` does
    monkeypatch.setenv("STRATOS_NATS_PASSWORD", cli.password)
    progress = await collect("stratos.evt.training.progress")
    chosen = await collect("stratos.evt.server.chosen")
    events = await collect("stratos.evt.>")
    home = tmp_path / "home"
    env = {
        "TEACHER_KEY_E2E": SECRET,
        "STRATOS_ACK_WAIT_S": "10",
        "STRATOS_EVAL_SAMPLES": "40",
        "STRATOS_PRESCREEN_ITEMS": "8",
        "STRATOS_PROBE_REQUESTS": "4",
        "STRATOS_ACCURACY_SAMPLES": "20",
        "OMP_NUM_THREADS": "1",
    }
    config = SimulatorConfig(
        seed=5, models={"sim-strong": ModelSpec(accuracy={"math": 0.9}), "sim-weak": ModelSpec(accuracy={"math": 0.3})}
    )
    with running_simulator(config) as sim, service_processes(nats_server, home, env, credentials=credentials[1]):
        await wait_until_ready(nats_server.url)  # as `stratos up` does: jobs go in once servers are registered
        await wait_for_workers(nats_server.url, SERVERS)
        job = JobSubmitted(job_id="e2e-1", spec=small_job(sim.base_url))
        job_trace = await submit_with_trace(nc, job, home / "traces")
        await progress.wait_for(lambda c: any(b.get("checkpoint_uri") for b in c.bodies()), timeout_s=600)
        first_server = chosen.bodies()[0]["server"]["id"]
        killed_ns = time.time_ns()
        killed = signal_server(home, first_server)  # the server dies; nobody says so
        await events.wait_for(lambda c: bool(c.of_type("JobCompleted") or c.of_type("JobFailed")), timeout_s=900)
        jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
        state = None
        for _ in range(50):
            found = await jobs.get("e2e-1")
            state = found[0] if found else None
            if state and state.status != "running":
                break
            await asyncio.sleep(0.2)
        stored = await everything_stored(nc)
        await asyncio.sleep(1.5)  # span processors flush every 0.5 s; SIGTERM flushes the rest

    # --- the pipeline ---
    assert not events.of_type("JobFailed"), events.of_type("JobFailed")
    assert len(killed) >= 2, "the server's trainer and deployer were not both found to kill"
    assert [(b["server_id"], b["reason"]) for b in events.of_type("ServerDown")] == [
        (first_server, "heartbeat-timeout")
    ]
    assert not events.of_type("ServerDownRequested")
    types = [b["event_type"] for b in events.bodies()]
    for stage in ("ServerChosen", "TeacherChosen", "DataReady", "StudentChosen", "ModelTrained", "ModelDeployed"):
        assert stage in types, f"{stage} missing from {types}"
    revisions = [b for b in chosen.bodies() if b["job_id"] == "e2e-1"]
    assert [b["revision"] for b in revisions] == [1, 2]
    new_server = revisions[1]["server"]["id"]
    assert new_server != first_server
    trained = events.of_type("ModelTrained")[0]
    assert trained["resumed_from_step"] > 0, "training restarted from zero instead of the checkpoint"
    assert trained["server_id"] == new_server
    record("e2e before/after", f"{trained['accuracy_before']:.2f}/{trained['accuracy_after']:.2f}")
    assert 0.0 <= trained["accuracy_before"] <= 1.0 and 0.0 <= trained["accuracy_after"] <= 1.0, trained
    deployed = events.of_type("ModelDeployed")[0]
    assert deployed["revision"] == 2 and deployed["server_id"] == new_server
    assert deployed["endpoint"].startswith(f"http://{advertise_host(SERVERS.index(new_server))}:")
    # every training report came from a trainer of the server the job was placed on at the time
    placed = {b["server"]["id"] for b in revisions}
    assert {b["server_id"] for b in progress.bodies()} <= placed and trained["trainer"]
    assert state is not None and state.status == "completed" and state.report_uri
    # least privilege is enough: nats-server refused nothing any service or worker did (it logs each refusal)
    refused = [line for line in (tmp_path / "nats.log").read_text(errors="replace").splitlines() if "Violation" in line]
    assert not refused, refused[:5]

    # --- one trace per job ---
    spans = read_spans(home / "traces")
    assert len({s.span_id for s in spans}) == len(spans), "span ids repeat (a seeded RNG is generating them)"
    mine = job_spans(spans, "e2e-1")
    assert {s.trace_id for s in mine} == {job_trace}, "the job's spans are spread over several traces"
    by_id = {s.span_id: s for s in spans}
    # A SIGKILLed trainer never ends (so never exports) the span of the work it was doing, and loses the spans
    # its exporter had not flushed (every 0.5 s): its own spans, and the ledger's spans of the progress it
    # published just before it died, are the only ones allowed to miss their parent.
    orphans = [s for s in mine if s.parent_id and s.parent_id not in by_id]
    from_the_dead = ("trainer", "training.progress", "student.chosen")
    unexplained = [
        s
        for s in orphans
        if not (any(k in f"{s.service} {s.name}" for k in from_the_dead) and s.start_ns <= killed_ns + 2_000_000_000)
    ]
    assert not unexplained, f"spans whose parent is missing: {[s.name for s in unexplained][:5]}"
    hops = {s.name for s in mine}
    for subject in ("job.submitted", "server.chosen", "teacher.chosen", "data.ready", "model.trained"):
        assert any(subject in name and "process" in name for name in hops), f"no consumer span for {subject}"
    replan = [s for s in mine if s.name == "selector.replan"]
    assert replan and replan[0].links, "the re-plan is not in the job's trace, or not linked to its cause"
    linked_traces = {link.split(":")[0] for s in replan for link in s.links}
    related: list[Span] = [s for s in spans if s.trace_id in linked_traces]
    assert {s.service for s in mine} | {s.service for s in related} >= SERVICES

    # --- the secret is nowhere ---
    texts = {"events, KV and artifacts": stored, "logs": logs_of(home)}
    texts["spans"] = "".join(p.read_text() for p in (home / "traces").glob("*.jsonl"))
    for where, text in texts.items():
        assert SECRET not in text, f"the teacher API key leaked into {where}"
    assert sim.simulator.stats()["total"] > 0

    # --- structured logs: every stage service logged the job, joined to its trace ---
    records = [json.loads(line) for line in logs_of(home).splitlines() if line.startswith("{")]
    job_logs = [r for r in records if r.get("job_id") == "e2e-1"]
    assert {r["service"] for r in job_logs} >= SERVICES - {"inventory"}, "a stage logged nothing for the job"
    assert {r.get("trace_id") for r in job_logs} == {job_trace}, "job log lines are not joined to the job's trace"
