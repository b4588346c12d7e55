"""Serving engines side by side on one SmolLM2 student: Stratos' endpoint, llama.cpp by hand, the old batcher.

- **stratos**: the deployer's CPU engine (`LlamaCppBackend`): the model converted to GGUF by the deployer's
  code, `llama-server` with the deployer's slots and the per-deployment key, requests sent with that key;
- **by hand**: the same binary on the same GGUF file with the same slots and context, started from a plain
  command line as a llama.cpp user would (no key);
- **batcher**: Stratos' transformers batching server on the fp32 folder (what served before llama.cpp).

Same 32 prompts (short arithmetic, "think step by step"), greedy, at most ``--max-tokens`` tokens, one server
at a time on the same cores. The two llama.cpp servers are measured twice in the order stratos, by hand, by
hand, stratos (drift in the machine's load cancels) and averaged. Needs `make llama-cpp`.

    python -m bench.serving_engines [--requests 32] [--max-tokens 64] [--concurrency 1 8 32] [--quant q8_0]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.serving_peer import NAME, make_requests, measure, serving
from stratos_deployer.serving.backend import LlamaCppBackend
from stratos_deployer.serving.llamacpp import (
    QUANTIZATIONS,
    LlamaServerConfig,
    build_llama_server_command,
    engine_problem,
    find_engine,
)
from stratos_shared.embedded import free_port
from stratos_shared.localmodels.bundled import ensure_bundled_model

Rates = dict[int, float]


def mean(runs: Sequence[Rates]) -> Rates:
    return {level: sum(run[level] for run in runs) / len(runs) for level in runs[0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--max-tokens", type=int, default=64, help="completion tokens per request at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2, help="threads each server may use")
    parser.add_argument("--quant", choices=QUANTIZATIONS, default="q8_0", help="GGUF weights both llama.cpp serve")
    parser.add_argument("--skip-batcher", action="store_true", help="leave out the transformers batcher")
    a = parser.parse_args(argv)
    engine = find_engine()
    if engine is None:
        print(f"skipped: {engine_problem()}", file=sys.stderr)
        return 2
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    requests = make_requests(a.requests)
    slots = max(a.concurrency)
    print(
        f"{NAME}: {a.requests} requests, at most {a.max_tokens} tokens, greedy, {a.threads} threads, {slots} slots, "
        f"{a.quant}; load average {os.getloadavg()[0]:.1f}"
    )
    model = ensure_bundled_model(NAME)
    key = secrets.token_urlsafe(32)
    stratos_runs: list[Rates] = []
    hand_runs: list[Rates] = []
    with tempfile.TemporaryDirectory(prefix="stratos-engines-") as tmp:
        backend = LlamaCppBackend(NAME, engine, quant=a.quant, parallel=slots, threads=a.threads, log_dir=Path(tmp))
        gguf = backend.prepare(model, None)

        def stratos() -> None:
            print("stratos endpoint (LlamaCppBackend, keyed):", flush=True)
            endpoint = backend.start(model, None, free_port(), api_key=key)
            try:
                stratos_runs.append(measure(endpoint.removesuffix("/v1"), requests, a.max_tokens, a.concurrency, key))
            finally:
                backend.stop()

        def by_hand() -> None:
            print("llama-server by hand:", flush=True)
            port = free_port()
            config = LlamaServerConfig(gguf=gguf, served_name=NAME, port=port, parallel=slots, threads=a.threads)
            command = build_llama_server_command(engine, config)
            with serving(command, port, Path(tmp) / "by-hand.log", "/health") as url:
                hand_runs.append(measure(url, requests, a.max_tokens, a.concurrency))

        for run in (stratos, by_hand, by_hand, stratos):
            run()
        batcher: Rates | None = None
        if not a.skip_batcher:
            print("transformers batcher (fp32):", flush=True)
            port = free_port()
            command = [sys.executable, "-m", "stratos_deployer.serving", "--model", str(model), "--port", str(port)]
            command += ["--served-name", NAME, "--max-batch-size", str(slots)]
            with serving(command, port, Path(tmp) / "batcher.log", "/health") as url:
                batcher = measure(url, requests, a.max_tokens, a.concurrency)
    ours, hand = mean(stratos_runs), mean(hand_runs)
    print("\n| concurrency | stratos tok/s | llama-server by hand tok/s | stratos / by hand | batcher tok/s | "
          "stratos / batcher |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for level in a.concurrency:
        old = f"{batcher[level]:.1f} | {ours[level] / batcher[level]:.2f}x" if batcher else "- | -"
        print(f"| {level} | {ours[level]:.1f} | {hand[level]:.1f} | {ours[level] / hand[level]:.2f}x | {old} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
