"""Feasibility: which servers can take the job, and in plain words why none can.

Checks, in this fixed order (also the order used to attribute an infeasible
server to one reason in the explanation counts): ``excluded`` (the caller ruled
it out, e.g. down), ``at capacity`` (load ≥ capacity), ``memory`` (per-device
need > device memory), ``latency`` (latency > SLO), ``budget`` (estimated cost >
budget; teacher spend is not known at placement time, so the whole budget is
compared with training + serving).

Binding constraint when nothing is feasible: the constraint that is the *sole*
violation of the most servers, i.e. relaxing it alone would make the most
servers feasible. If every server breaks two or more, the one broken by the
most servers. Ties go to the earlier check in the order above. The closest
server is the one with the least relative violation of that constraint among
the servers it is the sole violation of (or among all that break it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stratos_selector.domain.table import ServerTable

ORDER = ("excluded", "at capacity", "memory", "latency", "budget")


@dataclass(frozen=True)
class Feasibility:
    """Per-constraint violation masks over the table (True = violates)."""

    violations: dict[str, NDArray[np.bool_]]
    memory_needed: NDArray[np.float64]
    cost: NDArray[np.float64]
    latency_slo_ms: float
    budget_usd: float

    @property
    def feasible(self) -> NDArray[np.bool_]:
        bad = np.zeros(len(self.cost), dtype=np.bool_)
        for mask in self.violations.values():
            bad |= mask
        return ~bad

    def counts_by_first_reason(self) -> dict[str, int]:
        """Infeasible servers counted once, under the first check they fail."""
        seen = np.zeros(len(self.cost), dtype=np.bool_)
        counts: dict[str, int] = {}
        for name in ORDER:
            fresh = self.violations[name] & ~seen
            if (count := int(np.count_nonzero(fresh))) > 0:
                counts[name] = count
            seen |= fresh
        return counts


def check(
    table: ServerTable,
    *,
    memory_needed: NDArray[np.float64],
    cost: NDArray[np.float64],
    latency_slo_ms: float,
    budget_usd: float,
    excluded: NDArray[np.bool_],
    load: NDArray[np.float64],
) -> Feasibility:
    """Evaluate every constraint on every server (vectorised)."""
    return Feasibility(
        violations={
            "excluded": excluded,
            "at capacity": load >= table.capacity,
            "memory": memory_needed > table.gpu_memory_gib,
            "latency": table.latency_ms > latency_slo_ms,
            "budget": cost > budget_usd,
        },
        memory_needed=memory_needed,
        cost=cost,
        latency_slo_ms=latency_slo_ms,
        budget_usd=budget_usd,
    )


@dataclass(frozen=True)
class Binding:
    """The constraint to relax first, the closest server and a one-line reason."""

    constraint: str
    closest_index: int | None
    reason: str


def binding(table: ServerTable, feas: Feasibility) -> Binding:
    """Name the binding constraint of an all-infeasible table (see module docstring for the rule)."""
    n = len(table)
    if n == 0:
        return Binding(
            "catalog", None, "no server is up with live workers (the catalog is empty, or every server is down)"
        )
    stacked = np.stack([feas.violations[name] for name in ORDER])
    broken = stacked.sum(axis=0)
    sole = (stacked & (broken == 1)).sum(axis=1)
    if sole.max() > 0:
        which = int(np.argmax(sole))
        pool = stacked[which] & (broken == 1)
    else:
        which = int(np.argmax(stacked.sum(axis=1)))
        pool = stacked[which]
    name = ORDER[which]
    candidates = np.flatnonzero(pool)
    return _describe(table, feas, name, candidates)


def _describe(table: ServerTable, feas: Feasibility, name: str, candidates: NDArray[np.intp]) -> Binding:
    servers = table.servers
    if name == "excluded":
        return Binding(name, None, f"all {len(candidates)} usable servers are excluded (down or ruled out)")
    if name == "at capacity":
        return Binding(name, None, f"{len(candidates)} otherwise suitable servers are at capacity")
    if name == "memory":
        short = feas.memory_needed[candidates] / table.gpu_memory_gib[candidates].clip(min=1e-9)
        i = int(candidates[np.argmin(short)])
        s = servers[i]
        return Binding(
            name,
            i,
            f"needs {feas.memory_needed[i]:.1f} GiB per device; best has {table.gpu_memory_gib[i]:.1f} GiB ({s.id})",
        )
    if name == "latency":
        i = int(candidates[np.argmin(table.latency_ms[candidates])])
        fastest = f"{table.latency_ms[i]:.1f} ms ({servers[i].id})"
        return Binding(name, i, f"latency SLO {feas.latency_slo_ms:g} ms; fastest has {fastest}")
    i = int(candidates[np.argmin(feas.cost[candidates])])
    return Binding(
        name, i, f"budget ${feas.budget_usd:,.2f}; cheapest estimate is ${feas.cost[i]:,.2f} ({servers[i].id})"
    )
