"""The multi-objective score used to compare strategies (higher is better, in [0, 1]).

For one job and a chosen server s, over that job's feasible servers F:

* accuracy proxy  ``H(s) / max_F H``   (hardware relative to the best feasible;
  stronger hardware allows larger batches/students and more steps in budget)
* latency          ``1 - L(s) / max_F L``
* cost             ``1 - C(s) / max_F C``   (estimated job cost)
* training time    ``1 - T(s) / max_F T``   (estimated training hours)

The job's score is the mean of the four; a strategy's score is the mean over
the jobs that have at least one feasible server (every strategy sees the same
feasible set, so infeasible jobs can't separate them). Ratios to the worst
feasible value, not min-max, so a choice is not punished to 0 just for being
the best of a tight field's losers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stratos_selector.domain.constraints import check
from stratos_selector.domain.estimates import job_cost, workload_for
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec


@dataclass(frozen=True)
class ChoiceScore:
    """Score components of one placement, plus the raw cost and time for totals."""

    accuracy: float
    latency: float
    cost: float
    time: float
    cost_usd: float
    training_hours: float

    @property
    def total(self) -> float:
        return (self.accuracy + self.latency + self.cost + self.time) / 4.0


def _ratio_score(value: float, worst: float) -> float:
    return 1.0 - value / worst if worst > 0 else 1.0


def score_choice(table: ServerTable, job: JobSpec, server_id: str) -> ChoiceScore:
    """Score placing ``job`` on ``server_id`` against the job's feasible servers in ``table``."""
    work = workload_for(job)
    hours = work.training_hours(table.effective_tflops)
    cost = job_cost(work, hours, table.cost_per_hour)
    n = len(table)
    feas = check(
        table,
        memory_needed=work.memory_per_gpu_gib(table.gpu_count),
        cost=cost,
        latency_slo_ms=job.constraints.latency_slo_ms,
        budget_usd=job.constraints.budget_usd,
        excluded=np.zeros(n, dtype=np.bool_),
        load=np.zeros(n),
    ).feasible
    i = next(k for k, s in enumerate(table.servers) if s.id == server_id)
    if not feas[i]:
        raise ValueError(f"{server_id} is not feasible for job {job.name}")
    best_h = float(table.hardware[feas].max())
    return ChoiceScore(
        accuracy=float(table.hardware[i]) / best_h if best_h > 0 else 1.0,
        latency=_ratio_score(float(table.latency_ms[i]), float(table.latency_ms[feas].max())),
        cost=_ratio_score(float(cost[i]), float(cost[feas].max())),
        time=_ratio_score(float(hours[i]), float(hours[feas].max())),
        cost_usd=float(cost[i]),
        training_hours=float(hours[i]),
    )
