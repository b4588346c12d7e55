"""The fault matrix as a benchmark: the README's reliability table from a real run.

Runs the fault tests (`tests/faults/test_kill_matrix.py`) through pytest, which
writes its report as JSON (``STRATOS_FAULTS_REPORT``), then prints the matrix
and the table: faults injected, jobs completed, events lost, duplicate side
effects. The default is the CI size (a few minutes); ``--full`` runs every
service killed at every stage, the broker killed at every stage and a server
lost at every stage (tens of minutes on two cores).

    python bench/faults.py [--full] [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
TESTS = {
    False: "tests/faults/test_kill_matrix.py::test_kills_in_every_stage_lose_nothing_and_repeat_nothing",
    True: "tests/faults/test_kill_matrix.py::test_full_matrix_every_service_at_every_stage",
}


def run(full: bool, report: Path) -> int:
    env = {**os.environ, "STRATOS_FAULTS_REPORT": str(report), "OMP_NUM_THREADS": "1"}
    if full:
        env["STRATOS_FAULTS_FULL"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TESTS[full]]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def table(name: str, data: dict[str, Any]) -> str:
    s = data["summary"]
    kinds = sorted({f["service"] for f in data["faults"]})
    rows = [
        "| run | faults injected | jobs completed | events lost | duplicate side effects | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {name} | {s['faults_injected']} ({', '.join(kinds)}) | {s['jobs_completed']}/{s['jobs']} "
        f"| {s['events_lost']} | {s['duplicate_side_effects']} | {data['seconds']:.0f} s |",
    ]
    note = (
        f"\nTeacher requests sent again after a kill: {s['teacher_requests_resent']} "
        "(all of them in flight when their client died; answered requests come from the cache)."
    )
    return "\n".join(rows) + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every service at every stage (slow)")
    parser.add_argument("--json", type=Path, help="also keep the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = args.json or Path(tmp) / "faults.json"
        code = run(args.full, report)
        if not report.exists():
            print(f"no report was written (pytest exit code {code})", file=sys.stderr)
            return code or 1
        data = json.loads(report.read_text())
    print()
    print(table("full matrix" if args.full else "CI size", data))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
