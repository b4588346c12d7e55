"""Launching ``vllm serve`` on a GPU host (never imported: it pins its own torch).

A LoRA student is served as base model + adapter (``--enable-lora
--lora-modules NAME=PATH``) so clients ask for ``NAME``; a merged model is
served directly under ``--served-model-name NAME``. Either way the endpoint
speaks the same OpenAI API as the CPU server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from stratos_deployer.serving.process import ManagedProcess


class VllmConfig(BaseModel):
    """What one ``vllm serve`` process serves and how."""

    model: str = Field(description="Base (or merged) model directory or hub id.")
    served_name: str = Field(description="Model id clients send: the LoRA module name, or the merged model's name.")
    adapter_path: Path | None = Field(default=None, description="LoRA adapter; None serves `model` as is.")
    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port.")
    max_model_len: int | None = Field(default=None, ge=1, description="Context length cap (saves KV memory).")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description="Fraction of GPU memory vLLM may use.")
    dtype: str = Field(default="auto", description="Weight dtype: auto, bfloat16, float16, float32.")
    max_lora_rank: int | None = Field(default=None, ge=1, description="Needed when the adapter rank exceeds 16.")
    tensor_parallel_size: int = Field(
        default=1, ge=1, le=64, description="GPUs one model is split across: the serving server's gpu_count."
    )
    chat_template: Path | None = Field(
        default=None,
        description="A Jinja chat template file for a model without one of its own (vLLM refuses its chats else).",
    )
    executable: str = Field(default="vllm", description="The vllm CLI (e.g. a path inside its own venv).")
    extra_args: list[str] = Field(default_factory=list, description="Passed through verbatim, last.")


def build_vllm_command(config: VllmConfig) -> list[str]:
    """The exact argv of ``vllm serve`` for this config."""
    argv = [config.executable, "serve", config.model, "--host", config.host, "--port", str(config.port)]
    if config.adapter_path is not None:
        argv += ["--enable-lora", "--lora-modules", f"{config.served_name}={config.adapter_path}"]
        if config.max_lora_rank is not None:
            argv += ["--max-lora-rank", str(config.max_lora_rank)]
    else:
        argv += ["--served-model-name", config.served_name]
    argv += ["--dtype", config.dtype, "--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.max_model_len is not None:
        argv += ["--max-model-len", str(config.max_model_len)]
    if config.tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(config.tensor_parallel_size)]
    if config.chat_template is not None:
        argv += ["--chat-template", str(config.chat_template)]
    return argv + list(config.extra_args)


def vllm_process(config: VllmConfig, log_path: Path, env: Mapping[str, str] | None = None) -> ManagedProcess:
    """A not-yet-started process for this config; vLLM answers ``/health`` once it can serve (keyed or not)."""
    return ManagedProcess(build_vllm_command(config), f"http://{config.host}:{config.port}/health", log_path, env=env)
