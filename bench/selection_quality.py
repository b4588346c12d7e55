"""Selection quality: Pareto Front Grid vs the baselines on a generated catalog and job mix.

Run: ``.venv/bin/python bench/selection_quality.py [--servers 2000] [--jobs 60] [--seed 0]``.
Prints a Markdown table of the multi-objective score (see `stratos_selector.domain.score`),
total estimated cost and total training hours per strategy, over the jobs with a feasible server.
"""

from __future__ import annotations

import argparse

import numpy as np

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.score import score_choice
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = ServerTable.from_servers(generate_catalog(args.servers, seed=args.seed))
    jobs = generate_jobs(args.jobs, args.seed)
    rows = []
    placed = 0
    for strategy in STRATEGIES:
        scores, costs, hours, parts = [], 0.0, 0.0, np.zeros(4)
        for job in jobs:
            result = select(table, job, strategy=strategy)
            if not isinstance(result, Selection):
                continue
            s = score_choice(table, job, result.server.id)
            scores.append(s.total)
            parts += (s.accuracy, s.latency, s.cost, s.time)
            costs += s.cost_usd
            hours += s.training_hours
        placed = len(scores)
        parts /= max(1, placed)
        rows.append((strategy, float(np.mean(scores)) if scores else 0.0, *parts, costs, hours))
    print(f"{args.servers} servers, {args.jobs} jobs, {placed} with a feasible server (seed {args.seed})\n")
    print("| strategy | score ↑ | accuracy proxy | latency | cost | time | total cost (USD) | total training h |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, score, acc, lat, cost, time_, usd, hrs in sorted(rows, key=lambda r: -r[1]):
        print(f"| {name} | {score:.3f} | {acc:.3f} | {lat:.3f} | {cost:.3f} | {time_:.3f} | {usd:,.0f} | {hrs:,.1f} |")


if __name__ == "__main__":
    main()
