"""Exporting a distilled student: a plain HF folder anyone can load, plus the LoRA adapter alone.

``stratos export JOB --out DIR`` downloads the job's trained model from the artifact store and calls
:func:`export_model`, which writes

- ``DIR/model/``: the merged model (base weights with the adapter folded in), its tokenizer and chat
  template: ``AutoModelForCausalLM.from_pretrained(DIR/model)`` and ``AutoTokenizer.from_pretrained`` load it
  with no Stratos and no PEFT installed;
- ``DIR/adapter/``: the LoRA adapter alone (a few MB), for serving many students on one base
  (``vllm serve BASE --enable-lora``) or loading with ``PeftModel.from_pretrained``; absent for full SFT;
- ``DIR/stratos_export.json``: where it came from (job, base model, method, accuracy).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "stratos_export.json"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    model_dir: Path
    """The merged, self-contained HF model folder."""
    adapter_dir: Path | None
    """The adapter alone; None when the student was fully fine-tuned (there is no adapter)."""
    manifest: dict[str, Any] = field(default_factory=dict)
    """Provenance written next to them."""


def export_model(
    trained_dir: str | Path,
    out_dir: str | Path,
    *,
    is_adapter: bool,
    base_model: str | Path | None = None,
    info: dict[str, Any] | None = None,
) -> ExportResult:
    """Write ``out_dir/model`` (merged) and, for an adapter, ``out_dir/adapter`` from a trained model folder.

    ``trained_dir`` is what the trainer uploaded: a PEFT adapter folder (``is_adapter``, then ``base_model``
    is the folder of the base it was trained on) or a full model folder.
    """
    from transformers import AutoModelForCausalLM

    from stratos_shared.localmodels import load_tokenizer

    trained, out = Path(trained_dir), Path(out_dir)
    model_out, adapter_out = out / "model", out / "adapter"
    for stale in (model_out, adapter_out):
        if stale.is_symlink():  # rmtree refuses links, and writing through one would land wherever it points
            stale.unlink()
        shutil.rmtree(stale, ignore_errors=True)
    tokenizer = load_tokenizer(trained)
    if is_adapter:
        if base_model is None:
            raise ValueError("exporting an adapter needs the folder of its base model")
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(str(base_model))
        model = PeftModel.from_pretrained(base, str(trained)).merge_and_unload()
        shutil.copytree(trained, adapter_out)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(trained))
    model.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    manifest = {
        **(info or {}),
        "base_model": str(base_model) if base_model is not None else None,
        "has_adapter": is_adapter,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    result = ExportResult(model_out, adapter_out if is_adapter else None, manifest)
    return result


def describe(result: ExportResult) -> dict[str, Any]:
    """A JSON-friendly summary for the CLI."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
