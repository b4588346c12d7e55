"""One partition trial: a server on another host is cut off while it trains or while it serves.

The control plane (nats-server on every interface, the four control services) and a second server run here; the
first server's trainer and deployer run in a network namespace (`tests/netns.py`: another host, reachable only
over a veth pair, with its own STRATOS_HOME), logged in with only that server's credential. The job is placed
there (the only server with workers when it is submitted); during training (after its first checkpoint) or once
it serves, the link is taken down. Nothing is killed and nothing is said. What must follow:

- the inventory notices the silence (ServerDown, heartbeat-timeout) and the selector re-plans onto the second
  server, which resumes training from the checkpoint (or redeploys the trained model) and serves the job;
- the cut-off worker fences itself (its heartbeats do not get through) and stops its run or its model server;
- once the link heals, whatever the cut-off server still had to say is ignored: one training, one completion,
  nothing from it for the new placement, and exactly one model server for the job.

`tests/e2e/test_partition.py` runs one trial of each; `bench/partitions.py` repeats them for p50/p99 figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nats

from stratos_cli.client import wait_for_workers, wait_until_ready
from stratos_cli.stack import CONTROL, advertise_host, launch_server, launch_service, service_env
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET
from stratos_shared.bus.permissions import write_auth
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from stratos_shared.teacher.simulator import running_simulator
from tests.e2e.stack import CATALOG, stop_and_reap
from tests.faults.matrix import ENV, simulator_config, tiny_job
from tests.faults.stack import serving_pids, stream_events
from tests.netns import Host

Stage = Literal["training", "serving"]
CUT_SERVER, OTHER_SERVER = "t4-us-east", "l4-us-west"
HEAL_SETTLE_S = 12.0
"""After the heal: the cut-off workers reconnect and flush what they held; a few heartbeats' time."""
# The services run with the fault tests' small stages (`tests.faults.matrix.ENV`): a few held-out items, short
# generations, a 5 s lease.


@dataclass
class Trial:
    stage: Stage
    replanned_s: float = 0.0
    """From the cut to the job's new placement (ServerChosen revision 2) seen on the bus."""
    serving_again_s: float = 0.0
    """From the cut to the job served again (ModelDeployed revision 2)."""
    violations: list[str] = field(default_factory=list)
    late_from_cut_server: int = 0
    """Events of the job the cut-off server published that were stored after the re-plan (ignored by the ledger)."""


def job_spec(job_id: str, teacher_url: str) -> JobSpec:
    """The fault tests' tiny math job, long enough in training (200 steps, a checkpoint every 10) to be cut mid-run."""
    spec = tiny_job(job_id, teacher_url)
    training = spec.training.model_copy(update={"max_steps": 200, "checkpoint_every_steps": 10})
    return spec.model_copy(update={"training": training})


