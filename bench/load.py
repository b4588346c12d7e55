"""Benchmark: hundreds of concurrent jobs through the real pipeline services on one machine.

A fresh nats-server (from the wheel), the real inventory, selector, teacher-eval and
data-synth services in this process against the teacher simulator at tiny task sizes,
and TEST DOUBLES for the trainer and deployer (tests/load/doubles.py). All jobs are
submitted at once; the table says how many completed, whether any was lost or done
twice, the highest server load seen on any revision of the placements bucket against
the capacity, the throughput and the job latencies (submit to JobCompleted).

Run: ``.venv/bin/python bench/load.py [--jobs 500 --servers 40 --questions 16 --replicas 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness and the doubles live with the load tests

from stratos_shared.embedded import NatsServerProcess  # noqa: E402
from tests.load.harness import LoadConfig, run_load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--servers", type=int, default=40)
    parser.add_argument("--questions", type=int, default=16, help="task size per job")
    parser.add_argument("--replicas", type=int, default=4, help="trainer and deployer doubles each")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config = LoadConfig(
        jobs=args.jobs,
        servers=args.servers,
        questions=args.questions,
        replicas=args.replicas,
        timeout_s=args.timeout,
    )
    with tempfile.TemporaryDirectory(prefix="stratos-load-") as tmp:
        server = NatsServerProcess(store_dir=Path(tmp) / "jetstream", log_file=Path(tmp) / "nats.log").start()
        try:
            report = asyncio.run(run_load(config, server.url, Path(tmp) / "home"))
        finally:
            server.stop()
    print(report.table())
    if report.reasons:
        print("reasons:", *report.reasons, sep="\n  ")
    ok = report.completed == report.jobs and not report.duplicated and not report.over_capacity
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
