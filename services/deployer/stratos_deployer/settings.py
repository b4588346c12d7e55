"""Deployer settings (environment prefix STRATOS_)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

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
    latency_aware: bool = Field(
        default=True,
        description="With llama.cpp: when the weights above miss the job's latency SLO at the probed concurrencies, "
        "try q4_k_m (smaller, faster, at its measured accuracy cost) and serve whichever meets it.",
    )
    probe_requests: int = Field(default=16, ge=1, le=10_000, description="Requests in the latency probe.")
    probe_concurrency: list[Annotated[int, Field(ge=1, le=256)]] = Field(
        default=[1, 8],
        min_length=1,
        max_length=8,
        description="Concurrencies the latency probe measures (one request at a time is always among them); "
        "the SLO must hold at each.",
    )
    accuracy_samples: int = Field(default=100, ge=1, description="Held-out items checked through the endpoint.")
    max_tokens: int = Field(default=192, ge=1, description="Generation limit for probes and the accuracy check.")
    serving_ports: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,5}-[0-9]{1,5}$",
        description="Model servers listen on a free port of this range (e.g. 8200-8209): the ports a container "
        "publishes or a firewall opens. Unset: any free port.",
        examples=["8200-8209"],
    )
    ready_timeout_s: float | None = Field(
        default=None, gt=0, description="How long a backend may take to become ready; unset: 300 s CPU, 900 s vLLM."
    )

    @field_validator("serving_ports")
    @classmethod
    def _port_range(cls, value: str | None) -> str | None:
        if value is not None:
            first, last = (int(part) for part in value.split("-"))
            if not 1 <= first <= last <= 65535:
                raise ValueError(f"serving_ports {value!r}: give FIRST-LAST with 1 <= FIRST <= LAST <= 65535")
        return value

    def serving_port_range(self) -> range | None:
        """The ports model servers may take, or None for any free one."""
        if self.serving_ports is None:
            return None
        first, last = (int(part) for part in self.serving_ports.split("-"))
        return range(first, last + 1)
