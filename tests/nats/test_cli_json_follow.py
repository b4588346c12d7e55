"""The CLI on a real nats-server: every listing command's `--json` reads back into the shared models (the report's
too, whose page embeds the stored plots), `logs -f` prints a job's events as they are published and ends with the
job, and a `stratos up` that times out is one line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from pydantic import TypeAdapter
from typer.testing import CliRunner

from stratos_cli.app import app
from stratos_cli.logview import LogLine
from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.strategies import Infeasible, select
from stratos_selector.workflow import apply
from stratos_shared.artifacts import NatsArtifactStore, put_file
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET, LIVENESS_BUCKET, SERVERS_BUCKET, server_token
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    DataProgress,
    FromServer,
    JobCompleted,
    JobSubmitted,
    ModelTrained,
    ServerChosen,
    TrainingProgress,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.selection import SelectionExplanation
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord, WorkerBeat
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import Attempt, JobState
from stratos_shared.report import JobReport, render_plots
from tests.reports import LEGACY_REPORT, legacy_report

pytestmark = pytest.mark.nats
ROOT = Path(__file__).resolve().parents[2]
SPEC = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")


def _placed(job: str) -> ServerChosen:
    """The selector's own choice among a generated catalog, as the ServerChosen it would publish."""
    choice = select(generate_catalog(5, seed=3), SPEC)
    assert not isinstance(choice, Infeasible)
    return ServerChosen(job_id=job, revision=1, server=choice.server, reason="r", explanation=choice.explanation)


def _trained(job: str, server_id: str) -> ModelTrained:
    return ModelTrained(
        job_id=job, server_id=server_id, revision=1, student="tiny-1m", base_model="tiny:tiny-1m", method="lora-sft",
        model_uri="obj://x", is_adapter=True, accuracy_before=0.1, accuracy_after=0.6, training_seconds=3.0,
        steps=10, tokens=1000, cost_usd=0.01,
    )  # fmt: skip


async def _ledger(js: JetStreamContext, events: list[Event]) -> JobState:
    """Fold `events` as the ledger does and store the job's state, so the CLI reads what a live stack shows."""
    state: JobState | None = None
    for event in events:
        state = apply(state, event) or state
    assert state is not None
    await TypedKV(await js.key_value(JOBS_BUCKET), JobState).put(state.job_id, state)
    return state


async def _seed(url: str) -> ServerChosen:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_infrastructure(js)
    placed = _placed("j-json")
    await _ledger(js, [JobSubmitted(job_id="j-json", spec=SPEC), placed, _trained("j-json", placed.server.id)])
    await _ledger(js, [JobSubmitted(job_id="j-newer", spec=SPEC)])
    servers = TypedKV(await js.key_value(SERVERS_BUCKET), ServerRecord)
    for spec in generate_catalog(5, seed=3):
        await servers.put(spec.id, ServerRecord(spec=spec, monitored=True))
    beat = ServerLiveness(
        server_id=placed.server.id,
        last_seen=time.time(),
        workers={"trainer-1": WorkerBeat(service="trainer", jobs=["j-json"], seen_at=time.time())},
    )
    await TypedKV(await js.key_value(LIVENESS_BUCKET), ServerLiveness).put(server_token(placed.server.id), beat)
    await nc.drain()
    return placed


def _json(args: list[str], url: str) -> object:
    result = CliRunner().invoke(app, [*args, "--json", "--nats", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_of_each_listing_command_reads_back_into_the_shared_models(nats_server: NatsServerProcess) -> None:
    placed = asyncio.run(_seed(nats_server.url))

    jobs = TypeAdapter(list[JobState]).validate_python(_json(["jobs"], nats_server.url))
    assert [j.job_id for j in jobs] == ["j-newer", "j-json"]  # newest first, as the table
    assert jobs[1].server_id == placed.server.id and jobs[1].attempts[0].accuracy == 0.6

    status = JobState.model_validate(_json(["status", "j-json"], nats_server.url))
    assert status.results.placement == placed.explanation

    explained = _json(["explain", "j-json"], nats_server.url)
    assert isinstance(explained, dict) and set(explained) == {"placement", "attempts"}
    assert SelectionExplanation.model_validate(explained["placement"]) == placed.explanation
    assert TypeAdapter(list[Attempt]).validate_python(explained["attempts"])[0].student == "tiny-1m"

    listed = _json(["servers"], nats_server.url)
    assert isinstance(listed, dict)
    records = TypeAdapter(list[ServerRecord]).validate_python(listed["servers"])
    assert sorted(r.spec.id for r in records) == sorted(s.id for s in generate_catalog(5, seed=3))
    liveness = TypeAdapter(list[ServerLiveness]).validate_python(listed["liveness"])
    assert [b.workers["trainer-1"].jobs for b in liveness] == [["j-json"]]

    points = _json(["servers", "--pareto", "--job", str(ROOT / "examples" / "math-alignment.yaml")], nats_server.url)
    assert isinstance(points, list) and len(points) == 5
    assert set(points[0]) == {"server", "hardware", "cost_usd", "latency_ms", "feasible", "on_front"}
    assert points[0]["on_front"] and placed.server.id in {p["server"]["id"] for p in points if p["on_front"]}


async def _publish(js: JetStreamContext, event: Event) -> None:
    """As the services publish: a worker's event on its server's subject, the event id as the message id."""
    subject = event.routed_subject() if isinstance(event, FromServer) else event.SUBJECT
    await js.publish(subject, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})


async def _next_line(stdout: asyncio.StreamReader) -> LogLine:
    raw = await asyncio.wait_for(stdout.readline(), 30)
    assert raw, "stratos logs -f ended before the next line"
    return LogLine(**json.loads(raw))


async def _follow_while_publishing(url: str, home: Path) -> tuple[list[LogLine], int]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_infrastructure(js)
    submitted, placed = JobSubmitted(job_id="j-follow", spec=SPEC), _placed("j-follow")
    server = placed.server.id
    await _ledger(js, [submitted])  # the ledger knows the job: the follower replays from its submission
    for event in (submitted, placed):
        await _publish(js, event)
    env = {**os.environ, "STRATOS_HOME": str(home)}
    command = [sys.executable, "-m", "stratos_cli", "logs", "j-follow", "-f", "--json", "--nats", url]
    follower = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE)
    assert follower.stdout is not None
    try:
        lines = [await _next_line(follower.stdout), await _next_line(follower.stdout)]  # replayed
        live: list[Event] = [
            DataProgress(job_id="j-follow", done=5, total=10, accepted=4),
            TrainingProgress(job_id="j-follow", server_id=server, revision=1, step=3, total_steps=10, loss=1.5),
            JobCompleted(job_id="j-follow", server_id=server, revision=1, report_uri="obj://r"),
        ]
        for event in live:  # each line must arrive before the next event exists: followed, not read at the end
            await _publish(js, event)
            lines.append(await _next_line(follower.stdout))
        code = await asyncio.wait_for(follower.wait(), 30)
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
        await nc.drain()
    return lines, code


