"""CPU serving throughput: the batching server vs. ``model.generate`` one request at a time.

Both sides decode the same greedy requests with the same token limit, so the
ratio isolates what batching buys. Run:

    python bench/serving.py [--model PATH] [--requests 64] [--max-tokens 32]

Without ``--model`` it builds/uses the local ``tiny-1m`` model.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import torch
from transformers import AutoModelForCausalLM

from stratos_deployer.serving.cpu_server import CpuServerConfig, encode_chat, start_in_thread
from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer

Messages = list[dict[str, str]]


def make_requests(n: int) -> list[Messages]:
    """Distinct short prompts of varying length, like a task's eval set."""
    return [
        [{"role": "user", "content": f"What is {i * 37 % 100} + {i * 11 % 90}? " + "Think. " * (i % 5)}]
        for i in range(n)
    ]


def baseline(model_path: Path, requests: Sequence[Messages], max_tokens: int) -> tuple[float, int]:
    """Seconds and generated tokens for a plain generate loop, one request at a time."""
    model = AutoModelForCausalLM.from_pretrained(model_path).train(False)
    tokenizer = load_tokenizer(model_path)
    eos = tokenizer.eos_token_id
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for messages in requests:
            ids = encode_chat(tokenizer, messages)
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False)
            new = out[0, len(ids) :].tolist()
            tokens += sum(1 for t in new if t != eos)
    return time.perf_counter() - start, tokens


async def drive(
    url: str, model: str, requests: Sequence[Messages], max_tokens: int, concurrency: int, api_key: str | None = None
) -> tuple[float, int]:
    """Seconds and generated tokens to complete all requests with ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits, headers=headers) as client:

        async def one(messages: Messages) -> int:
            body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
            async with gate:
                response = await client.post(url + "/v1/chat/completions", json=body)
            response.raise_for_status()
            return int(response.json()["usage"]["completion_tokens"])

        start = time.perf_counter()
        counts = await asyncio.gather(*(one(m) for m in requests))
    return time.perf_counter() - start, sum(counts)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the baseline and the server at each concurrency; print a table with ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: tiny-1m)")
    parser.add_argument("--requests", type=int, default=64, help="requests per measurement")
    parser.add_argument("--max-tokens", type=int, default=32, help="completion tokens per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)
    model_path = args.model or ensure_tiny_model("tiny-1m")
    requests = make_requests(args.requests)
    threads = torch.get_num_threads()
    print(f"model={model_path} requests={args.requests} max_tokens={args.max_tokens} torch_threads={threads}")

    base_s, base_tokens = baseline(model_path, requests, args.max_tokens)
    base_rps, base_tps = len(requests) / base_s, base_tokens / base_s
    print(f"{'setup':<22}{'req/s':>9}{'tok/s':>10}{'x req/s':>9}{'x tok/s':>9}  batch sizes seen")
    print(f"{'generate, one by one':<22}{base_rps:>9.2f}{base_tps:>10.1f}{1.0:>9.2f}{1.0:>9.2f}")

    config = CpuServerConfig(model_path=model_path, served_name="bench", port=0, max_batch_size=max(args.concurrency))
    with start_in_thread(config) as server:
        for concurrency in args.concurrency:
            assert server.batcher is not None
            server.batcher.batch_sizes.clear()
            seconds, tokens = asyncio.run(drive(server.url, "bench", requests, args.max_tokens, concurrency))
            rps, tps = len(requests) / seconds, tokens / seconds
            seen = max(server.batcher.batch_sizes, default=0)
            label = f"server, concurrency {concurrency}"
            print(f"{label:<22}{rps:>9.2f}{tps:>10.1f}{rps / base_rps:>9.2f}{tps / base_tps:>9.2f}  max {seen}")


if __name__ == "__main__":
    main()
