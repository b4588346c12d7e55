"""`stratos demo`: the whole pipeline on one machine, two jobs, a server failure, live.

Starts embedded NATS, the four control services, three catalog servers' workers
(a trainer and a deployer each, on 127.0.0.2-4) and the teacher simulator as
processes, builds (once, cached) the tiny local student models, submits an
alignment job and an injection job, SIGKILLs every process of the first job's
server while it trains (nothing else is said: the inventory notices the
silence), and follows both to completion.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from stratos_cli import client
from stratos_cli.stack import (
    CONTROL,
    StackState,
    choose_servers,
    launch_server,
    launch_service,
    service_env,
    signal_server,
    start_nats,
    stop_pids,
)
from stratos_cli.views import stage_table
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import free_port, wait_for_port
from stratos_shared.jobs import JobState
from stratos_shared.telemetry import setup_tracing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOBS = ["math-alignment.yaml", "rules-injection.yaml"]
SERVERS = 3
REAL_JOBS = ["smollm2-student.yaml"]
"""``stratos demo --real``: SmolLM2-135M-Instruct, pre-screened against a tiny model, as a LoRA student."""


def demo_spec(path: Path, teacher_url: str) -> JobSpec:
    return JobSpec.from_yaml(path).with_teachers(base_url=teacher_url, api_key_ref=None)


def summary(states: list[JobState]) -> Table:
    table = Table(title="results")
    for column in ("job", "status", "server", "teacher (acc)", "mode", "student before → after", "p50 ms", "report"):
        table.add_column(column)
    for state in states:
        r = state.results
        teacher = r.teacher_eval
        acc = teacher.chosen_accuracy() if teacher else None
        training = r.training
        table.add_row(
            state.name,
            state.status,
            f"{state.server_id} (rev {state.server_revision})",
            f"{teacher.teacher} ({acc:.0%})" if teacher and acc is not None else "-",
            state.mode or "-",
            f"{training.before:.0%} → {training.after:.0%}" if training else "-",
            f"{r.deployment.p50_ms:.0f}" if r.deployment else "-",
            state.report_uri or state.reason or "-",
        )
    return table


async def follow(
    job_ids: list[str], url: str, console: Console, fail_server_of: str | None, timeout_s: float, home: Path
) -> list[JobState]:
    async with client.connect(url) as (_, js):
        jobs = TypedKV(await js.key_value(JOBS_BUCKET), JobState)
        failed_once = False
        deadline = time.monotonic() + timeout_s
        states: dict[str, JobState] = {}
        with Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                for job_id in job_ids:
                    found = await jobs.get(job_id)
                    if found:
                        states[job_id] = found[0]
                live.update(Group(*(stage_table(s) for s in states.values())))
                target = states.get(fail_server_of or "")
                if (
                    not failed_once
                    and target is not None
                    and target.stage == "training"
                    and "training" in target.progress
                    and target.server_id
                ):
                    failed_once = True
                    killed = signal_server(home, target.server_id)
                    console.print(
                        f"[yellow]server {target.server_id} dies while {target.name} trains: {len(killed)} processes "
                        "SIGKILLed, nothing said; the inventory notices the silence[/]"
                    )
                if len(states) == len(job_ids) and all(s.status != "running" for s in states.values()):
                    break
                await asyncio.sleep(0.5)
        return [states[j] for j in job_ids if j in states]


async def save_reports(states: list[JobState], url: str, folder: Path) -> dict[str, Path]:
    """Each finished job's report (Markdown, HTML, plots) written under `folder/<job>`, while NATS is still up."""
    from stratos_cli.reports import fetch_report

    return {
        state.job_id: await fetch_report(state.report_uri, folder / state.job_id, url)
        for state in states
        if state.report_uri
    }


def cli_command() -> str:
    """How to run this CLI again from here: `stratos` when it is on PATH, else the path it was started by."""
    started = Path(sys.argv[0]).resolve()
    on_path = shutil.which("stratos")
    if on_path and Path(on_path).resolve() == started:
        return "stratos"
    try:
        return str(started.relative_to(Path.cwd()))
    except ValueError:
        return str(started)


def _build_models(console: Console, real: bool) -> None:
    """The students the demo's jobs name, built or converted once (then cached)."""
    console.print("building the tiny local student models (cached after the first run) ...")
    from stratos_shared.localmodels import ensure_tiny_model

    for name in ("tiny-1m", "tiny-2m"):
        started = time.monotonic()
        path = ensure_tiny_model(name)
        console.print(f"  {name}: {path} ({time.monotonic() - started:.0f} s)")
    if real:
        from stratos_shared.localmodels.bundled import ensure_bundled_model

        started = time.monotonic()
        path = ensure_bundled_model("smollm2-135m")
        console.print(f"  smollm2-135m: {path} ({time.monotonic() - started:.0f} s)")


