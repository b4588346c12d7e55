"""``python -m stratos_deployer.serving``: run the CPU OpenAI-compatible server."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from stratos_deployer.serving.cpu_server import CpuServerConfig, serve


def parse_args(argv: Sequence[str] | None = None) -> CpuServerConfig:
    """Turn command-line flags into a validated server config."""
    parser = argparse.ArgumentParser(
        prog="python -m stratos_deployer.serving",
        description="Serve a transformers causal LM (plus optional LoRA adapter) over an OpenAI-compatible "
        "HTTP API on CPU, with dynamic batching. Endpoints: POST /v1/chat/completions, GET /v1/models, "
        "GET /health (200 once the model is loaded), GET /stats (batch sizes).",
    )
    parser.add_argument("--model", required=True, type=Path, help="model directory (AutoModelForCausalLM)")
    parser.add_argument("--adapter", type=Path, default=None, help="PEFT LoRA adapter directory, merged at load")
    parser.add_argument("--served-name", default="stratos-model", help="model id clients send (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--max-batch-size", type=int, default=16, help="most requests decoded together (default: %(default)s)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long an idle server waits for a batch to fill (default: %(default)s)",
    )
    parser.add_argument("--default-max-tokens", type=int, default=256, help="completion length if a request sets none")
    parser.add_argument(
        "--max-tokens-limit", type=int, default=2048, help="longest completion a request may ask (default: %(default)s)"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="largest request body (default: %(default)s)"
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        default=None,
        help="environment variable holding the key clients must send as 'Authorization: Bearer <key>' "
        "(not the key itself: a command line is visible to every user of the machine)",
    )
    args = parser.parse_args(argv)
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    return CpuServerConfig(
        model_path=args.model,
        adapter_path=args.adapter,
        served_name=args.served_name,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        default_max_tokens=args.default_max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_body_bytes=args.max_body_bytes,
        api_key=api_key,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
