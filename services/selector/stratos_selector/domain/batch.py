"""Choosing servers for many jobs at once (a region outage re-plans hundreds): the same choices as one `select`
per job in turn, each seeing the slots the earlier ones took, without re-running a selection whose inputs did
not change.

`select` reads a job only through `selection_key`, the exclusions only where they name a server of the table,
and the load only through which servers are full. So between two fills, every job with the key and exclusions
of an earlier one gets that job's selection again; a selection runs once per (key, exclusions) and again only
after a server fills.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stratos_selector.domain.estimates import workload_for
from stratos_selector.domain.pareto import ShrinkingFront
from stratos_selector.domain.strategies import Infeasible, Selection, select
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerSpec


@dataclass(frozen=True)
class Request:
    """One job to place: its spec and the servers that failed it (a last resort, as in `choose`)."""

    job: JobSpec
    failed: frozenset[str] = frozenset()


def selection_key(job: JobSpec) -> Hashable:
    """What `select` reads of a job: jobs with equal keys get equal selections from one table, exclusions and
    load (the name counts only for the random strategy's draw)."""
    name = job.name if job.selection.strategy == "random" else None
    constraints = job.constraints
    return workload_for(job), constraints.latency_slo_ms, constraints.budget_usd, job.selection.model_dump_json(), name


def select_each(
    table: ServerTable, requests: Sequence[Request], load: Mapping[str, int]
) -> list[Selection | Infeasible]:
    """For each request in order: `select` with its failed servers excluded (or, if nothing else fits, with none
    excluded), counting the slots the requests before it took."""
    known = table.index
    taken: dict[str, int] | NDArray[np.float64] = dict(load) if known is None else table.load_array(load)
    memo: dict[Hashable, Selection | Infeasible] = {}
    fronts: dict[Hashable, ShrinkingFront] = {}
    out: list[Selection | Infeasible] = []
    for request in requests:
        failed = request.failed if known is None else frozenset(s for s in request.failed if s in known)
        key = (selection_key(request.job), failed)
        outcome = memo.get(key)
        if outcome is None:
            outcome = memo[key] = _select(table, request.job, failed, taken, fronts, key)
        out.append(outcome)
        if isinstance(outcome, Selection) and _take(taken, known, outcome.server):
            memo.clear()  # a server filled: any selection may change
    return out


def _take(taken: dict[str, int] | NDArray[np.float64], known: Mapping[str, int] | None, server: ServerSpec) -> bool:
    """Count one more job on the server; True when that filled it."""
    if isinstance(taken, np.ndarray):
        assert known is not None
        row = known[server.id]
        taken[row] += 1
        return bool(taken[row] >= server.capacity)
    taken[server.id] = taken.get(server.id, 0) + 1
    return taken[server.id] >= server.capacity


def _select(
    table: ServerTable,
    job: JobSpec,
    failed: frozenset[str],
    load: Mapping[str, int] | NDArray[np.float64],
    fronts: dict[Hashable, ShrinkingFront],
    key: Hashable,
) -> Selection | Infeasible:
    outcome = select(table, job, exclude=failed, load=load, front=fronts.setdefault(key, ShrinkingFront()))
    if isinstance(outcome, Infeasible) and failed:
        outcome = select(table, job, load=load, front=fronts.setdefault((key, "all"), ShrinkingFront()))
    return outcome
