"""`stratos export`: fetch a job's trained model from the artifact store (the export itself is shared code)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from stratos_cli import client
from stratos_deployer.serving.llamacpp import (
    QUANTIZATIONS,
    GgufConversionError,
    convert_to_gguf,
    engine_problem,
    find_engine,
)
from stratos_shared.artifacts import NatsArtifactStore, get_dir
from stratos_shared.errors import StratosError
from stratos_shared.export import write_provenance


class ExportError(StratosError):
    """The export cannot be written as asked."""


async def download_trained(model_uri: str, dest: Path, nats_url: str | None) -> Path:
    """Unpack the trained model archive (adapter or full model) at ``model_uri`` into ``dest``."""
    async with client.connect(nats_url) as (_, js):
        return await get_dir(NatsArtifactStore(js), model_uri, dest)


def target_problem(out: Path, *, force: bool) -> str | None:
    """Why `stratos export` may not write into `out`; None when it may.

    The export replaces ``model/`` and ``adapter/`` inside `out`, so a folder that holds anything is written into
    only with ``--force``; a symlink (the folder itself, or ``model``, ``adapter`` or ``.download`` inside it) is
    never followed, ``--force`` or not: it could point anywhere the user can write.
    """
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"export target {out} cannot be inspected ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return f"export target {out} is a symbolic link; give the real folder (links are never followed)"
    if not stat.S_ISDIR(info.st_mode):
        return f"export target {out} exists and is not a folder"
    for name in ("model", "adapter", ".download"):
        if (out / name).is_symlink():
            return f"export target {out / name} is a symbolic link; remove it (links are never followed)"
    if any(out.iterdir()) and not force:
        return (
            f"export target {out} is not empty; choose an empty folder or pass --force to replace model/ and adapter/"
        )
    return None


def export_gguf(out: Path, job_id: str, quant: str, manifest: dict[str, Any]) -> Path:
    """``out/<job>-<quant>.gguf`` converted from the exported ``out/model`` by llama.cpp's own converter.

    Needs the engine `make llama-cpp` builds (the converter and the quantizer come with it).
    """
    if quant not in QUANTIZATIONS:
        raise ExportError(f"--quant {quant!r}: expected one of {', '.join(QUANTIZATIONS)}")
    engine = find_engine()
    if engine is None:
        raise ExportError(engine_problem() or "llama.cpp is not built: run `make llama-cpp`")
    target = out / f"{job_id}-{quant}.gguf"
    try:
        convert_to_gguf(engine, out / "model", target, quant)
    except GgufConversionError as exc:
        raise ExportError(str(exc)) from exc
    write_provenance(out, {**manifest, "gguf": [*manifest.get("gguf", []), target.name]})
    return target
