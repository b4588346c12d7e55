"""The objective space as a user sees it: every server's (H, C, L) for a job, feasibility and front membership.

Used by `stratos servers --pareto` to draw the front; the selection itself lives in `strategies`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stratos_selector.domain.constraints import check
from stratos_selector.domain.estimates import job_cost, workload_for
from stratos_selector.domain.pareto import pareto_mask
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerSpec


@dataclass(frozen=True)
class ServerPoint:
    server: ServerSpec
    hardware: float
    cost_usd: float
    latency_ms: float
    feasible: bool
    on_front: bool


def objective_space(servers: Sequence[ServerSpec], job: JobSpec) -> list[ServerPoint]:
    """Each server's objectives for `job`; the front is computed over the feasible servers (minimising -H, C, L)."""
    table = ServerTable.from_servers(servers)
    work = workload_for(job)
    hours = work.training_hours(table.effective_tflops)
    cost = job_cost(work, hours, table.cost_per_hour)
    feasibility = check(
        table,
        memory_needed=work.memory_per_gpu_gib(table.gpu_count),
        cost=cost,
        latency_slo_ms=job.constraints.latency_slo_ms,
        budget_usd=job.constraints.budget_usd,
        excluded=np.zeros(len(table), dtype=np.bool_),
        load=np.zeros(len(table)),
    )
    feasible = feasibility.feasible
    front = np.zeros(len(table), dtype=np.bool_)
    rows = np.flatnonzero(feasible)
    if len(rows):
        points = np.column_stack([-table.hardware[rows], cost[rows], table.latency_ms[rows]])
        front[rows[pareto_mask(points)]] = True
    return [
        ServerPoint(
            s, float(table.hardware[i]), float(cost[i]), float(table.latency_ms[i]), bool(feasible[i]), bool(front[i])
        )
        for i, s in enumerate(servers)
    ]
