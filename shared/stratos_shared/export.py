"""Exporting a distilled student: a plain HF folder anyone can load, plus the LoRA adapter alone.

``stratos export JOB --out DIR`` downloads the job's trained model from the artifact store and calls
:func:`export_model`, which writes

- ``DIR/model/``: the merged model (base weights with the adapter folded in), its tokenizer and chat
  template: ``AutoModelForCausalLM.from_pretrained(DIR/model)`` and ``AutoTokenizer.from_pretrained`` load it
  with no Stratos and no PEFT installed;
- ``DIR/adapter/``: the LoRA adapter alone (a few MB), for serving many students on one base
  (``vllm serve BASE --enable-lora``) or loading with ``PeftModel.from_pretrained``; absent for full SFT;
- ``DIR/stratos_export.json``: where it came from (job, base model, method, accuracy);
- ``DIR/README.md``: a model card saying the same in words.

The adapter's ``base_model_name_or_path`` names the base as the job spec did (a hub id or a bundled model's
name), not the trainer's cache folder, which exists on no other machine.
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
        name_base(adapter_out, (info or {}).get("base_model_ref"))
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
    write_provenance(out, manifest)
    result = ExportResult(model_out, adapter_out if is_adapter else None, manifest)
    return result


def write_provenance(out: Path, manifest: dict[str, Any]) -> None:
    """``stratos_export.json`` and the model card (README.md), rewritten whenever the export gains a file."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "README.md").write_text(model_card(manifest), encoding="utf-8")


def name_base(adapter_dir: Path, base_ref: str | None) -> None:
    """Point the adapter's config at the base as the user named it (PEFT loads that name, not our cache path)."""
    config_path = adapter_dir / "adapter_config.json"
    if base_ref is None or not config_path.exists():
        return
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_ref
    config_path.write_text(json.dumps(config, indent=2))


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "unknown"


def model_card(manifest: dict[str, Any]) -> str:
    """A short README for the exported folder: what the model is, how it was made, how well it does."""
    lines = [
        f"# {manifest.get('student') or 'Student'} distilled by Stratos (job `{manifest.get('job_id', '?')}`)",
        "",
        f"- base model: `{manifest.get('base_model_ref') or manifest.get('base_model') or '?'}`",
        f"- task: {manifest.get('task') or 'see the job spec'}",
        f"- training: {manifest.get('method') or '?'}, {manifest.get('steps', '?')} steps"
        + (
            " (LoRA adapter, merged into `model/`; the adapter alone in `adapter/`)"
            if manifest.get("has_adapter")
            else ""
        ),
        f"- held-out accuracy: {_pct(manifest.get('before'))} before training, {_pct(manifest.get('after'))} after",
        f"- parameters: {manifest.get('num_parameters', '?'):,}"
        if isinstance(manifest.get("num_parameters"), int)
        else "- parameters: ?",
    ]
    for gguf in manifest.get("gguf", []):
        lines.append(f"- GGUF: `{gguf}` (llama.cpp: `llama-server -m {gguf}`; Ollama: `FROM ./{gguf}` in a Modelfile)")
    lines += [
        "",
        "Load `model/` with `transformers` (`AutoModelForCausalLM.from_pretrained('model')`); its chat template is in",
        "the tokenizer files. `stratos_export.json` holds the same facts for programs.",
        "",
    ]
    return "\n".join(lines)


def describe(result: ExportResult) -> dict[str, Any]:
    """A JSON-friendly summary for the CLI."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
