"""Which server runs the student: vLLM on a GPU host; llama.cpp on CPU where it is built; else the transformers server.

All are child processes behind the same three calls, so the deployer does
not care which one it got. GPU detection never imports vLLM.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal, Protocol

from stratos_deployer.serving.gateway import GatewayConfig, gateway_command
from stratos_deployer.serving.llamacpp import (
    LlamaCppEngine,
    LlamaServerConfig,
    Quantization,
    build_llama_server_command,
    convert_to_gguf,
    engine_problem,
    gguf_name,
    merged_folder,
)
from stratos_deployer.serving.process import ManagedProcess, ServingError
from stratos_deployer.serving.requests import ENDPOINT_KEY_ENV
from stratos_deployer.serving.vllm import VllmConfig, vllm_process
from stratos_shared.embedded import free_port

CPU_READY_TIMEOUT_S = 300.0
VLLM_READY_TIMEOUT_S = 900.0
VLLM_KEY_ENV = "VLLM_API_KEY"
"""vLLM's own: with it set, vLLM requires the bearer key on its ``/v1`` routes (``/health`` stays open)."""


class ServingBackend(Protocol):
    """Starts a model server and reports whether it still answers."""

    name: str

    def start(self, model_path: Path, adapter_path: Path | None, port: int, api_key: str | None = None) -> str:
        """Start serving, block until ready, return the OpenAI base URL (``http://host:port/v1``).

        With ``api_key``, every ``/v1`` request must carry ``Authorization: Bearer <api_key>``.
        """
        ...

    def stop(self) -> None:
        """Stop the server (no-op when not running)."""
        ...

    def healthy(self) -> bool:
        """True while the server answers its health check."""
        ...


class _ProcessBackend(ABC):
    """Shared lifecycle: build argv, start, wait for /health, stop."""

    name = "process"

    def __init__(self, host: str, ready_timeout_s: float, log_dir: Path | None) -> None:
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="stratos-serving-"))
        self._process: ManagedProcess | None = None

    @abstractmethod
    def _make_process(
        self, model_path: Path, adapter_path: Path | None, port: int, api_key: str | None
    ) -> ManagedProcess:
        """The not-yet-started server process for one launch."""

    def start(self, model_path: Path, adapter_path: Path | None, port: int, api_key: str | None = None) -> str:
        if self._process is not None:
            raise ServingError(f"{self.name} backend is already serving; stop() it first")
        process = self._make_process(model_path, adapter_path, port, api_key)
        process.start()
        self._process = process
        try:
            process.wait_ready(self.ready_timeout_s)
        except ServingError:
            self._process = None
            raise
        return f"http://{self.host}:{port}/v1"

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def healthy(self) -> bool:
        return self._process is not None and self._process.healthy()

    @property
    def log_path(self) -> Path:
        """Where the server's stdout/stderr go."""
        return self.log_dir / f"{self.name}-server.log"


