"""Build, pre-train and cache tiny Llama-style models locally (no model hub needed).

A build is deterministic for a given recipe, so the cache directory is named by
the recipe's content hash: a second ``ensure_tiny_model`` call is instant, and
changing a recipe never reuses stale weights. Builds happen in a temporary
directory renamed into place under a file lock, so concurrent test runs never
see half-written models.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from stratos_shared.localmodels.config import RECIPES, TinyModelRecipe
from stratos_shared.localmodels.corpus import generate_corpus
from stratos_shared.localmodels.tokenizer import EOS_TOKEN, MARKER_FILE, PAD_TOKEN, train_tokenizer

log = logging.getLogger(__name__)

CACHE_ENV = "STRATOS_MODEL_CACHE"
"""Environment variable that overrides the default cache root ``~/.cache/stratos/models``."""


def default_cache_dir() -> Path:
    """The cache root: ``$STRATOS_MODEL_CACHE`` or ``~/.cache/stratos/models``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "stratos" / "models"


def model_dir_for(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the named model lives (or will live) in the cache."""
    recipe = _recipe(name)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{name}-{recipe.content_hash()}"


def ensure_tiny_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return a directory loadable with ``AutoModelForCausalLM.from_pretrained``, building it once.

    Use :func:`stratos_shared.localmodels.load_tokenizer` for its tokenizer.
    """
    target = model_dir_for(name, cache_dir)
    if (target / MARKER_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / MARKER_FILE).exists():  # another process built it while we waited
            return target
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny_model(_recipe(name), tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def _recipe(name: str) -> TinyModelRecipe:
    if name not in RECIPES:
        raise KeyError(f"unknown tiny model {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


def build_tiny_model(recipe: TinyModelRecipe, out_dir: str | Path) -> Path:
    """Train the tokenizer, initialise the model, pre-train it on the generic corpus and save both."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec, pre = recipe.spec, recipe.pretrain
    start = time.monotonic()
    torch.manual_seed(pre.seed)

    chats, prose = generate_corpus(pre.corpus_docs, pre.seed)
    tokenizer = train_tokenizer(prose + [m["content"] for c in chats for m in c], spec.vocab_size)
    texts = [str(tokenizer.apply_chat_template(c, tokenize=False)) for c in chats] + [p + EOS_TOKEN for p in prose]

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=_token_id(tokenizer, EOS_TOKEN),
        pad_token_id=_token_id(tokenizer, PAD_TOKEN),
        rms_norm_eps=1e-5,
    )
    model = LlamaForCausalLM(config)
    losses = _pretrain(model, tokenizer, texts, recipe)

    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    n_params = sum(p.numel() for p in model.parameters())
    marker = {
        "name": spec.name,
        "hash": recipe.content_hash(),
        "num_parameters": n_params,
        "pretrain_first_loss": losses[0],
        "pretrain_final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "build_seconds": round(time.monotonic() - start, 1),
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    log.info("built %s (%d params) in %.1fs", spec.name, n_params, marker["build_seconds"])
    return out


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(tid, int)
    return tid


def _pretrain(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, texts: list[str], recipe: TinyModelRecipe
) -> list[float]:
    """Plain causal-LM training on packed sequences; a bare loop is faster than Trainer at this size."""
    pre = recipe.pretrain
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
    usable = (len(ids) // pre.seq_len) * pre.seq_len
    data = torch.tensor(ids[:usable]).view(-1, pre.seq_len)
    gen = torch.Generator().manual_seed(pre.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=pre.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < pre.warmup_steps:
            return (step + 1) / pre.warmup_steps
        progress = (step - pre.warmup_steps) / max(1, pre.steps - pre.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    order = torch.randperm(len(data), generator=gen)
    for step in range(pre.steps):
        start = (step * pre.batch_size) % len(data)
        idx = order[start : start + pre.batch_size]
        if len(idx) < pre.batch_size:
            order = torch.randperm(len(data), generator=gen)
            idx = order[: pre.batch_size]
        batch = data[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()  # type: ignore[no-untyped-call]
    return losses
