"""Continuous batching over a Hugging Face causal LM on CPU.

One worker thread owns the model. Requests wait in a thread-safe queue; the
worker admits up to ``max_batch_size`` of them (waiting at most ``max_wait_ms``
for a batch to fill when idle), prefills them together with left padding, and
then decodes every active row one token per step over a shared KV cache.
A row that finishes (EOS, stop string, token limit, cancelled) is finished and
dropped from the cache on its own; requests that arrive meanwhile are
prefilled and merged into the running batch at the next step, so a long
generation never holds the door shut (continuous batching).

Merging needs plain ``DynamicLayer`` caches (Llama/Qwen2/Mistral without
sliding windows). Other cache types fall back to static waves: new requests
join only once the running batch has drained.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from stratos_deployer.serving.requests import SamplingParams

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class TokenEvent:
    """New text for one request; ``finish_reason`` is set on its last event."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[TokenEvent]
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    text_sent: str = ""
    pending_token: int = -1

    def emit(self, event: TokenEvent) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class RequestHandle:
    """What a caller holds for one submitted request: an async stream of events."""

    def __init__(self, request: _Request) -> None:
        self._request = request

    async def events(self) -> Any:
        """Yield ``TokenEvent`` objects until the one carrying a finish reason."""
        while True:
            event = await self._request.events.get()
            yield event
            if event.finish_reason is not None:
                return

    def cancel(self) -> None:
        """Ask the worker to drop this request (e.g. the client disconnected)."""
        self._request.cancelled.set()


