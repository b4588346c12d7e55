"""A whole job with a real teacher: ``examples/smollm2-teacher.yaml`` on the embedded stack, nothing simulated.

Starts SmolLM2-135M-Instruct (base) behind Stratos' own CPU server as the teacher, embedded NATS, the four control
services and one server's workers (a trainer and a deployer), submits the job with the teacher's URL filled in,
follows it to the end, and prints what the README and ``docs/results.md`` report: the teacher's accuracy and the
mode, what data-synth kept (by reason and by extraction), the student before and after on the held-out items
(the same items the teacher was scored on), the endpoint's accuracy and latency, the cost and the wall time.

    python bench/real_teacher_job.py [--seed 7] [--temperature 0.3] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.real_teacher import SERVED_NAME, start_teacher, wait_ready
from stratos_cli import client
from stratos_cli.demo import follow, save_reports, summary
from stratos_cli.stack import CONTROL, launch_server, launch_service, service_env, start_nats, stop_pids
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import free_port
from stratos_shared.jobs import JobState

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SERVER = "l4-us-west"


def job_spec(path: Path, teacher_url: str, seed: int | None) -> JobSpec:
    spec = JobSpec.from_yaml(path)
    teachers = [t.model_copy(update={"base_url": teacher_url}) for t in spec.teachers]
    update: dict[str, Any] = {"teachers": teachers}
    if seed is not None:
        update["task"] = spec.task.model_copy(update={"seed": seed})
    return spec.model_copy(update=update)


def findings(state: JobState, seconds: float) -> dict[str, Any]:
    """The figures a reader compares, from the job's ledger entry."""
    r = state.results.model_dump(mode="json")
    teacher = r.get("teacher_eval", {})
    score: dict[str, Any] = next((s for s in teacher.get("scores", []) if s["name"] == teacher.get("teacher")), {})
    data = state.inputs.data.model_dump() if state.inputs.data else {}
    trained = state.inputs.trained.model_dump() if state.inputs.trained else {}
    training = r.get("training", {})
    deployment = r.get("deployment", {})
    keys = ("asked", "accepted", "rejected_by_reason", "verified_by_extraction", "acceptance_rate", "cost_usd")
    return {
        "status": state.status,
        "reason": state.reason,
        "teacher_accuracy": score.get("accuracy"),
        "teacher_graded": score.get("graded"),
        "mode": state.mode,
        "data": {k: data.get(k) for k in keys},
        "student_before": training.get("before"),
        "student_after": training.get("after"),
        "extractions_before_after": [trained.get("extractions_before"), trained.get("extractions_after")],
        "training": {k: training.get(k) for k in ("seconds", "steps", "cost_usd", "student")},
        "students": r.get("students"),
        "deployment": deployment,
        "wall_s": round(seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=EXAMPLES / "smollm2-teacher.yaml")
    parser.add_argument("--seed", type=int, default=None, help="override the spec's task seed")
    parser.add_argument("--temperature", default="0.3", help="data-synth's sampling temperature (its default: 0.8)")
    parser.add_argument("--teacher-max-tokens", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to follow the job (a loaded machine)")
    parser.add_argument("--home", type=Path, default=Path.home() / ".stratos" / "real-teacher")
    parser.add_argument(
        "--cache-from", type=Path, default=None, help="reuse the teacher answers cached in this earlier --home"
    )
    a = parser.parse_args(argv)
    console = Console(width=160)
    home = a.home
    (home / "logs").mkdir(parents=True, exist_ok=True)
    os.environ["STRATOS_HOME"] = str(home)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack and the teacher on kill too
    if a.cache_from is not None and (a.cache_from / "cache").is_dir():
        shutil.copytree(a.cache_from / "cache", home / "cache", dirs_exist_ok=True)
    started = time.monotonic()
    teacher_port = free_port()
    teacher = start_teacher(teacher_port, a.teacher_max_tokens)
    pids: dict[str, int] = {"teacher": teacher.pid}
    try:
        url, nats_pids = start_nats(home, free_port(), 1)
        pids.update(nats_pids)
        # SmolLM2 writes ~20 tokens a second per request on two cores: the demo's shorter evaluations.
        env = service_env(
            home,
            url,
            1,
            {
                "STRATOS_CATALOG": str(EXAMPLES / "servers.yaml"),
                "STRATOS_PROBE_REQUESTS": "6",
                "STRATOS_EVAL_SAMPLES": "24",
                "STRATOS_ACCURACY_SAMPLES": "24",
                "STRATOS_PRESCREEN_ITEMS": "16",
                "STRATOS_MAX_NEW_TOKENS": "96",
                "STRATOS_SAMPLING_TEMPERATURE": a.temperature,
                # A CPU teacher decoding 16 requests as one batch on a shared 2-core machine can take minutes per
                # batch; a request the client gives up on is decoded anyway, so a retry only adds work.
                "STRATOS_TEACHER_TIMEOUT_S": "900",
            },
        )
        for service in CONTROL:
            pids[service] = launch_service(service, home, env)
        pids |= launch_server(SERVER, 0, home, env)
        asyncio.run(client.wait_until_ready(url))
        asyncio.run(client.wait_for_workers(url, [SERVER]))
        wait_ready(f"http://127.0.0.1:{teacher_port}")
        spec = job_spec(a.spec, f"http://127.0.0.1:{teacher_port}/v1", a.seed)
        job_id = f"{spec.name}-s{spec.task.seed}-{uuid.uuid4().hex[:6]}"

        async def submit() -> None:
            async with client.connect(url) as (_, js):
                await client.publish(js, JobSubmitted(job_id=job_id, spec=spec, submitted_by="bench"))

        asyncio.run(submit())
        console.print(f"submitted {job_id}: teacher {SERVED_NAME} (CPU server, port {teacher_port}), server {SERVER}")
        states = asyncio.run(follow([job_id], url, console, None, a.timeout, home))
        seconds = time.monotonic() - started
        console.print(summary(states))
        reports = asyncio.run(save_reports(states, url, home / "reports"))
        for state in states:
            console.print_json(json.dumps(findings(state, seconds), default=str))
            if state.job_id in reports:
                console.print(f"report: {reports[state.job_id] / 'report.md'}")
        return 0 if states and all(s.status == "completed" for s in states) else 1
    finally:
        stop_pids(pids)


if __name__ == "__main__":
    raise SystemExit(main())
