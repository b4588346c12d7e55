"""Tiny local base models for tests, the demo and as students/teachers; no model hub needed.

Usage::

    from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer

    path = ensure_tiny_model("tiny-1m")          # built once, then cached
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = load_tokenizer(path)              # also works for normal hub model dirs

Cache root: ``$STRATOS_MODEL_CACHE`` or ``~/.cache/stratos/models``; each model
lives in ``<name>-<content hash>``. CLI: ``python -m stratos_shared.localmodels build --name tiny-1m``.
"""

from stratos_shared.localmodels.build import build_tiny_model, default_cache_dir, ensure_tiny_model, model_dir_for
from stratos_shared.localmodels.config import RECIPES, PretrainConfig, TinyModelRecipe, TinyModelSpec
from stratos_shared.localmodels.corpus import SYSTEM_PROMPT
from stratos_shared.localmodels.tokenizer import (
    CHAT_TEMPLATE,
    PLAIN_CHAT_TEMPLATE,
    PLAIN_NEXT_TURN,
    has_chat_template,
    is_local_tiny_model,
    load_tokenizer,
    read_marker,
    uses_plain_template,
)

__all__ = [
    "CHAT_TEMPLATE",
    "PLAIN_CHAT_TEMPLATE",
    "PLAIN_NEXT_TURN",
    "RECIPES",
    "SYSTEM_PROMPT",
    "PretrainConfig",
    "TinyModelRecipe",
    "TinyModelSpec",
    "build_tiny_model",
    "default_cache_dir",
    "ensure_tiny_model",
    "has_chat_template",
    "is_local_tiny_model",
    "load_tokenizer",
    "model_dir_for",
    "read_marker",
    "uses_plain_template",
]
