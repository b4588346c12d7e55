"""Named sizes of the tiny local models and how their generic pre-training runs.

Every field here feeds the content hash of the cache directory, so changing a
value (or bumping ``BUILDER_VERSION``) gives a new directory instead of silently
reusing weights built from different settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

BUILDER_VERSION = 1
"""Bumped whenever the corpus, tokenizer or training code changes what a build produces."""


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture of one named tiny Llama-style model."""

    name: str
    """Public name, e.g. ``"tiny-1m"``; the cache directory starts with it."""
    hidden_size: int
    """Width of the residual stream."""
    num_layers: int
    """Number of decoder blocks."""
    num_heads: int
    """Attention heads; ``hidden_size`` must divide evenly."""
    num_kv_heads: int
    """Key/value heads (grouped-query attention keeps the parameter count down)."""
    intermediate_size: int
    """Width of the SwiGLU MLP."""
    vocab_size: int = 1024
    """Upper bound on the BPE vocabulary (the generic corpus yields ~600); small so embeddings do not dominate."""
    max_position_embeddings: int = 1024
    """Longest sequence the RoPE cache is sized for."""


@dataclass(frozen=True)
class PretrainConfig:
    """Generic pre-training, so a base model knows the chat format and simple facts, not the eval tasks."""

    steps: int = 200
    """Optimizer steps; fixed (not time-based) so a build is reproducible and its hash meaningful."""
    batch_size: int = 8
    """Packed sequences per step."""
    seq_len: int = 128
    """Tokens per packed sequence."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate (cosine decay after a short warm-up); tiny models tolerate a high rate."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    corpus_docs: int = 6000
    """Number of generated documents (chat items and plain sentences) in the corpus."""
    seed: int = 0
    """Seed for the corpus, the weight init and the data order."""


@dataclass(frozen=True)
class TinyModelRecipe:
    """Everything that determines a build: architecture plus pre-training."""

    spec: TinyModelSpec
    """Model architecture."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Pre-training settings."""

    def content_hash(self) -> str:
        """Short hash of the recipe and builder version; names the cache directory."""
        payload = json.dumps({"v": BUILDER_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


RECIPES: dict[str, TinyModelRecipe] = {
    "tiny-1m": TinyModelRecipe(
        TinyModelSpec("tiny-1m", hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384),
        PretrainConfig(steps=200, learning_rate=4e-3),
    ),
    "tiny-2m": TinyModelRecipe(
        TinyModelSpec("tiny-2m", hidden_size=192, num_layers=4, num_heads=6, num_kv_heads=2, intermediate_size=512),
        PretrainConfig(steps=200, learning_rate=3e-3),
    ),
    "tiny-4m": TinyModelRecipe(
        TinyModelSpec("tiny-4m", hidden_size=256, num_layers=5, num_heads=8, num_kv_heads=4, intermediate_size=768),
        PretrainConfig(steps=300, batch_size=16, learning_rate=2e-3),
    ),
    "tiny-10m": TinyModelRecipe(
        TinyModelSpec("tiny-10m", hidden_size=384, num_layers=6, num_heads=6, num_kv_heads=3, intermediate_size=1024),
        PretrainConfig(steps=300, batch_size=16, learning_rate=1.5e-3),
    ),
}
"""Named recipes; parameter counts are roughly 1M, 2M, 4M and 10M (embeddings tied)."""