def _start_simulator(home: Path, port: int) -> subprocess.Popen[bytes]:
    """The teacher simulator the demo's teachers point at, logging into the demo's logs."""
    sim_log = (home / "logs" / "teacher-sim.log").open("ab")
    config = str(EXAMPLES / "teacher-sim.yaml")
    return subprocess.Popen(
        [sys.executable, "-m", "stratos_shared.teacher.simulator", "--port", str(port), "--config", config],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
    )


def _start_stack(home: Path, real: bool, pids: dict[str, int]) -> tuple[str, list[str]]:
    """NATS, the control services and the servers' workers (their pids added to `pids` as they start): the NATS
    URL and the servers with workers."""
    url, nats_pids = start_nats(home, free_port(), 1)
    pids.update(nats_pids)
    # Smaller probes than the production defaults keep the demo within minutes on two cores.
    small = {"STRATOS_PROBE_REQUESTS": "6", "STRATOS_ACCURACY_SAMPLES": "60", "STRATOS_EVAL_SAMPLES": "60"}
    # SmolLM2 writes ~20 tokens a second per request on two cores: fewer, shorter evaluations
    smaller = {
        "STRATOS_EVAL_SAMPLES": "24",
        "STRATOS_ACCURACY_SAMPLES": "24",
        "STRATOS_PRESCREEN_ITEMS": "16",
        "STRATOS_MAX_NEW_TOKENS": "96",
    }
    env = service_env(
        home, url, 1, {"STRATOS_CATALOG": str(EXAMPLES / "servers.yaml"), **small, **(smaller if real else {})}
    )
    for service in CONTROL:
        pids[service] = launch_service(service, home, env)
    from stratos_shared.catalog import load_catalog

    servers = choose_servers([s.id for s in load_catalog(EXAMPLES / "servers.yaml")], SERVERS)
    for index, server_id in enumerate(servers):
        pids |= launch_server(server_id, index, home, env)
    return url, servers


async def _submit_all(url: str, teacher_url: str, real: bool, console: Console) -> list[str]:
    """Submit the demo's jobs, each under its own span (one trace per job from the submission on)."""
    from opentelemetry import trace

    job_ids = []
    async with client.connect(url) as (_, js):
        for name in REAL_JOBS if real else JOBS:
            spec = demo_spec(EXAMPLES / name, teacher_url)
            job_id = f"{spec.name}-{uuid.uuid4().hex[:6]}"
            with trace.get_tracer("stratos.cli").start_as_current_span("stratos.submit", attributes={"job.id": job_id}):
                await client.publish(js, JobSubmitted(job_id=job_id, spec=spec, submitted_by="demo"))
            job_ids.append(job_id)
            console.print(f"submitted {job_id} ({name})")
    return job_ids


def _say_where_to_look(console: Console, states: list[JobState], reports: dict[str, Path], home: Path) -> None:
    """Each job's report, trace and logs; the stack stops when the demo ends, so none of it may need the stack."""
    stratos = cli_command()
    for state in states:
        console.print(f"{state.name} ({state.status}):")
        if state.job_id in reports:
            console.print(f"  report: {reports[state.job_id] / 'report.md'} (and report.html, plots)")
        console.print(f"  trace:  STRATOS_HOME={home} {stratos} trace {state.job_id}")
        console.print(f"  logs:   STRATOS_HOME={home} {stratos} logs {state.job_id}")


def run_demo(console: Console, timeout_s: float = 1200, keep: bool = False, real: bool = False) -> int:
    """Run the demo's jobs on a stack of its own, follow them to the end and say where their results are."""
    home = Path(os.environ.get("STRATOS_HOME") or Path.home() / ".stratos" / ("demo-real" if real else "demo"))
    os.environ["STRATOS_HOME"] = str(home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    console.rule("[bold]Stratos demo" + (" with a real model (SmolLM2-135M-Instruct)" if real else ""))
    _build_models(console, real)
    sim_port = free_port()
    simulator = _start_simulator(home, sim_port)
    pids: dict[str, int] = {"teacher-sim": simulator.pid}
    try:
        wait_for_port(sim_port, 30)
        url, servers = _start_stack(home, real, pids)
        console.print(f"NATS {url}; services {', '.join(CONTROL)}; teacher simulator on port {sim_port}")
        registered = asyncio.run(client.wait_until_ready(url))
        asyncio.run(client.wait_for_workers(url, servers))
        console.print(f"inventory ready: {registered} servers in the catalog; workers on {', '.join(servers)}")
        provider = setup_tracing("cli", home / "traces")
        job_ids = asyncio.run(_submit_all(url, f"http://127.0.0.1:{sim_port}/v1", real, console))
        provider.force_flush()
        states = asyncio.run(follow(job_ids, url, console, job_ids[0], timeout_s, home))
        console.print(summary(states))
        _say_where_to_look(console, states, asyncio.run(save_reports(states, url, home / "reports")), home)
        ok = len(states) == len(job_ids) and all(s.status == "completed" for s in states)
        if keep:
            console.print("stack left running (--keep); stop it with `stratos down`")
            StackState(nats_url=url, pids=pids, servers=servers).save(home)
            pids = {}
        return 0 if ok else 1
    finally:
        stop_pids(pids)
