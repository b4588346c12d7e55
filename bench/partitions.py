"""Partition trials: a server on another host (a network namespace) cut off while it trains and while it serves.

Each trial is `tests/e2e/partition.py`'s (a fresh nats-server, the control services, the cut-off server's workers in
a namespace, a second server here); this repeats them and prints, per stage, the seconds from the cut to the job's
new placement and to the job served again (p50 / p99), and the trials that lost an event, repeated a side effect or
left two endpoints serving after the heal. Needs root (network namespaces).

    .venv/bin/python bench/partitions.py [--trials 10] [--stages training serving]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.partition import Stage, Trial, partition_trial
from tests.netns import netns_unavailable, network_host


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def trials(stage: Stage, count: int) -> list[Trial]:
    done = []
    for n in range(count):
        with tempfile.TemporaryDirectory() as tmp, network_host(1) as host:
            trial = await partition_trial(Path(tmp), host, stage, job_id=f"part-{stage}-{n}")
        print(
            f"{stage} #{n + 1}: placed again {trial.replanned_s:.1f} s, served again {trial.serving_again_s:.1f} s, "
            f"late events from the cut-off server {trial.late_from_cut_server} (ignored), "
            f"violations {trial.violations or 'none'}",
            flush=True,
        )
        done.append(trial)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--stages", nargs="+", default=["training", "serving"], choices=["training", "serving"])
    args = parser.parse_args(argv)
    reason = netns_unavailable()
    if reason is not None:
        print(f"cannot run partition trials: {reason}")
        return 2
    rows, failed = [], 0
    for stage in args.stages:
        done = asyncio.run(trials(stage, args.trials))
        bad = sum(1 for t in done if t.violations)
        failed += bad
        placed = [t.replanned_s for t in done]
        served = [t.serving_again_s for t in done]
        rows.append(
            f"| {stage} | {len(done)} | {statistics.median(placed):.1f} / {percentile(placed, 0.99):.1f} | "
            f"{statistics.median(served):.1f} / {percentile(served, 0.99):.1f} | {len(done) - bad} | "
            f"{sum(t.late_from_cut_server for t in done)} |"
        )
    print(
        "\n| cut while | trials | cut to new placement p50 / p99 (s) | cut to served again p50 / p99 (s) | survived "
        "(0 lost, 0 duplicated, 1 endpoint after the heal) | late events from the cut-off server (ignored) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
