"""Selection: feasibility never violated, the Pareto Front Grid rule, baselines, infeasible reasons."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from selector_helpers import make_job

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.estimates import job_cost, workload_for
from stratos_selector.domain.strategies import STRATEGIES, Infeasible, Selection, select
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerSpec

jobs = st.builds(
    lambda p, m, slo, budget, k, seed: make_job(
        params_b=p, method=m, latency_slo_ms=slo, budget_usd=budget, grid_k=k, seed=seed
    ),
    st.sampled_from([0.001, 0.5, 1.5, 7.0, 14.0, 70.0]),
    st.sampled_from(["lora-sft", "sft", "grpo"]),
    st.sampled_from([3.0, 30.0, 100.0, 250.0, 1000.0]),
    st.sampled_from([1.0, 20.0, 60.0, 300.0, 5000.0]),
    st.integers(1, 12),
    st.integers(0, 5),
)


def oracle(servers: list[ServerSpec], job: JobSpec, exclude: set[str], load: dict[str, int]) -> list[dict[str, Any]]:
    """Plain-Python feasibility and objectives, one server at a time."""
    work = workload_for(job)
    rows = []
    for s in servers:
        table = ServerTable.from_servers([s])
        per_device = float(work.memory_per_gpu_gib(table.gpu_count)[0])
        hours = work.training_hours(table.effective_tflops)
        cost = float(job_cost(work, hours, table.cost_per_hour)[0])
        ok = (
            s.id not in exclude
            and load.get(s.id, 0) < s.capacity
            and per_device <= float(table.gpu_memory_gib[0])
            and s.latency_ms <= job.constraints.latency_slo_ms
            and cost <= job.constraints.budget_usd
        )
        if ok:
            rows.append({"id": s.id, "h": float(table.hardware[0]), "c": cost, "l": s.latency_ms})
    return rows


def pareto_rule(rows: list[dict[str, Any]], k: int) -> str:
    """The documented rule, written out naively."""

    def norm(key: str, flip: bool = False) -> list[float]:
        vals = [r[key] for r in rows]
        lo, hi = min(vals), max(vals)
        out = [0.0 if hi <= lo else (v - lo) / (hi - lo) for v in vals]
        return [1 - v if flip and hi > lo else v for v in out]

    nh, nc, nl = norm("h", True), norm("c"), norm("l")
    objs = [(-r["h"], r["c"], r["l"]) for r in rows]
    best = None
    for i, r in enumerate(rows):
        dominated = any(all(a <= b for a, b in zip(o, objs[i], strict=True)) and o != objs[i] for o in objs)
        if dominated:
            continue
        cell = tuple(min(math.floor(v * k), k - 1) for v in (nc[i], nl[i], nh[i]))
        key = (*cell, math.sqrt(nh[i] ** 2 + nc[i] ** 2 + nl[i] ** 2), r["id"])
        best = key if best is None or key < best else best
    assert best is not None
    return str(best[-1])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[ServerSpec], JobSpec, set[str], dict[str, int]]:
    servers = generate_catalog(draw(st.integers(1, 60)), seed=draw(st.integers(0, 10_000)))
    ids = [s.id for s in servers]
    exclude = set(draw(st.lists(st.sampled_from(ids), max_size=5)))
    load = {i: draw(st.integers(0, 3)) for i in draw(st.lists(st.sampled_from(ids), max_size=10))}
    return servers, draw(jobs), exclude, load


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from(STRATEGIES))
def test_choice_is_feasible_and_infeasible_is_true(scenario, strategy: str) -> None:
    servers, job, exclude, load = scenario
    rows = oracle(servers, job, exclude, load)
    result = select(servers, job, exclude=exclude, load=load, strategy=strategy)
    if not rows:
        assert isinstance(result, Infeasible)
        assert result.explanation.feasible_count == 0
        assert sum(result.explanation.excluded.values()) == len(servers)
        return
    assert isinstance(result, Selection)
    by_id = {r["id"]: r for r in rows}
    assert result.server.id in by_id
    ex = result.explanation
    assert ex.feasible_count == len(rows) and ex.total_count == len(servers)
    assert sum(ex.excluded.values()) == len(servers) - len(rows)
    assert ex.alternatives[0].server_id == result.server.id and ex.alternatives[0].why_not is None
    assert all(a.why_not for a in ex.alternatives[1:])
    assert [a.rank for a in ex.alternatives] == list(range(1, len(ex.alternatives) + 1))
    chosen = by_id[result.server.id]
    if strategy == "pareto":
        assert ex.alternatives[0].on_front
        assert result.server.id == pareto_rule(rows, job.selection.grid_k)
    elif strategy == "cost-first":
        assert chosen["c"] == min(r["c"] for r in rows)
    elif strategy == "latency-first":
        assert chosen["l"] == min(r["l"] for r in rows)
    elif strategy == "accuracy-first":
        assert chosen["h"] == max(r["h"] for r in rows)


@settings(max_examples=40, deadline=None)
@given(scenarios(), st.sampled_from(STRATEGIES))
def test_deterministic_and_independent_of_catalog_order(scenario, strategy: str) -> None:
    servers, job, exclude, load = scenario
    first = select(servers, job, exclude=exclude, load=load, strategy=strategy)
    again = select(servers, job, exclude=exclude, load=load, strategy=strategy)
    assert first == again
    if strategy != "random" and isinstance(first, Selection):
        shuffled = servers[:]
        random.Random(1).shuffle(shuffled)
        other = select(shuffled, job, exclude=exclude, load=load, strategy=strategy)
        assert isinstance(other, Selection) and other.server.id == first.server.id


def test_weighted_sum_with_only_cost_weight_is_cheapest() -> None:
    servers = generate_catalog(300, seed=3)
    job = make_job(strategy="weighted-sum", weights=(0.0, 1.0, 0.0))
    a, b = select(servers, job), select(servers, job, strategy="cost-first")
    assert isinstance(a, Selection) and isinstance(b, Selection)
    assert a.alternatives[0].objectives.cost_usd == b.alternatives[0].objectives.cost_usd


def test_random_depends_on_seed_and_job_name() -> None:
    servers = generate_catalog(500, seed=4)
    picks = {
        r.server.id
        for seed in range(6)
        for r in [select(servers, make_job(strategy="random", seed=seed, budget_usd=10_000))]
        if isinstance(r, Selection)
    }
    assert len(picks) > 1


def _srv(i: str, **kw: object) -> ServerSpec:
    base: dict[str, object] = {
        "id": i,
        "gpu_model": "A100-80G",
        "gpu_count": 1,
        "gpu_memory_gb": 80,
        "cost_per_hour": 1.0,
        "latency_ms": 20,
    }
    return ServerSpec.model_validate(base | kw)


def test_infeasible_names_memory_with_numbers() -> None:
    servers = [_srv("small", gpu_model="T4", gpu_memory_gb=16), _srv("mid", gpu_model="L4", gpu_memory_gb=24)]
    result = select(servers, make_job(params_b=14, budget_usd=1e6))
    assert isinstance(result, Infeasible) and result.constraint == "memory"
    assert "best has 24.0 GiB (mid)" in result.reason and result.reason.startswith("needs ")
    assert result.closest is not None and result.closest.id == "mid"


def test_infeasible_names_latency_budget_capacity_excluded() -> None:
    servers = [_srv("a", latency_ms=80), _srv("b", latency_ms=60)]
    lat = select(servers, make_job(latency_slo_ms=50))
    assert isinstance(lat, Infeasible) and lat.constraint == "latency" and "60.0 ms (b)" in lat.reason
    cost = select(servers, make_job(budget_usd=1))
    assert isinstance(cost, Infeasible) and cost.constraint == "budget" and "cheapest estimate" in cost.reason
    full = select(servers, make_job(), load={"a": 1, "b": 5})
    assert isinstance(full, Infeasible) and full.constraint == "at capacity"
    gone = select(servers, make_job(), exclude={"a", "b"})
    assert isinstance(gone, Infeasible) and gone.constraint == "excluded"


def test_binding_prefers_the_constraint_whose_relaxation_helps_most() -> None:
    # 'a' breaks only latency; 'b' and 'c' break only budget -> budget binds.
    servers = [_srv("a", latency_ms=500), _srv("b", cost_per_hour=1000), _srv("c", cost_per_hour=900)]
    result = select(servers, make_job(latency_slo_ms=100, budget_usd=50))
    assert isinstance(result, Infeasible) and result.constraint == "budget"
    assert result.closest is not None and result.closest.id == "c"


def test_explains_dominated_and_same_cell_losers() -> None:
    servers = [
        _srv("best", cost_per_hour=1.0, latency_ms=10),
        _srv("worse", cost_per_hour=2.0, latency_ms=20),
        _srv("twin", cost_per_hour=1.0, latency_ms=11),
    ]
    result = select(servers, make_job(grid_k=2))
    assert isinstance(result, Selection) and result.server.id == "best"
    why = {a.server_id: a.why_not for a in result.alternatives}
    assert why["worse"] == "dominated by best (cheaper and lower latency)"
    assert why["twin"] == "dominated by best (lower latency)"


def test_cpu_only_server_takes_a_tiny_student() -> None:
    cpu = ServerSpec(id="laptop", cost_per_hour=0.0, latency_ms=1, cpu_cores=8, memory_gb=16)
    result = select([cpu], make_job(params_b=0.001))
    assert isinstance(result, Selection) and result.server.id == "laptop"
    assert result.explanation.estimate is not None and result.explanation.estimate.memory_gb_needed < 16


def test_unknown_strategy_is_rejected() -> None:
    with np.testing.assert_raises(ValueError):
        select([_srv("a")], make_job(), strategy="best-vibes")
