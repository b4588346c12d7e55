"""Selection quality: Pareto Front Grid vs the baselines on a generated catalog and job mix.

Run: ``.venv/bin/python bench/selection_quality.py [--servers 2000] [--jobs 60] [--seed 0] [--capacity]``.
Prints a Markdown table of the multi-objective score (see `stratos_selector.domain.score`),
total estimated cost and total training hours per strategy, over the jobs with a feasible server.

Without ``--capacity`` every job is scored alone against an empty catalog. With it the jobs
arrive one after another and each placement takes a slot on its server, as the selector's
capacity claims do, so a strategy that piles jobs on the same few servers pushes later jobs
onto worse ones (or finds none). Totals are then over the jobs every strategy placed.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.score import ChoiceScore, score_choice
from stratos_selector.domain.strategies import STRATEGIES, Selection, select
from stratos_selector.domain.table import ServerTable
from stratos_shared.contracts.job import JobSpec


def generate_jobs(count: int, seed: int) -> list[JobSpec]:
    """Varied student sizes, methods, data sizes, latency SLOs and budgets."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(count):
        jobs.append(
            JobSpec.model_validate(
                {
                    "name": f"job-{i:03d}",
                    "task": {"kind": "math", "size": int(rng.choice([400, 2000, 10_000, 50_000]))},
                    "teachers": [{"name": "t", "base_url": "http://127.0.0.1:8100/v1", "model": "m"}],
                    "students": [{"name": "s", "model": "m", "params_b": float(rng.choice([0.5, 1.5, 3, 7, 14, 32]))}],
                    "training": {"method": str(rng.choice(["lora-sft", "lora-sft", "sft", "grpo"]))},
                    "constraints": {
                        "latency_slo_ms": float(rng.choice([20, 50, 100, 200, 400])),
                        "budget_usd": float(rng.choice([25, 100, 300, 1000, 5000])),
                        "serving_hours": float(rng.choice([8, 24, 72])),
                    },
                    "selection": {"seed": i},
                }
            )
        )
    return jobs


@dataclass(frozen=True)
class StrategyResult:
    """One strategy over a job set: mean score components over the compared jobs, and totals."""

    strategy: str
    placed: int
    """Jobs the strategy found a server for."""
    compared: int
    """Jobs the means and totals are over (placed by every strategy)."""
    score: float
    accuracy: float
    latency: float
    cost: float
    time: float
    total_cost_usd: float
    total_training_hours: float


def place_all(table: ServerTable, jobs: Sequence[JobSpec], strategy: str, capacity: bool) -> dict[str, ChoiceScore]:
    """Each job's placement score under ``strategy`` (job name → score); unplaceable jobs are left out."""
    load: Counter[str] = Counter()
    out: dict[str, ChoiceScore] = {}
    for job in jobs:
        result = select(table, job, strategy=strategy, load=load if capacity else None)
        if not isinstance(result, Selection):
            continue
        if capacity:
            load[result.server.id] += 1
        out[job.name] = score_choice(table, job, result.server.id)
    return out


def compare(
    table: ServerTable, jobs: Sequence[JobSpec], strategies: Sequence[str] = STRATEGIES, capacity: bool = False
) -> list[StrategyResult]:
    """Every strategy on the same jobs, best score first; means and totals over the jobs all of them placed."""
    placements = {s: place_all(table, jobs, s, capacity) for s in strategies}
    common = set.intersection(*(set(p) for p in placements.values())) if placements else set()
    rows = []
    for strategy, placed in placements.items():
        scores = [placed[name] for name in sorted(common)]
        parts = np.array([(s.accuracy, s.latency, s.cost, s.time) for s in scores]).reshape(-1, 4)
        means = parts.mean(axis=0) if scores else np.zeros(4)
        rows.append(
            StrategyResult(
                strategy=strategy,
                placed=len(placed),
                compared=len(scores),
                score=float(np.mean([s.total for s in scores])) if scores else 0.0,
                accuracy=float(means[0]),
                latency=float(means[1]),
                cost=float(means[2]),
                time=float(means[3]),
                total_cost_usd=sum(s.cost_usd for s in scores),
                total_training_hours=sum(s.training_hours for s in scores),
            )
        )
    return sorted(rows, key=lambda r: -r.score)


def markdown(rows: Sequence[StrategyResult]) -> str:
    lines = [
        "| strategy | placed | score ↑ | accuracy proxy | latency | cost | time | total cost (USD) "
        "| total training h |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.strategy} | {r.placed} | {r.score:.3f} | {r.accuracy:.3f} | {r.latency:.3f} | {r.cost:.3f} "
            f"| {r.time:.3f} | {r.total_cost_usd:,.0f} | {r.total_training_hours:,.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capacity", action="store_true", help="place jobs in turn, each taking a server slot")
    args = parser.parse_args(argv)
    table = ServerTable.from_servers(generate_catalog(args.servers, seed=args.seed))
    rows = compare(table, generate_jobs(args.jobs, args.seed), capacity=args.capacity)
    compared = rows[0].compared if rows else 0
    print(f"{args.servers} servers, {args.jobs} jobs, {compared} compared (seed {args.seed})\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
