"""Servers in the inventory: what the selector chooses from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stratos_shared.contracts.base import CONTRACT_CONFIG, ServerId


class ServerSpec(BaseModel):
    """One GPU (or CPU-only) server a job can train and serve on."""

    model_config = ConfigDict(**CONTRACT_CONFIG, extra="forbid")

    id: ServerId = Field(description="One NATS subject token: letters, digits, '_' and '-'.")
    gpu_model: str = Field(
        default="none", max_length=64, description="GPU model name, 'none' for CPU-only.", examples=["A100-80G"]
    )
    gpu_count: int = Field(default=0, ge=0, le=64, description="Number of GPUs.")
    gpu_memory_gb: float = Field(default=0.0, ge=0, le=4096, description="Memory per GPU in GiB.")
    gpu_tflops: float = Field(
        default=0.0,
        ge=0,
        le=100_000,
        description="Dense bf16 TFLOPS per GPU; when 0 the selector looks the model up in its table.",
    )
    cpu_cores: int = Field(default=8, ge=1, le=4096)
    memory_gb: float = Field(default=32.0, ge=0, le=1_000_000, description="Host memory in GiB.")
    cost_per_hour: float = Field(ge=0, le=100_000, description="Price in USD per hour.", examples=[1.89])
    region: str = Field(default="local", max_length=64, examples=["us-east"])
    latency_ms: float = Field(
        ge=0, le=60_000, description="Network round-trip latency from the users to this server, in ms.", examples=[35.0]
    )
    capacity: int = Field(default=1, ge=1, le=1024, description="How many jobs may be placed on it at once.")

    @property
    def total_gpu_memory_gb(self) -> float:
        return self.gpu_memory_gb * self.gpu_count


class ServerCatalog(BaseModel):
    """A YAML catalog of servers (see `examples/servers.yaml`)."""

    model_config = ConfigDict(**CONTRACT_CONFIG, extra="forbid")

    servers: list[ServerSpec] = Field(min_length=1)


class ServerRecord(BaseModel):
    """A server's entry in the inventory KV bucket: its spec and whether it is up."""

    model_config = ConfigDict(**CONTRACT_CONFIG, extra="ignore")

    spec: ServerSpec
    status: Literal["up", "down"] = "up"
    reason: str = Field(default="", description="Why it is down (heartbeat-timeout, operator).")
    monitored: bool = Field(
        default=False, description="True once it has sent a heartbeat: only monitored servers can time out."
    )
    changed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class WorkerBeat(BaseModel):
    """The last heartbeat of one worker process of a server."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str = ""
    jobs: list[str] = Field(default_factory=list)
    seen_at: float = Field(description="Unix time the inventory received it.")


class ServerLiveness(BaseModel):
    """A server's heartbeats in the ``stratos-liveness`` bucket: the deadline survives an inventory restart."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    server_id: str
    last_seen: float = Field(description="Unix time of the newest heartbeat from any of its workers.")
    workers: dict[str, WorkerBeat] = Field(default_factory=dict)

    def live_workers(self, now: float, timeout_s: float) -> dict[str, WorkerBeat]:
        return {name: beat for name, beat in self.workers.items() if now - beat.seen_at <= timeout_s}
