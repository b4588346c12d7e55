"""Choosing for many jobs at once (a re-plan) gives exactly the choices of one `select` per job in turn."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stratos_selector.domain import Infeasible, Selection, ServerTable, generate_catalog, select
from stratos_selector.domain.batch import Request, select_each
from stratos_selector.domain.pareto import ShrinkingFront, pareto_mask
from tests.unit.selector.selector_helpers import make_job


def one_by_one(table: ServerTable, requests: list[Request], load: dict[str, int]) -> list[Selection | Infeasible]:
    """The reference: what `Planner.choose` did for one job after another."""
    taken = dict(load)
    out: list[Selection | Infeasible] = []
    for request in requests:
        outcome = select(table, request.job, exclude=request.failed, load=taken)
        if isinstance(outcome, Infeasible) and request.failed:
            outcome = select(table, request.job, load=taken)
        if isinstance(outcome, Selection):
            taken[outcome.server.id] = taken.get(outcome.server.id, 0) + 1
        out.append(outcome)
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_jobs=st.integers(1, 60), kinds=st.integers(1, 3))
def test_a_batch_chooses_what_one_selection_per_job_would(seed: int, n_jobs: int, kinds: int) -> None:
    rng = np.random.default_rng(seed)
    servers = generate_catalog(400, seed=seed)
    table = ServerTable.from_servers(servers)
    strategies = ["pareto", "pareto", "cost-first", "random"]
    jobs = [
        make_job(name=f"job-{i}", budget_usd=[20.0, 100.0, 500.0][i % kinds], strategy=strategies[int(rng.integers(4))])
        for i in range(n_jobs)
    ]
    failed = [frozenset({servers[int(rng.integers(len(servers)))].id, "gone"}) if rng.random() < 0.3 else frozenset()
              for _ in jobs]  # fmt: skip
    requests = [Request(job, f) for job, f in zip(jobs, failed, strict=True)]
    load = {s.id: int(rng.integers(0, 2)) for s in servers[:: int(rng.integers(2, 6))]}
    got, expected = select_each(table, requests, load), one_by_one(table, requests, load)
    assert [type(g) for g in got] == [type(e) for e in expected]
    assert [g.explanation for g in got] == [e.explanation for e in expected]


def test_jobs_fill_servers_in_turn_and_fail_once_nothing_is_left() -> None:
    servers = generate_catalog(30, seed=3)
    table = ServerTable.from_servers(servers)
    job = make_job(latency_slo_ms=10_000.0, budget_usd=10_000.0)
    slots = sum(s.capacity for s in servers if isinstance(select([s], job), Selection))
    requests = [Request(job.model_copy(update={"name": f"j{i}"})) for i in range(slots + 3)]
    got = select_each(table, requests, {})
    placed = [g.server.id for g in got if isinstance(g, Selection)]
    capacity = {s.id: s.capacity for s in servers}
    assert all(placed.count(server) <= capacity[server] for server in set(placed))
    assert len(placed) == slots and isinstance(got[-1], Infeasible)
    assert "capacity" in got[-1].reason


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), integers=st.booleans())
def test_a_shrinking_front_is_the_front_of_what_is_left(seed: int, integers: bool) -> None:
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 5, (200, 3)).astype(np.float64) if integers else rng.random((200, 3))
    rows = np.arange(200)
    front = ShrinkingFront()
    assert np.array_equal(front.mask(rows, points), pareto_mask(points))
    for _ in range(12):
        on_front = np.flatnonzero(pareto_mask(points))
        drop = rng.choice(on_front, size=min(len(on_front), int(rng.integers(1, 3))), replace=False)
        keep = np.setdiff1d(np.arange(len(rows)), drop)
        rows, points = rows[keep], points[keep]
        assert np.array_equal(front.mask(rows, points), pareto_mask(points))
    # not a shrink (a point changed): computed afresh, still right
    points = points.copy()
    points[0] -= 10
    assert np.array_equal(front.mask(rows, points), pareto_mask(points))