class Batcher:
    """Owns the model and the generation loop; thread-safe ``submit``."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 10.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.model = model.train(False)  # inference: no dropout
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_positions: int = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        self.pad_id = _pad_id(model, tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        # Observed behaviour, exposed for /stats and tests: how many rows each
        # decode step ran, and how many requests each prefill admitted together.
        self.batch_sizes: Counter[int] = Counter()
        self.prefill_sizes: Counter[int] = Counter()
        self.requests_completed = 0
        self.tokens_generated = 0
        self._inbox: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- public API -------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stratos-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after it finishes the step it is in."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        """Queue a tokenized prompt; must be called from a running event loop."""
        if not prompt_ids:
            raise ValueError("prompt is empty")
        room = self.max_positions - len(prompt_ids)
        if room < 1:
            raise ValueError(f"prompt has {len(prompt_ids)} tokens; the model accepts at most {self.max_positions - 1}")
        params = SamplingParams(min(params.max_tokens, room), params.temperature, params.top_p, params.stop)
        request = _Request(prompt_ids, params, asyncio.get_running_loop(), asyncio.Queue())
        self._inbox.put(request)
        return RequestHandle(request)

    def stats(self) -> dict[str, Any]:
        """Counters a test or dashboard can read without touching the worker."""
        sizes = dict(self.batch_sizes)
        return {
            "decode_batch_sizes": {str(k): v for k, v in sorted(sizes.items())},
            "prefill_batch_sizes": {str(k): v for k, v in sorted(self.prefill_sizes.items())},
            "max_batch_size_seen": max(sizes, default=0),
            "requests_completed": self.requests_completed,
            "tokens_generated": self.tokens_generated,
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_s * 1000.0,
        }

    # -- worker -----------------------------------------------------------
    def _run(self) -> None:
        active: list[_Request] = []
        cache: DynamicCache | None = None
        mask = torch.zeros((0, 0), dtype=torch.long)
        while True:
            new = self._admit(len(active), can_join=cache is None or _mergeable(cache))
            if new is None:
                for request in active:
                    request.emit(TokenEvent("", "cancelled"))
                return
            try:
                with torch.inference_mode():
                    if new:
                        cache, mask, active = self._prefill(new, cache, mask, active)
                    if active and cache is not None:
                        cache, mask, active = self._decode_step(cache, mask, active)
            except Exception:  # one bad batch must not kill the server
                logger.exception("generation step failed; failing its requests")
                for request in active + new:
                    request.emit(TokenEvent("", "cancelled"))
                active, cache, mask = [], None, torch.zeros((0, 0), dtype=torch.long)
            if not active:
                cache, mask = None, torch.zeros((0, 0), dtype=torch.long)

    def _admit(self, n_active: int, can_join: bool) -> list[_Request] | None:
        """Take waiting requests; block (and let a batch fill) only when idle."""
        room = self.max_batch_size - n_active if (can_join or n_active == 0) else 0
        taken: list[_Request] = []
        if n_active == 0:
            first = self._inbox.get()
            if first is None:
                return None
            taken.append(first)
            deadline = time.monotonic() + self.max_wait_s
            while len(taken) < room:
                remaining = deadline - time.monotonic()
                try:
                    item = self._inbox.get(timeout=remaining) if remaining > 0 else self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)
                    break
                taken.append(item)
        else:
            while len(taken) < room:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)  # seen again once the batch drains
                    break
                taken.append(item)
        return [r for r in taken if not r.cancelled.is_set()]

    def _prefill(
        self, new: list[_Request], cache: DynamicCache | None, mask: torch.Tensor, active: list[_Request]
    ) -> tuple[DynamicCache, torch.Tensor, list[_Request]]:
        self.prefill_sizes[len(new)] += 1
        width = max(len(r.prompt_ids) for r in new)
        ids = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(new), width), dtype=torch.long)
        for row, request in enumerate(new):
            ids[row, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            new_mask[row, width - len(request.prompt_ids) :] = 1
        positions = (new_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=new_mask,
            position_ids=positions,
            cache=DynamicCache(config=self.model.config),
            use_cache=True,
        )
        new_cache: DynamicCache = out.cache
        keep = self._accept(new, out.logits[:, -1, :])
        new_cache, new_mask = _select(new_cache, new_mask, keep)
        new_rows = [new[i] for i in keep]
        if cache is None or not active:
            return new_cache, new_mask, new_rows
        merged_cache, merged_mask = _merge(cache, mask, new_cache, new_mask)
        return merged_cache, merged_mask, active + new_rows

    def _decode_step(
        self, cache: DynamicCache, mask: torch.Tensor, active: list[_Request]
    ) -> tuple[DynamicCache, torch.Tensor, list[_Request]]:
        self.batch_sizes[len(active)] += 1
        ids = torch.tensor([[r.pending_token] for r in active], dtype=torch.long)
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
        positions = mask.sum(-1, keepdim=True) - 1
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        keep = self._accept(active, out.logits[:, -1, :])
        if len(keep) == len(active):
            return out.cache, mask, active
        cache, mask = _select(out.cache, mask, keep)
        return cache, mask, [active[i] for i in keep]

    def _accept(self, rows: list[_Request], logits: torch.Tensor) -> list[int]:
        """Sample one token per row, emit its text; return the rows still running."""
        tokens = sample(logits, rows).tolist()
        keep: list[int] = []
        for index, (request, token) in enumerate(zip(rows, tokens, strict=True)):
            if request.cancelled.is_set():
                self._finish(request, "", "cancelled")
                continue
            if token in self.eos_ids:
                self._finish(request, self._flush(request), "stop")
                continue
            request.generated.append(token)
            request.pending_token = token
            self.tokens_generated += 1
            text = self._decode(request.generated)
            hit = _first_stop(text, request.params.stop)
            if hit is not None:
                self._finish(request, text[len(request.text_sent) : hit], "stop")
            elif len(request.generated) >= request.params.max_tokens:
                self._finish(request, text[len(request.text_sent) :], "length")
            else:
                delta = _safe_delta(text, request.text_sent, request.params.stop)
                if delta:
                    request.text_sent += delta
                    request.emit(TokenEvent(delta, None, len(request.prompt_ids), len(request.generated)))
                keep.append(index)
        return keep

    def _flush(self, request: _Request) -> str:
        return self._decode(request.generated)[len(request.text_sent) :]

    def _decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))

    def _finish(self, request: _Request, tail: str, reason: FinishReason) -> None:
        self.requests_completed += 1
        request.emit(TokenEvent(tail, reason, len(request.prompt_ids), len(request.generated)))


def sample(logits: torch.Tensor, rows: list[_Request]) -> torch.Tensor:
    """Vectorised greedy / temperature / top-p sampling with per-row settings."""
    logits = logits.float()
    temps = torch.tensor([r.params.temperature for r in rows])
    top_p = torch.tensor([r.params.top_p for r in rows])
    greedy = logits.argmax(-1)
    if bool((temps <= 0).all()):
        return greedy
    probs = torch.softmax(logits / temps.clamp(min=1e-5).unsqueeze(-1), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Drop a token once the mass before it already reaches top_p (the top token always stays).
    drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p.unsqueeze(-1)
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    picked = order.gather(-1, torch.multinomial(sorted_probs, 1)).squeeze(-1)
    return torch.where(temps <= 0, greedy, picked)


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _safe_delta(text: str, sent: str, stops: tuple[str, ...]) -> str:
    """New text that is safe to stream now.

    Holds back an incomplete UTF-8 character (decoded as U+FFFD) and any tail
    that could still become a stop string, so streamed text never has to be
    taken back.
    """
    end = len(text)
    while end > len(sent) and text[end - 1] == "\ufffd":
        end -= 1
    for stop in stops:
        for k in range(min(len(stop) - 1, end - len(sent)), 0, -1):
            if text[end - k : end] == stop[:k]:
                end -= k
                break
    return text[len(sent) : end] if end > len(sent) else ""


def _mergeable(cache: DynamicCache) -> bool:
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _layers(cache: DynamicCache) -> list[Any]:
    """The cache's layers, known (via ``_mergeable``) to be plain ``DynamicLayer`` tensors."""
    return list(cache.layers)


