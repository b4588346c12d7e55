"""Benchmark: TeacherClient throughput against the teacher simulator.

1,000 chat completions at 50 ms simulated latency with concurrency 64. The
ideal wall time is requests / concurrency x latency; the ratio to it shows how
much the client (and the local HTTP stack) adds. The simulator runs in its own
process so it does not share the client's event loop or GIL. The same workload
then goes through distilabel's ``OpenAILLM`` when distilabel is installed.

A first row times the same fan-out with ``asyncio.sleep`` instead of HTTP: the
floor this machine's event loop and scheduler allow right now (on a loaded box
it is above the ideal). ``TeacherClient`` uses aiohttp when it is installed and
httpx otherwise; ``--engine httpx`` forces httpx (sets
``STRATOS_TEACHER_HTTP_ENGINE``), ``--cache`` adds a row with a
``DirectoryCache`` (its file I/O runs off the event loop).

Run: ``.venv/bin/python bench/teacher_client.py [--requests 1000 --concurrency 64 --latency-ms 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path

import httpx

from stratos_shared.tasks import build_task
from stratos_shared.teacher import DirectoryCache, TeacherClient
from stratos_shared.teacher.engines import ENGINE_ENV, engine_name

MODEL = "bench-teacher"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_simulator(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    config = Path(tempfile.mkdtemp()) / "sim.yaml"
    config.write_text(f"latency_ms: {latency_ms}\nmodels:\n  {MODEL}: {{default_accuracy: 0.9}}\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stratos_shared.teacher.simulator", "--port", str(port), "--config", str(config)]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("simulator did not start")


async def run_floor(latency_s: float, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await asyncio.sleep(latency_s)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - start


async def run_stratos(
    base_url: str, prompts: list[list[dict[str, str]]], concurrency: int, cache_dir: Path | None = None
) -> float:
    cache = DirectoryCache(cache_dir) if cache_dir is not None else None
    async with TeacherClient(base_url, MODEL, max_concurrency=concurrency, timeout_s=30, cache=cache) as client:
        await client.complete(prompts[0], seed=2)  # warm the connection pool outside the timing (a cache miss)
        start = time.perf_counter()
        results = await asyncio.gather(*(client.complete(p, seed=1) for p in prompts))
        elapsed = time.perf_counter() - start
    assert len(results) == len(prompts)
    return elapsed


async def run_distilabel(base_url: str, prompts: list[list[dict[str, str]]], concurrency: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from distilabel.models.llms import OpenAILLM

    llm = OpenAILLM(model=MODEL, base_url=base_url, api_key="sk-bench")
    llm.load()
    sem = asyncio.Semaphore(concurrency)

    async def one(p: list[dict[str, str]]) -> object:
        async with sem:
            return await llm.agenerate(input=p, max_new_tokens=256)

    await one(prompts[0])
    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - start
    client = getattr(llm, "_aclient", None)  # close it inside this loop (else a noisy warning at exit)
    if client is not None and hasattr(client, "close"):
        await client.close()
    return elapsed


def report(name: str, elapsed: float, ideal: float, n: int) -> None:
    print(
        f"{name:<34} wall {elapsed:6.3f} s   ideal {ideal:6.3f} s   "
        f"ratio {elapsed / ideal:5.2f}x   {n / elapsed:7.1f} req/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--engine", choices=["aiohttp", "httpx"], help="force TeacherClient's HTTP engine")
    parser.add_argument("--cache", action="store_true", help="also time TeacherClient with a DirectoryCache")
    parser.add_argument("--repeat", type=int, default=1, help="time each client this many times")
    args = parser.parse_args()
    if args.engine:
        os.environ[ENGINE_ENV] = args.engine
    task = build_task("math", seed=0, size=args.requests)
    prompts = [task.prompt(ex) for ex in task.examples()]
    ideal = args.requests / args.concurrency * args.latency_ms / 1000
    print(
        f"{args.requests} requests, concurrency {args.concurrency}, "
        f"latency {args.latency_ms:g} ms, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    )
    proc, base_url = start_simulator(args.latency_ms)
    engine = engine_name()
    cache_root = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        runners: list[tuple[str, Callable[..., Coroutine[object, object, float]]]] = [
            ("asyncio.sleep floor", lambda *_: run_floor(args.latency_ms / 1000, args.requests, args.concurrency)),
            (f"stratos TeacherClient/{engine}", run_stratos),
        ]
        if args.cache:
            runs = itertools.count()

            def cached(base: str, p: list[list[dict[str, str]]], c: int) -> Coroutine[object, object, float]:
                return run_stratos(base, p, c, cache_root / str(next(runs)))  # empty cache: every call misses

            runners.append((f"stratos +DirectoryCache/{engine}", cached))
        try:
            import distilabel  # noqa: F401

            runners.append(("distilabel OpenAILLM", run_distilabel))
        except ImportError as exc:
            print(f"distilabel: skipped ({exc})")
        for _ in range(args.repeat):
            for name, runner in runners:
                elapsed = asyncio.run(runner(base_url, prompts, args.concurrency))
                report(name, elapsed, ideal, args.requests)
        print(f"goal: stratos TeacherClient within 1.2x of ideal; load now {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(cache_root, ignore_errors=True)


if __name__ == "__main__":
    main()
