"""SmolLM2-135M-Instruct (base) as a real, weak teacher, served by Stratos' own CPU server.

Asks it what teacher-eval asks (the forward prompt, greedy) and what data-synth asks in knowledge injection
(the reverse prompt with the answer given, sampled at data-synth's temperature, re-asked after a rejected trace),
then grades the forward answers with the task's grader and verifies the reverse traces with data-synth's own
``DatasetBuilder``: accuracy with the extraction that found each answer, and verification outcomes by reason and
by extraction. ``--save`` writes every raw output as JSONL (the fixtures under ``tests/unit/data_synth/data``
were made this way).

    python bench/real_teacher.py [--forward 12] [--reverse 12] [--generator '{"max_steps": 1}'] [--save out.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from stratos_data_synth.domain import DatasetBuilder
from stratos_shared.embedded import free_port
from stratos_shared.localmodels.bundled import ensure_bundled_model
from stratos_shared.tasks import Example, Task, build_task
from stratos_shared.teacher.client import TeacherClient

SERVED_NAME = "smollm2-135m"


def start_teacher(port: int, max_tokens: int) -> subprocess.Popen[bytes]:
    """The deployer's CPU backend, started the way the deployer starts it, serving the bundled base model."""
    model = ensure_bundled_model(SERVED_NAME)
    command = [sys.executable, "-m", "stratos_deployer.serving", "--model", str(model), "--port", str(port)]
    command += ["--served-name", SERVED_NAME, "--default-max-tokens", str(max_tokens)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))


def wait_ready(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the teacher at {url} was not ready within {timeout_s:.0f} s")


async def ask(
    client: TeacherClient, task: Task, forward: list[Example], reverse: list[Example], retries: int, temperature: float
) -> tuple[list[dict[str, Any]], DatasetBuilder]:
    """Forward answers as teacher-eval asks for them, reverse traces as data-synth's injection loop asks."""
    saved: list[dict[str, Any]] = []
    builder = DatasetBuilder(task, "injection", keep_per_question=1)

    async def one_forward(example: Example) -> None:
        completion = await client.complete(task.prompt(example), temperature=0.0)
        saved.append({**_fields(example), "kind": "forward", "output": completion.text})

    async def one_reverse(example: Example) -> None:
        for attempt in range(retries + 1):
            completion = await client.complete(task.reverse_prompt(example), temperature=temperature, seed=attempt)
            saved.append({**_fields(example), "kind": "reverse", "attempt": attempt, "output": completion.text})
            builder.offer(example, completion.text)
            if builder.has_enough(example):
                return

    await asyncio.gather(*(one_forward(e) for e in forward), *(one_reverse(e) for e in reverse))
    return sorted(saved, key=lambda r: (r["kind"], r["id"], r.get("attempt", 0))), builder


def _fields(example: Example) -> dict[str, str]:
    return {"id": example.id, "question": example.question, "answer": example.answer}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="math")
    parser.add_argument("--generator", default='{"max_steps": 1}', help="task generator options as JSON")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--forward", type=int, default=12, help="questions asked forward (teacher-eval)")
    parser.add_argument("--reverse", type=int, default=12, help="questions asked in reverse (injection)")
    parser.add_argument("--retries", type=int, default=1, help="re-asks after a rejected reverse trace")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.8, help="reverse sampling (data-synth's default)")
    parser.add_argument("--url", default=None, help="an already running teacher (OpenAI-compatible /v1 base URL)")
    parser.add_argument("--save", type=Path, default=None, help="write every raw output here as JSONL")
    a = parser.parse_args(argv)
    task = build_task(a.task, seed=a.seed, size=a.forward + a.reverse, generator=json.loads(a.generator))
    examples = list(task.examples())
    forward, reverse = examples[: a.forward], examples[a.forward :]
    server = None
    url = a.url
    if url is None:
        port = free_port()
        server = start_teacher(port, a.max_tokens)
        url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url.removesuffix("/v1"))
        started = time.monotonic()

        async def run() -> tuple[list[dict[str, Any]], DatasetBuilder]:
            async with TeacherClient(url, SERVED_NAME, max_concurrency=16, timeout_s=600) as client:
                return await ask(client, task, forward, reverse, a.retries, a.temperature)

        saved, builder = asyncio.run(run())
        seconds = time.monotonic() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    by_id = {e.id: e for e in examples}
    grades = [task.grade(r["output"], by_id[r["id"]]) for r in saved if r["kind"] == "forward"]
    right = Counter(g.extraction for g in grades if g.correct)
    print(f"{a.task} {a.generator} seed {a.seed}: {seconds:.0f} s, teacher {SERVED_NAME} at {url}")
    print(f"forward (greedy): {sum(right.values())}/{len(grades)} right; by extraction {dict(right)}")
    print(
        f"reverse (T={a.temperature}, {a.retries} re-asks): {builder.accepted_count}/{len(reverse)} questions "
        "with a kept trace, "
        f"{builder.passed}/{builder.asked} traces verified; rejected {dict(builder.rejected)}; "
        f"verified by extraction {dict(builder.verified_by_extraction)}"
    )
    if a.save is not None:
        a.save.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in saved))
        print(f"wrote {len(saved)} outputs to {a.save}")


if __name__ == "__main__":
    main()
