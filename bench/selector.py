"""Selector speed: end-to-end selection at 1k…1M servers, and the Pareto step vs paretoset and pymoo.

Run: ``.venv/bin/python bench/selector.py [--max-n 1000000] [--repeats 7]``.
Medians of ``--repeats`` runs (fewer at 1M). "from specs" includes building the
column table from the ServerSpec list (a per-server Python loop); "table" is a
selection from a prebuilt `ServerTable`, what the selector service does with a
cached inventory. The NATS re-plan bench is added separately by the lead.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.estimates import job_cost, workload_for
from stratos_selector.domain.pareto import pareto_mask
from stratos_selector.domain.strategies import Selection, select
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec

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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
