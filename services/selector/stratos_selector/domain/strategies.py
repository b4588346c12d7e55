"""Server selection strategies: Pareto Front Grid and the baselines it is compared with.

Objectives (per feasible server): hardware capability H (maximised), estimated
job cost in USD and network latency in ms (both minimised). Each is min-max
normalised over the *feasible* servers to [0, 1] with 0 the best (hardware as
1 - norm H), and cut into ``grid_k`` equal cells per axis (see `grid`).

**Pareto Front Grid rule** (strategy ``pareto``):

1. Keep the Pareto-optimal feasible servers (exact, on the raw objectives).
2. Among them take the cell with the lowest cost index; ties: the lowest
   latency index, then the lowest hardware index.
3. Within that cell take the server nearest (Euclidean, normalised space) to
   the ideal point (0, 0, 0); ties by server id.

Ranking of alternatives for ``pareto``: front members by (cost cell, latency
cell, hardware cell, distance, id) — the same order as the rule, so rank 1 is
the choice — then the dominated servers by (distance, id).

Baselines (same interface; ranking = the key, last tie-break the server id):
``accuracy-first`` strongest H, then cost, latency; ``cost-first`` cheapest,
then latency, strongest H; ``latency-first`` lowest latency, then cost,
strongest H; ``weighted-sum`` lowest ``w · normalised`` with
``SelectionSpec.weights`` for (hardware, cost, latency); ``random`` a uniform
draw seeded by ``SelectionSpec.seed`` and the job name (stable across runs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stratos_selector.domain.constraints import Feasibility, binding, check
from stratos_selector.domain.estimates import Workload, job_cost, workload_for
from stratos_selector.domain.grid import cells, normalise_objectives
from stratos_selector.domain.pareto import ShrinkingFront, pareto_mask
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.selection import (
    Alternative,
    GridCell,
    NormalisedObjectives,
    Objectives,
    ResourceEstimate,
    SelectionExplanation,
)
from stratos_shared.contracts.servers import ServerSpec

STRATEGIES = ("pareto", "accuracy-first", "cost-first", "latency-first", "random", "weighted-sum")
TOP = 10


@dataclass(frozen=True)
class Selection:
    """The chosen server, the top-ranked alternatives (chosen first) and the explanation."""

    server: ServerSpec
    alternatives: tuple[Alternative, ...]
    explanation: SelectionExplanation


@dataclass(frozen=True)
class Infeasible:
    """No server can take the job: the binding constraint, the closest server and why."""

    constraint: str
    reason: str
    closest: ServerSpec | None
    explanation: SelectionExplanation


@dataclass(frozen=True)
class _Feasible:
    """Objective data of the feasible servers (index j ↔ table row ``rows[j]``)."""

    rows: NDArray[np.intp]
    hardware: NDArray[np.float64]
    cost: NDArray[np.float64]
    latency: NDArray[np.float64]
    norm: NDArray[np.float64]
    cell: NDArray[np.int64]
    distance: NDArray[np.float64]
    front: NDArray[np.bool_]
    ids: _LazyIds


def select(
    servers: Sequence[ServerSpec] | ServerTable,
    job: JobSpec,
    *,
    exclude: Set[str] = frozenset(),
    load: Mapping[str, int] | NDArray[np.float64] | None = None,
    strategy: str | None = None,
    front: ShrinkingFront | None = None,
) -> Selection | Infeasible:
    """Pick a server for ``job`` with ``strategy`` (default: the job's ``selection.strategy``).

    ``exclude``: server ids ruled out (e.g. down); ``load``: jobs placed per server id (or per table row). Pass a
    prebuilt `ServerTable` to select repeatedly, a `front` where feasible sets only shrink (`batch.select_each`)."""
    name = strategy or job.selection.strategy
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    table = servers if isinstance(servers, ServerTable) else ServerTable.from_servers(servers)
    work = workload_for(job)
    memory = work.memory_per_gpu_gib(table.gpu_count)
    hours = work.training_hours(table.effective_tflops)
    cost = job_cost(work, hours, table.cost_per_hour)
    excluded = table.excluded_array(exclude)
    feas = check(
        table,
        memory_needed=memory,
        cost=cost,
        latency_slo_ms=job.constraints.latency_slo_ms,
        budget_usd=job.constraints.budget_usd,
        excluded=excluded,
        load=load if isinstance(load, np.ndarray) else table.load_array(load),
    )
    rows = np.flatnonzero(feas.feasible)
    k = job.selection.grid_k

    def estimate(i: int) -> ResourceEstimate:
        return _estimate(work, float(memory[i]), float(hours[i]), float(cost[i]))

    if rows.size == 0:
        return _infeasible(table, feas, name, k, estimate)
    f = _feasible(table, rows, cost[rows], k, front)
    ranked, why = _RANKERS[name](f, job)
    chosen = int(ranked[0])
    alternatives = [_alternative(f, int(j), r + 1, why(int(j), chosen)) for r, j in enumerate(ranked[:TOP])]
    row = int(f.rows[chosen])
    return Selection(
        server=table.servers[row],
        alternatives=tuple(alternatives),
        explanation=SelectionExplanation(
            strategy=name,
            total_count=len(table),
            feasible_count=int(rows.size),
            pareto_size=int(np.count_nonzero(f.front)),
            grid_k=k,
            chosen_server_id=f.ids[chosen],
            chosen_cell=alternatives[0].cell,
            excluded=feas.counts_by_first_reason(),
            alternatives=alternatives,
            estimate=estimate(row),
        ),
    )


def _infeasible(
    table: ServerTable, feas: Feasibility, strategy: str, k: int, estimate: Callable[[int], ResourceEstimate]
) -> Infeasible:
    """No feasible server: the constraint that binds, and the server that came closest to meeting it."""
    bind = binding(table, feas)
    closest = None if bind.closest_index is None else table.servers[bind.closest_index]
    return Infeasible(
        constraint=bind.constraint,
        reason=bind.reason,
        closest=closest,
        explanation=SelectionExplanation(
            strategy=strategy,
            total_count=len(table),
            feasible_count=0,
            pareto_size=0,
            grid_k=k,
            excluded=feas.counts_by_first_reason(),
            binding_constraint=bind.constraint,
            infeasible_reason=bind.reason,
            estimate=None if bind.closest_index is None else estimate(bind.closest_index),
        ),
    )


def _estimate(work: Workload, per_gpu: float, hours: float, cost: float) -> ResourceEstimate:
    return ResourceEstimate(
        memory_gb_needed=round(work.memory_gib, 3),
        memory_gb_per_gpu=round(per_gpu, 3),
        training_hours=round(hours, 4),
        serving_hours=work.serving_hours,
        estimated_cost_usd=round(cost, 2),
        student_params_b=work.params_b,
        method=work.method,
    )


def _feasible(
    table: ServerTable, rows: NDArray[np.intp], cost: NDArray[np.float64], k: int, front: ShrinkingFront | None
) -> _Feasible:
    hardware, latency = table.hardware[rows], table.latency_ms[rows]
    points = np.column_stack((-hardware, cost, latency))
    norm = normalise_objectives(hardware, cost, latency)
    return _Feasible(
        rows=rows,
        hardware=hardware,
        cost=cost,
        latency=latency,
        norm=norm,
        cell=cells(norm, k),
        distance=np.sqrt((norm * norm).sum(axis=1)),
        front=pareto_mask(points) if front is None else front.mask(rows, points),
        ids=_LazyIds(table, rows),
    )


class _LazyIds:
    """Server ids of the feasible rows, fetched only for the few that are ranked or tie."""

    def __init__(self, table: ServerTable, rows: NDArray[np.intp]) -> None:
        self._servers, self._rows = table.servers, rows

    def __getitem__(self, j: int) -> str:
        return self._servers[int(self._rows[j])].id


# --- ranking ---------------------------------------------------------------------------------

Why = Callable[[int, int], str | None]
Ranker = Callable[[_Feasible, JobSpec], tuple[NDArray[np.intp], Why]]


def _top(f: _Feasible, subset: NDArray[np.intp], keys: Sequence[NDArray[np.float64]], m: int) -> NDArray[np.intp]:
    """The best ``m`` of ``subset`` by lexicographic ``keys`` (most significant first), then server id.

    Only the rows whose first key is within the best ``m`` (ties included) are sorted, so ranking 1M
    servers costs one partition.
    """
    if subset.size == 0:
        return subset
    first = keys[0][subset]
    if subset.size > m:
        kth = np.partition(first, m - 1)[m - 1]
        pick = first <= kth
        subset, first = subset[pick], first[pick]
    id_rank = np.argsort(np.argsort(np.array([f.ids[int(j)] for j in subset])))
    order = np.lexsort((id_rank, *[key[subset] for key in reversed(keys[1:])], first))
    return subset[order][:m]


def _rank_pareto(f: _Feasible, job: JobSpec) -> tuple[NDArray[np.intp], Why]:
    front = np.flatnonzero(f.front)
    cell = f.cell.astype(np.float64)
    ranked_front = _top(f, front, (cell[:, 1], cell[:, 2], cell[:, 0], f.distance), TOP)
    rest = _top(f, np.flatnonzero(~f.front), (f.distance,), TOP)
    ranked = np.concatenate((ranked_front, rest))[:TOP]
    axes = ((1, "cost"), (2, "latency"), (0, "hardware"))

    def why(j: int, chosen: int) -> str | None:
        if j == chosen:
            return None
        if not f.front[j]:
            return _dominated_by(f, j, chosen)
        for axis, label in axes:
            if f.cell[j, axis] != f.cell[chosen, axis]:
                return f"higher {label} cell ({f.cell[j, axis]} vs {f.cell[chosen, axis]})"
        gap = f.distance[j] - f.distance[chosen]
        if gap > 0:
            return f"same Pareto cell but {gap:.3f} farther from ideal"
        return "same Pareto cell and distance; loses the tie on server id"

    return ranked, why


def _dominated_by(f: _Feasible, j: int, chosen: int) -> str:
    """Name a front server that dominates j (the chosen one if it does, else the nearest to ideal)."""
    front = np.flatnonzero(f.front)
    objs = np.column_stack((-f.hardware, f.cost, f.latency))
    me = objs[j]
    dom = front[np.all(objs[front] <= me, axis=1) & np.any(objs[front] < me, axis=1)]
    best = chosen if chosen in set(dom.tolist()) else int(dom[np.argmin(f.distance[dom])])
    better = [
        label
        for axis, label in ((0, "stronger hardware"), (1, "cheaper"), (2, "lower latency"))
        if objs[best, axis] < me[axis]
    ]
    return f"dominated by {f.ids[best]} ({' and '.join(better)})"


def _by_key(labels: Sequence[tuple[str, Callable[[_Feasible], NDArray[np.float64]], Callable[[float], str]]]) -> Ranker:
    """A baseline ranking by lexicographic keys; why_not names the first key where it loses."""

    def rank(f: _Feasible, job: JobSpec) -> tuple[NDArray[np.intp], Why]:
        keys = [key(f) for _, key, _ in labels]
        ranked = _top(f, np.arange(len(f.rows)), keys, TOP)

        def why(j: int, chosen: int) -> str | None:
            if j == chosen:
                return None
            for (label, _, fmt), key in zip(labels, keys, strict=True):
                if key[j] != key[chosen]:
                    return f"{label} ({fmt(key[j])} vs {fmt(key[chosen])})"
            return "ties on every objective; loses on server id"

        return ranked, why

    return rank


_HW = ("weaker hardware", lambda f: -f.hardware, lambda v: f"H {-v:.2f}")
_COST = ("higher estimated cost", lambda f: f.cost, lambda v: f"${v:,.2f}")
_LAT = ("higher latency", lambda f: f.latency, lambda v: f"{v:.1f} ms")


def _rank_weighted(f: _Feasible, job: JobSpec) -> tuple[NDArray[np.intp], Why]:
    weights = np.asarray(job.selection.weights, dtype=np.float64)
    score = f.norm @ weights
    return _by_key([("higher weighted score", lambda _: score, lambda v: f"{v:.3f}")])(f, job)


def random_seed(job: JobSpec) -> int:
    """Stable seed from SelectionSpec.seed and the job name (Python's hash() is salted per process)."""
    digest = hashlib.sha256(f"{job.selection.seed}\x1f{job.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _rank_random(f: _Feasible, job: JobSpec) -> tuple[NDArray[np.intp], Why]:
    draw = np.random.default_rng(random_seed(job)).random(len(f.rows))
    ranked = _top(f, np.arange(len(f.rows)), (draw,), TOP)
    seed = job.selection.seed
    return ranked, lambda j, chosen: None if j == chosen else f"not drawn (random strategy, seed {seed})"


_RANKERS: dict[str, Ranker] = {
    "pareto": _rank_pareto,
    "accuracy-first": _by_key([_HW, _COST, _LAT]),
    "cost-first": _by_key([_COST, _LAT, _HW]),
    "latency-first": _by_key([_LAT, _COST, _HW]),
    "weighted-sum": _rank_weighted,
    "random": _rank_random,
}


def _alternative(f: _Feasible, j: int, rank: int, why_not: str | None) -> Alternative:
    n, c = f.norm[j], f.cell[j]
    return Alternative(
        server_id=f.ids[j],
        rank=rank,
        objectives=Objectives(hardware=float(f.hardware[j]), cost_usd=float(f.cost[j]), latency_ms=float(f.latency[j])),
        normalised=NormalisedObjectives(hardware=float(n[0]), cost=float(n[1]), latency=float(n[2])),
        cell=GridCell(hardware=int(c[0]), cost=int(c[1]), latency=int(c[2])),
        on_front=bool(f.front[j]),
        distance=float(f.distance[j]),
        why_not=why_not,
    )