def test_logs_follow_prints_each_event_as_it_is_published_and_ends_with_the_job(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    lines, code = asyncio.run(_follow_while_publishing(nats_server.url, tmp_path))
    assert code == 0  # the job completed
    assert [line.service for line in lines] == ["cli", "selector", "data-synth", "trainer", "deployer"]
    assert lines[2].message == "data: 5/10 asked, 4 accepted"
    assert lines[3].message == "attempt 1 training: step 3/10, loss 1.500"
    assert lines[4].message == "completed" and all(line.job_id == "j-follow" for line in lines)


def test_logs_follow_of_an_unknown_job_is_one_line(nats_server: NatsServerProcess, tmp_path: Path) -> None:
    done = _cli(["logs", "no-such-job", "-f", "--nats", nats_server.url], tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: no job 'no-such-job' (it may still be queued: try again in a moment)"
    ]


def _cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRATOS_HOME": str(home), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "stratos_cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _processes_of(home: Path) -> list[int]:
    """Processes started for the stack at `home` (each gets STRATOS_HOME in its environment)."""
    marker = f"STRATOS_HOME={home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # gone, or not ours
    return found


def test_up_that_times_out_is_one_line_and_leaves_nothing_running(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """The inventory cannot register the catalog within 0.2 s of starting: `up` stops what it started."""
    catalog = str(ROOT / "examples" / "servers.yaml")
    args = ["up", "--servers", "0", "--ready-timeout", "0.2", "--catalog", catalog]
    done = _cli(args, tmp_path, NATS_URL=nats_server.url)
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no servers registered within 0.2 s") and "stopped what it started" in lines[0]
    assert not (tmp_path / "stack.json").exists() and _processes_of(tmp_path) == []


async def _store_report(url: str, plots_dir: Path) -> JobReport:
    """The legacy report.json (written before the sections were typed), stored with its plots as the deployer does."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_infrastructure(js)
    store = NatsArtifactStore(js)
    report = legacy_report()
    plots = render_plots(report, plots_dir)
    uris = {name: await put_file(store, "j-report", f"report/{name}.png", path) for name, path in plots.items()}
    raw = {**json.loads(LEGACY_REPORT.read_text(encoding="utf-8")), "plots": uris}
    uri = await store.put_bytes("j-report", "report/report.json", json.dumps(raw).encode())
    state = JobState(job_id="j-report", status="completed", report_uri=uri)
    await TypedKV(await js.key_value(JOBS_BUCKET), JobState).put("j-report", state)
    await nc.drain()
    return report.model_copy(update={"plots": uris})


def test_report_json_reads_back_and_the_page_embeds_the_stored_plots(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    stored = asyncio.run(_store_report(nats_server.url, tmp_path / "plots"))
    result = CliRunner().invoke(
        app, ["report", "j-report", "--out", str(tmp_path), "--json", "--nats", nats_server.url]
    )
    assert result.exit_code == 0, result.output
    assert JobReport.model_validate_json(result.stdout) == stored
    page = (tmp_path / "j-report" / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(stored.plots) == 3  # accuracy, loss and cost
    assert stored.student.after == 0.5 and stored.teacher is not None and stored.teacher.accuracy == 0.9
    assert "<table>" in page and "<pre>" not in page
    assert (tmp_path / "j-report" / "accuracy.png").read_bytes() == (tmp_path / "plots" / "accuracy.png").read_bytes()