async def wait(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} not within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """The CLI helpers (`wait_until_ready`, `wait_for_workers`) read their login from the environment."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def partition_trial(workdir: Path, host: Host, stage: Stage, job_id: str = "part-1") -> Trial:
    """Run one trial; `Trial.violations` lists every way it went wrong (empty: it survived)."""
    trial = Trial(stage)
    config, credentials = write_auth(workdir / "auth", [CUT_SERVER, OTHER_SERVER])
    broker = NatsServerProcess(
        store_dir=workdir / "jetstream", host="0.0.0.0", config_file=config, log_file=workdir / "nats.log"
    ).start()
    home, remote_home = workdir / "home", workdir / "remote-home"
    pids: dict[str, int] = {}
    cli = credentials["cli"]
    events: list[dict[str, Any]] = []

    def login(user: str) -> dict[str, str]:
        return {"STRATOS_NATS_USER": user, "STRATOS_NATS_PASSWORD": credentials[user].password}

    def of(event_type: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in events if e.get("event_type") == event_type and all(e.get(k) == v for k, v in match.items())]

    async def on_event(msg: Any) -> None:
        body = json.loads(msg.data)
        body["_seen"] = time.monotonic()
        events.append(body)

    nc = await nats.connect(broker.url, user=cli.user, password=cli.password)
    try:
        with environ(login("cli")), running_simulator(simulator_config([job_id])) as sim:
            await ensure_infrastructure(nc.jetstream())
            await nc.subscribe("stratos.evt.>", cb=on_event)
            env = service_env(home, broker.url, 1, {"STRATOS_CATALOG": str(CATALOG), **ENV})
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            for service in CONTROL:
                pids[service] = launch_service(service, home, env | login(service))
            # The other host: its own home, the control plane's address over the veth pair, its own credential.
            remote_env = service_env(remote_home, f"nats://{host.gateway}:{broker.port}", 1, ENV)
            remote_env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            remote = login(f"server-{CUT_SERVER}")
            pids |= launch_server(
                CUT_SERVER, 0, remote_home, remote_env, extra=remote, advertise=host.address, prefix=host.prefix()
            )
            await wait_until_ready(broker.url)
            await wait_for_workers(broker.url, [CUT_SERVER])
            submitted = JobSubmitted(job_id=job_id, spec=job_spec(job_id, sim.base_url))
            await nc.jetstream().publish(
                submitted.SUBJECT, submitted.to_bytes(), headers={"Nats-Msg-Id": submitted.event_id}
            )
            await wait(lambda: of("ServerChosen", job_id=job_id), 120, "the job's placement")
            placed = of("ServerChosen", job_id=job_id)[0]["server"]["id"]
            if placed != CUT_SERVER:
                raise AssertionError(f"the job was placed on {placed}, not on the only server with workers")
            pids |= launch_server(OTHER_SERVER, 1, home, env, extra=login(f"server-{OTHER_SERVER}"))
            await wait_for_workers(broker.url, [OTHER_SERVER])
            if stage == "training":
                await wait(
                    lambda: any(e.get("checkpoint_uri") for e in of("TrainingProgress", job_id=job_id)),
                    300,
                    "a checkpoint on the server about to be cut off",
                )
            else:
                await wait(lambda: of("JobCompleted", job_id=job_id), 300, "the job served on the cut-off server")

            host.cut()
            cut_at = time.monotonic()
            await wait(lambda: of("ServerChosen", job_id=job_id, revision=2), 60, "the re-plan after the cut")
            trial.replanned_s = of("ServerChosen", job_id=job_id, revision=2)[0]["_seen"] - cut_at
            await wait(lambda: of("ModelDeployed", job_id=job_id, revision=2), 300, "the job served again")
            trial.serving_again_s = of("ModelDeployed", job_id=job_id, revision=2)[0]["_seen"] - cut_at
            await wait(lambda: of("JobCompleted", job_id=job_id), 60, "the job completed")

            host.heal()
            await asyncio.sleep(HEAL_SETTLE_S)
            stored = await stream_events(nc)
            found = await TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState).get(job_id)
            fenced_by = "trainer" if stage == "training" else "deployer"
            remote_logs = "".join(
                p.read_text(errors="replace") for p in (remote_home / "logs").glob(f"{fenced_by}*.log")
            )
            local_servers, remote_servers = serving_pids(home, job_id), serving_pids(remote_home, job_id)
    finally:
        stop_and_reap(pids)
        await nc.close()
        broker.stop()

    v = trial.violations
    mine = [e for e in stored if e.get("job_id") == job_id]
    types = [e["event_type"] for e in mine]
    for required in ("ServerChosen", "TeacherChosen", "DataReady", "ModelTrained", "ModelDeployed", "JobCompleted"):
        if required not in types:
            v.append(f"{required} lost")
    for once in ("ModelTrained", "JobCompleted"):
        if types.count(once) > 1:
            v.append(f"{once} stored {types.count(once)} times")
    if "JobFailed" in types:
        v.append("the job failed")
    down = [e for e in stored if e.get("event_type") == "ServerDown" and e.get("server_id") == CUT_SERVER]
    if [e["reason"] for e in down][:1] != ["heartbeat-timeout"]:
        v.append(f"the cut-off server was not declared down from its silence: {down}")
    chosen = {e["revision"]: e["server"]["id"] for e in mine if e["event_type"] == "ServerChosen"}
    if chosen.get(2) != OTHER_SERVER:
        v.append(f"re-placed on {chosen.get(2)}, not {OTHER_SERVER}")
    trained = next((e for e in mine if e["event_type"] == "ModelTrained"), {})
    if stage == "training" and (trained.get("server_id") != OTHER_SERVER or not trained.get("resumed_from_step")):
        v.append(f"training did not resume on the new server from the checkpoint: {trained}")
    if [e for e in mine if e.get("server_id") == CUT_SERVER and e.get("revision") not in (None, 1)]:
        v.append("the cut-off server published for a placement that was never its own")
    replan_at = next(i for i, e in enumerate(mine) if e["event_type"] == "ServerChosen" and e["revision"] == 2)
    trial.late_from_cut_server = sum(1 for e in mine[replan_at:] if e.get("server_id") == CUT_SERVER)
    if "fencing myself" not in remote_logs:
        v.append(f"the cut-off {fenced_by} did not fence itself")
    state = found[0] if found else None
    if state is None or state.status != "completed" or state.server_id != OTHER_SERVER:
        v.append(f"the ledger does not say completed on {OTHER_SERVER}: {state}")
    elif not (state.endpoint or "").startswith(f"http://{advertise_host(1)}:"):
        v.append(f"the ledger's endpoint {state.endpoint} is not the new server's")
    if len(local_servers) != 1 or remote_servers:
        v.append(f"model servers after the heal: {len(local_servers)} here, {len(remote_servers)} on the cut-off host")
    return trial
