"""A region outage: every server of one region dies at once; how long until each of its jobs is placed again.

Real nats-server, real inventory and selector (default heartbeat timings: 2 s beats, 8 s timeout, 1 s
checks), one real process per server sending that server's heartbeats. These are STAND-INS for the
server's trainer and deployer: the same `ServerAgent` they run, without torch, so 12 servers fit on a
laptop; only liveness and placement are measured here. Jobs are submitted and placed (nothing downstream
runs), then every server process of the region holding the most jobs is SIGKILLed and nothing is said.
For each of its jobs the script times death -> ServerChosen revision 2 as seen by a subscriber, and
prints p50 / p99 / max.

    python bench/region_outage.py [--jobs 24] [--servers-per-region 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nats
import yaml

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

REGIONS = {"us-east": 30.0, "us-west": 45.0, "eu-west": 60.0}


def catalog(per_region: int) -> list[dict[str, object]]:
    servers = []
    for region, latency in REGIONS.items():
        for i in range(per_region):
            servers.append(
                {
                    "id": f"a100-{region}-{i}",
                    "gpu_model": "A100-80G",
                    "gpu_count": 1,
                    "gpu_memory_gb": 80,
                    "cost_per_hour": round(1.8 + 0.05 * i, 2),
                    "region": region,
                    "latency_ms": latency + i,
                    "capacity": 4,
                }
            )
    return servers


async def agent(server_id: str, url: str) -> None:
    """STAND-IN for one server's workers: its heartbeats, as `ServerAgent` sends them, and nothing else."""
    from stratos_shared.agent import ServerAgent

    nc = await nats.connect(url)
    await ServerAgent(server_id, f"bench-agent:{os.getpid()}", "agent", list).run(nc)


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def one_round(jobs: int, per_region: int, work: Path) -> list[float]:
    from stratos_cli.client import wait_for_workers, wait_until_ready
    from stratos_inventory.main import build as build_inventory
    from stratos_inventory.settings import InventorySettings
    from stratos_selector.main import build as build_selector
    from stratos_selector.settings import SelectorSettings
    from stratos_shared.bus.infra import ensure_infrastructure
    from stratos_shared.contracts.events import JobSubmitted
    from stratos_shared.contracts.job import JobSpec
    from stratos_shared.embedded import NatsServerProcess
    from tests.nats.services import running

    servers = catalog(per_region)
    (work / "servers.yaml").write_text(yaml.safe_dump({"servers": servers}))
    broker = NatsServerProcess(store_dir=work / "js", log_file=work / "nats.log").start()
    agents: dict[str, subprocess.Popen[bytes]] = {}
    try:
        nc = await nats.connect(broker.url)
        await ensure_infrastructure(nc.jetstream())
        base = {"nats_url": broker.url, "home": work / "home"}
        chosen: dict[str, list[tuple[int, str, float]]] = {}

        async def on_chosen(msg: nats.aio.msg.Msg) -> None:
            body = json.loads(msg.data)
            chosen.setdefault(body["job_id"], []).append((body["revision"], body["server"]["id"], time.time()))

        await nc.subscribe("stratos.evt.server.chosen", cb=on_chosen)
        for server in servers:
            sid = str(server["id"])
            agents[sid] = subprocess.Popen([sys.executable, __file__, "--agent", sid, "--url", broker.url])
        inventory = build_inventory(InventorySettings(**base, catalog=work / "servers.yaml"))  # type: ignore[arg-type]
        selector = build_selector(SelectorSettings(**base))  # type: ignore[arg-type]
        async with running(inventory, selector):
            await wait_until_ready(broker.url)
            await wait_for_workers(broker.url, list(agents))
            spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
            for i in range(jobs):
                event = JobSubmitted(job_id=f"outage-{i}", spec=spec.model_copy(update={"name": f"outage-{i}"}))
                await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})
            await until(lambda: len(chosen) >= jobs, 60)
            placed = {job: revs[0][1] for job, revs in chosen.items()}
            region_of = {str(s["id"]): str(s["region"]) for s in servers}
            region, _ = Counter(region_of[s] for s in placed.values()).most_common(1)[0]
            victims = [job for job, server in placed.items() if region_of[server] == region]
            died = time.time()
            for sid, process in agents.items():
                if region_of[sid] == region:
                    process.send_signal(signal.SIGKILL)
            await until(lambda: all(len(chosen[j]) >= 2 for j in victims), 60)
            missing = [j for j in victims if len(chosen[j]) < 2]
            if missing:
                raise SystemExit(f"{len(missing)} jobs of {region} were never placed again: {missing[:5]}")
            print(f"  {len(victims)} of {len(placed)} jobs were in {region}; its {per_region} servers SIGKILLed")
            return [chosen[j][1][2] - died for j in victims]
    finally:
        for process in agents.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=24, help="at most the slots left after an outage (8 x 4)")
    parser.add_argument("--servers-per-region", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(agent(args.agent, args.url))
        return 0
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:  # removed after the last round (span exporters write there)
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}")
            work = Path(tmp) / f"round-{round_no}"
            work.mkdir()
            delays += asyncio.run(one_round(args.jobs, args.servers_per_region, work))
    print(
        f"death -> new placement over {len(delays)} jobs: p50 {percentile(delays, 0.5):.2f} s, "
        f"p99 {percentile(delays, 0.99):.2f} s, max {max(delays):.2f} s, mean {statistics.mean(delays):.2f} s "
        "(heartbeat timeout 8 s, checks every 1 s, beats every 2 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