def _select(cache: DynamicCache, mask: torch.Tensor, keep: list[int]) -> tuple[DynamicCache, torch.Tensor]:
    """Keep only rows ``keep`` and drop leading columns that are padding in every row."""
    if len(keep) != mask.shape[0]:
        index = torch.tensor(keep, dtype=torch.long)
        cache.batch_select_indices(index)
        mask = mask[index]
    if mask.shape[0] and _mergeable(cache):
        first = int(mask.any(dim=0).int().argmax())
        if first > 0:
            for layer in _layers(cache):
                layer.keys = layer.keys[..., first:, :]
                layer.values = layer.values[..., first:, :]
            mask = mask[:, first:]
    return cache, mask


def _merge(
    cache: DynamicCache, mask: torch.Tensor, other: DynamicCache, other_mask: torch.Tensor
) -> tuple[DynamicCache, torch.Tensor]:
    """Stack two caches along the batch, left-padding the shorter one.

    Padding keys are masked out and RoPE was applied before caching, so
    shifting a row right inside the cache does not change what it attends to.
    """
    width = max(mask.shape[1], other_mask.shape[1])
    for mine, theirs in zip(_layers(cache), _layers(other), strict=True):
        mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)], dim=0)
        mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)], dim=0)
    merged_mask = torch.cat([_left_pad_mask(mask, width), _left_pad_mask(other_mask, width)], dim=0)
    return cache, merged_mask


def _left_pad(states: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - states.shape[-2]
    if missing == 0:
        return states
    pad = states.new_zeros((*states.shape[:-2], missing, states.shape[-1]))
    return torch.cat([pad, states], dim=-2)


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    if missing == 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=1)


def _pad_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, model.config.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    sources: list[Any] = [tokenizer.eos_token_id]
    if model.generation_config is not None:
        sources.append(model.generation_config.eos_token_id)
    sources.append(model.config.eos_token_id)
    for source in sources:
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list):
            ids.update(i for i in source if isinstance(i, int))
    return frozenset(ids)
