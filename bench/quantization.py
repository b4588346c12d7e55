"""What each GGUF quantization costs in held-out accuracy, measured on an exported student, outside Stratos.

The student is what ``stratos export JOB --out DIR`` wrote (``DIR/model``: the merged HF folder). For each of
f16, q8_0 and q4_k_m the bench converts it with llama.cpp's own converter and quantizer (what the deployer and
``stratos export --format gguf`` run), starts ``llama-server`` from a plain command line as a llama.cpp user
would (no Stratos code in the serving path), asks every item greedily through the chat endpoint (the chat
template comes from the GGUF) and grades the answers with the task's grader. The reference is the trainer's own
evaluation: transformers, fp32, greedy, the same items and token budget (`stratos_trainer.domain.evaluate`).

Items: the job's held-out split (rebuilt from its spec, as every stage does) plus ``--extra`` fresh items from
the same generator with another seed (any that also occur in the job's training split are dropped), so the
differences are measured on a few hundred items rather than 40. Differences are paired (same items) with a 95%
bootstrap interval. Needs `make llama-cpp`.

    python -m bench.quantization --model DIR/model --spec examples/smollm2-student.yaml [--extra 200] \
        [--gguf DIR/JOB-q8_0.gguf]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.serving_peer import serving
from stratos_deployer.serving.llamacpp import (
    QUANTIZATIONS,
    LlamaCppEngine,
    convert_to_gguf,
    engine_problem,
    find_engine,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import free_port
from stratos_shared.jobcontext import split_task, task_for
from stratos_shared.tasks.base import Example, Task

Outcome = list[bool]


def items_for(spec: JobSpec, extra: int) -> tuple[Task, list[Example], int]:
    """The job's held-out items, then up to `extra` fresh ones the job never trained on; and how many are held out."""
    task = task_for(spec.task)
    split = split_task(task, spec.task)
    held_out = list(split.eval)
    if extra <= 0 or spec.task.path is not None:
        return task, held_out, len(held_out)
    trained = {e.question for e in split.train} | {e.question for e in held_out}
    fresh_spec = spec.task.model_copy(update={"seed": spec.task.seed + 1_000_003, "size": extra * 2})
    fresh = [e for e in task_for(fresh_spec).examples() if e.question not in trained][:extra]
    return task, held_out + fresh, len(held_out)


def reference(model: Path, task: Task, items: Sequence[Example], max_tokens: int) -> Outcome:
    """The trainer's evaluation: transformers, fp32, greedy."""
    from stratos_trainer.domain.evaluate import generate, load_model

    loaded, tokenizer = load_model(model)
    outputs = generate(loaded, tokenizer, [task.student_prompt(e) for e in items], max_new_tokens=max_tokens)
    return [task.grade(o, e).correct for o, e in zip(outputs, items, strict=True)]


async def ask_all(url: str, task: Task, items: Sequence[Example], max_tokens: int, concurrency: int) -> Outcome:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(example: Example) -> bool:
            body = {"messages": task.student_prompt(example), "max_tokens": max_tokens, "temperature": 0}
            async with gate:
                reply = await client.post("/v1/chat/completions", json=body)
            reply.raise_for_status()
            return task.grade(reply.json()["choices"][0]["message"]["content"] or "", example).correct

        return list(await asyncio.gather(*(one(e) for e in items)))


def by_hand(
    engine: LlamaCppEngine, gguf: Path, log: Path, threads: int, parallel: int
) -> contextlib.AbstractContextManager[str]:
    """llama-server on `gguf` from a plain command line (what a llama.cpp user types)."""
    port = free_port()
    command = [str(engine.server), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--threads", str(threads), "--parallel", str(parallel), "--ctx-size", str(1024 * parallel)]
    return serving(command, port, log, "/health")


def paired_interval(a: Outcome, b: Outcome, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(a) - accuracy(b) over the same items."""
    rng = random.Random(seed)
    n = len(a)
    diffs = sorted(sum(a[i] - b[i] for i in (rng.randrange(n) for _ in range(n))) / n for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def row(name: str, outcome: Outcome, base: Outcome, held: int, size_mb: float, seconds: float) -> str:
    acc, held_acc = sum(outcome) / len(outcome), sum(outcome[:held]) / max(1, held)
    diff = acc - sum(base) / len(base)
    low, high = paired_interval(outcome, base)
    return (
        f"| {name} | {size_mb:.0f} | {held_acc:.1%} | {acc:.1%} | {diff * 100:+.1f} [{low * 100:+.1f}, "
        f"{high * 100:+.1f}] | {seconds:.0f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the merged HF folder (`stratos export` DIR/model)")
    parser.add_argument("--spec", type=Path, required=True, help="the job's spec (rebuilds its held-out items)")
    parser.add_argument("--extra", type=int, default=200, help="fresh items from the same generator")
    parser.add_argument("--quants", nargs="+", choices=QUANTIZATIONS, default=list(QUANTIZATIONS))
    parser.add_argument("--max-tokens", type=int, default=192, help="the trainer's and the deployer's budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8, help="llama-server slots (and requests in flight)")
    parser.add_argument(
        "--gguf", type=Path, nargs="*", default=[], help="GGUF files `stratos export --format gguf` wrote, also asked"
    )
    a = parser.parse_args(argv)
    engine = find_engine()
    if engine is None:
        print(f"skipped: {engine_problem()}", file=sys.stderr)
        return 2
    spec = JobSpec.from_yaml(a.spec)
    task, items, held = items_for(spec, a.extra)
    print(f"{len(items)} items ({held} held out by the job, {len(items) - held} fresh); load {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    base = reference(a.model, task, items, a.max_tokens)
    lines = [row("transformers fp32 (the trainer's evaluation)", base, base, held, _size(a.model), _since(start))]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="stratos-quant-") as tmp:
        for quant in a.quants:
            gguf = Path(tmp) / f"student-{quant}.gguf"
            convert_to_gguf(engine, a.model, gguf, quant)
            start = time.perf_counter()
            with by_hand(engine, gguf, Path(tmp) / f"{quant}.log", a.threads, a.parallel) as url:
                outcome = asyncio.run(ask_all(url, task, items, a.max_tokens, a.parallel))
            lines.append(row(f"llama.cpp {quant}", outcome, base, held, gguf.stat().st_size / 2**20, _since(start)))
            print(lines[-1], flush=True)
        for exported in a.gguf:
            start = time.perf_counter()
            with by_hand(engine, exported, Path(tmp) / f"{exported.name}.log", a.threads, a.parallel) as url:
                outcome = asyncio.run(ask_all(url, task, items, a.max_tokens, a.parallel))
            size = exported.stat().st_size / 2**20
            lines.append(row(f"`{exported.name}` (stratos export)", outcome, base, held, size, _since(start)))
            print(lines[-1], flush=True)
    header = "| weights | MiB | held-out accuracy (job's items) | accuracy (all items) | vs fp32, points [95% CI] | s |"
    print("\n" + "\n".join([header, "| --- | ---: | ---: | ---: | ---: | ---: |", *lines]))
    return 0


def _size(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20


def _since(start: float) -> float:
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