class CpuBackend(_ProcessBackend):
    """The transformers CPU server (``python -m stratos_deployer.serving``) as a child process."""

    name = "cpu"

    def __init__(
        self,
        served_name: str,
        *,
        host: str = "127.0.0.1",
        max_batch_size: int = 16,
        max_wait_ms: float = 10.0,
        ready_timeout_s: float = CPU_READY_TIMEOUT_S,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(host, ready_timeout_s, log_dir)
        self.served_name = served_name
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms

    def command(self, model_path: Path, adapter_path: Path | None, port: int, keyed: bool = False) -> list[str]:
        """The argv that runs the CPU server (``keyed``: it reads its key from ``ENDPOINT_KEY_ENV``)."""
        argv = [sys.executable, "-m", "stratos_deployer.serving", "--model", str(model_path)]
        if adapter_path is not None:
            argv += ["--adapter", str(adapter_path)]
        if keyed:
            argv += ["--api-key-env", ENDPOINT_KEY_ENV]
        return [
            *argv,
            "--served-name", self.served_name,
            "--host", self.host,
            "--port", str(port),
            "--max-batch-size", str(self.max_batch_size),
            "--max-wait-ms", str(self.max_wait_ms),
        ]  # fmt: skip

    def _make_process(
        self, model_path: Path, adapter_path: Path | None, port: int, api_key: str | None
    ) -> ManagedProcess:
        argv = self.command(model_path, adapter_path, port, keyed=api_key is not None)
        env = {ENDPOINT_KEY_ENV: api_key} if api_key is not None else None
        return ManagedProcess(argv, f"http://{self.host}:{port}/health", self.log_path, env=env)


class LlamaCppBackend(_ProcessBackend):
    """llama.cpp's ``llama-server`` on the student converted to GGUF (quantized), behind Stratos' gateway.

    The gateway (`serving.gateway`) is the process the deployer starts: it holds the endpoint's key, refuses what
    the CPU server refuses, and runs llama-server as its child on a loopback port.
    """

    name = "llamacpp"

    def __init__(
        self,
        served_name: str,
        engine: LlamaCppEngine,
        *,
        quant: Quantization = "q8_0",
        host: str = "127.0.0.1",
        parallel: int = 16,
        threads: int | None = None,
        ready_timeout_s: float = CPU_READY_TIMEOUT_S,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(host, ready_timeout_s, log_dir)
        self.served_name = served_name
        self.engine = engine
        self.quant: Quantization = quant
        self.parallel = parallel
        self.threads = threads
        self.gguf: Path | None = None
        """The file served, once converted: what `stratos export --format gguf` would hand a user."""

    def prepare(self, model_path: Path, adapter_path: Path | None) -> Path:
        """The GGUF to serve, converted (and merged, for an adapter) once per model and quantization."""
        work = self.log_dir.parent / "gguf"
        target = work / gguf_name(model_path, adapter_path, self.quant)
        if not target.exists():
            folder = merged_folder(model_path, adapter_path, work / "merged")
            convert_to_gguf(self.engine, folder, target, self.quant)
        return target

    def _make_process(
        self, model_path: Path, adapter_path: Path | None, port: int, api_key: str | None
    ) -> ManagedProcess:
        self.gguf = self.prepare(model_path, adapter_path)
        engine = LlamaServerConfig(
            gguf=self.gguf,
            served_name=self.served_name,
            host="127.0.0.1",
            port=free_port(),
            parallel=self.parallel,
            threads=self.threads,
        )
        endpoint = GatewayConfig(
            host=self.host,
            port=port,
            upstream_port=engine.port,
            served_name=self.served_name,
            max_tokens_limit=engine.ctx_per_slot,
            api_key=api_key,
        )
        argv = gateway_command(endpoint, build_llama_server_command(self.engine, engine), sys.executable)
        env = {ENDPOINT_KEY_ENV: api_key} if api_key is not None else None
        return ManagedProcess(argv, f"http://{self.host}:{port}/health", self.log_path, env=env)


class VllmBackend(_ProcessBackend):
    """``vllm serve`` as a child process; settings other than paths and port come from ``template``."""

    name = "vllm"

    def __init__(
        self,
        served_name: str,
        *,
        template: VllmConfig | None = None,
        ready_timeout_s: float = VLLM_READY_TIMEOUT_S,
        log_dir: Path | None = None,
    ) -> None:
        self.template = template or VllmConfig(model="", served_name=served_name)
        super().__init__(self.template.host, ready_timeout_s, log_dir)
        self.served_name = served_name

    def config_for(self, model_path: Path, adapter_path: Path | None, port: int) -> VllmConfig:
        """The full vLLM config for one launch."""
        return self.template.model_copy(
            update={
                "model": str(model_path),
                "adapter_path": adapter_path,
                "port": port,
                "served_name": self.served_name,
            }
        )

    def _make_process(
        self, model_path: Path, adapter_path: Path | None, port: int, api_key: str | None
    ) -> ManagedProcess:
        env = {VLLM_KEY_ENV: api_key} if api_key is not None else None
        return vllm_process(self.config_for(model_path, adapter_path, port), self.log_path, env=env)


def has_gpu() -> bool:
    """True when an NVIDIA GPU is usable: ``nvidia-smi -L`` lists one, or torch sees CUDA."""
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            if listed.returncode == 0 and "GPU" in listed.stdout:
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    import torch

    return bool(torch.cuda.is_available())


BackendChoice = Literal["auto", "cpu", "llamacpp", "vllm"]


def choose_backend(
    has_gpu: bool,
    override: str | None = None,
    *,
    served_name: str = "stratos-model",
    ready_timeout_s: float | None = None,
    log_dir: Path | None = None,
    host: str = "127.0.0.1",
    gpu_count: int = 1,
    engine: LlamaCppEngine | None = None,
    quant: Quantization = "q8_0",
) -> ServingBackend:
    """vLLM on GPU; on CPU llama.cpp where ``engine`` is built, else the transformers server; ``override`` wins.

    ``override``: "vllm", "llamacpp" (needs ``engine``), "cpu" (the transformers server) or "auto"/None.
    ``ready_timeout_s`` None keeps each backend's own default (vLLM loads far slower than the CPU servers);
    ``host`` is the interface the model server binds to and its endpoint names (the server's advertised address);
    ``gpu_count`` (the server's) splits a vLLM model across that many GPUs.
    """
    choice = (override or "auto").lower()
    if choice == "auto":
        choice = "vllm" if has_gpu else ("llamacpp" if engine is not None else "cpu")
    if choice == "cpu":
        timeout = ready_timeout_s or CPU_READY_TIMEOUT_S
        return CpuBackend(served_name, host=host, log_dir=log_dir, ready_timeout_s=timeout)
    if choice == "llamacpp":
        if engine is None:
            raise ServingError(engine_problem() or "llama.cpp is not built: run `make llama-cpp`")
        timeout = ready_timeout_s or CPU_READY_TIMEOUT_S
        return LlamaCppBackend(served_name, engine, quant=quant, host=host, log_dir=log_dir, ready_timeout_s=timeout)
    if choice == "vllm":
        template = VllmConfig(model="", served_name=served_name, host=host, tensor_parallel_size=max(1, gpu_count))
        timeout = ready_timeout_s or VLLM_READY_TIMEOUT_S
        return VllmBackend(served_name, template=template, log_dir=log_dir, ready_timeout_s=timeout)
    raise ValueError(f"unknown serving backend {override!r}; expected 'auto', 'cpu', 'llamacpp' or 'vllm'")
