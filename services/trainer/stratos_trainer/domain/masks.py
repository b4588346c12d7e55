"""Assistant-only loss for any chat template: the trainer finds the assistant tokens itself.

TRL's ``assistant_only_loss`` needs ``{% generation %}`` markers in the chat template, which the local tiny
models have but real templates (SmolLM2's, most others) lack: TRL then raises "The chat template is not
training-compatible". Instead of writing a marked template per model family, the trainer renders each
conversation with the model's own template and locates every assistant turn by rendering the prefix before it:

- ``render(messages[:i], add_generation_prompt=True)`` ends where assistant turn ``i`` starts;
- ``render(messages[:i + 1])`` ends where it ends, after its end-of-turn token (trailing whitespace, such as
  ChatML's newline after ``<|im_end|>``, is not the model's to predict, as in the ``{% generation %}`` block).

The mask keeps the tokens that start inside those character spans (fast tokenizers report offsets). This needs a
*prefix-preserving* template: rendering a conversation's first turns gives the start of rendering all of it. A
template that rewrites earlier turns (some drop past reasoning) is refused with a message that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from stratos_trainer.domain.errors import TrainingError

Messages = list[dict[str, str]]


class ChatTemplateError(TrainingError, ValueError):
    """The chat template cannot show where assistant turns are (not prefix-preserving, or no offsets)."""


def _render(tokenizer: PreTrainedTokenizerBase, messages: Messages, *, generation_prompt: bool) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt))


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the ``[start, end)`` character span of each assistant turn in it."""
    text = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise ChatTemplateError(
                f"the chat template is not prefix-preserving at message {i} (rendering the first turns does not "
                "give the start of rendering them all), so assistant tokens cannot be located; pass a template "
                "that renders earlier turns unchanged"
            )
        end = len(through.rstrip())
        if end <= len(before):
            raise ChatTemplateError(f"assistant message {i} renders to nothing with this chat template")
        spans.append((len(before), end))
    return text, spans


def tokenize_with_assistant_mask(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> dict[str, list[int]]:
    """``input_ids`` of the rendered conversation and ``assistant_masks`` (1 on assistant tokens, else 0).

    The ids are exactly what ``apply_chat_template(messages, tokenize=True)`` gives (rendered text, no extra
    special tokens), so training sees what generation will.
    """
    text, spans = assistant_spans(tokenizer, messages)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise ChatTemplateError(
            "the tokenizer reports no character offsets (a slow tokenizer); use a fast one"
        ) from None
    ids = [int(i) for i in enc["input_ids"]]
    offsets: Sequence[tuple[int, int]] = enc["offset_mapping"]
    mask = [0] * len(ids)
    span = 0
    for j, (start, end) in enumerate(offsets):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        if span == len(spans):
            break
        if end > start and start >= spans[span][0]:
            mask[j] = 1
    return {"input_ids": ids, "assistant_masks": mask}


def assistant_masked_dataset(
    tokenizer: PreTrainedTokenizerBase, records: Dataset | Sequence[dict[str, Any]]
) -> Dataset:
    """A pre-tokenized dataset (``input_ids``, ``assistant_masks``) that TRL turns into assistant-only labels."""
    rows = [tokenize_with_assistant_mask(tokenizer, list(r["messages"])) for r in records]
    return Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "assistant_masks": [r["assistant_masks"] for r in rows]}
    )
