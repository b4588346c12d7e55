"""Deployer settings (environment prefix STRATOS_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stratos_shared.settings import WorkerSettings


class DeployerSettings(WorkerSettings):
    serving_backend: Literal["auto", "cpu", "llamacpp", "vllm"] = Field(
        default="auto",
        description="auto: vLLM when this host has a GPU; else llama.cpp where it is built (`make llama-cpp`) and "
        "the model converts to GGUF; else `cpu`, the transformers batching server.",
    )
    quantization: Literal["f16", "q8_0", "q4_k_m"] = Field(
        default="q8_0", description="The GGUF weights llama.cpp serves (q8_0: near-lossless; q4_k_m: smaller, faster)."
    )
    probe_requests: int = Field(default=16, ge=1, le=10_000, description="Requests in the latency probe.")
    accuracy_samples: int = Field(default=100, ge=1, description="Held-out items checked through the endpoint.")
    max_tokens: int = Field(default=192, ge=1, description="Generation limit for probes and the accuracy check.")
    ready_timeout_s: float | None = Field(
        default=None, gt=0, description="How long a backend may take to become ready; unset: 300 s CPU, 900 s vLLM."
    )
