"""Assistant-only loss on real chat templates: the trainer builds the assistant-token mask itself.

SmolLM2's template (ChatML with a default system turn, no ``{% generation %}`` markers) is refused by TRL's
``assistant_only_loss``; the trainer's own mask must cover exactly the assistant tokens on it, and equal
transformers' marker-based mask on the tiny models' template.
"""

from __future__ import annotations

import math
from pathlib import Path

import helpers
import pytest
import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from stratos_shared.localmodels import load_tokenizer
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.masks import ChatTemplateError, tokenize_with_assistant_mask
from stratos_trainer.domain.sft import train_sft

CONVERSATION = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "What is 37 + 48?"},
    {"role": "assistant", "content": "7 + 8 = 15\n3 + 4 + 1 = 8\nAnswer: 85"},
    {"role": "user", "content": "And 10 + 5?"},
    {"role": "assistant", "content": "Answer: 15"},
]


def _split(tokenizer: PreTrainedTokenizerBase, conversation: list[dict[str, str]]) -> tuple[list[int], str, str]:
    enc = tokenize_with_assistant_mask(tokenizer, conversation)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    masked = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    rest = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    return ids, masked, rest


@pytest.mark.parametrize("conversation", [CONVERSATION, CONVERSATION[1:]], ids=["system", "default-system"])
def test_the_mask_covers_exactly_the_assistant_turns_on_smollm2_s_template(
    smollm2: Path, conversation: list[dict[str, str]]
) -> None:
    tokenizer = load_tokenizer(smollm2)
    assert "{% generation %}" not in tokenizer.chat_template  # the template TRL refuses
    ids, masked, rest = _split(tokenizer, conversation)
    reference = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
    assert ids == list(reference["input_ids"])  # training sees exactly what the template renders
    # every assistant turn with its end-of-turn token, nothing else
    assert masked == "7 + 8 = 15\n3 + 4 + 1 = 8\nAnswer: 85<|im_end|>Answer: 15<|im_end|>"
    assert "Answer" not in rest and rest.count("<|im_start|>assistant\n") == 2
    if conversation[0]["role"] != "system":
        assert rest.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_on_the_tiny_template_the_mask_equals_the_generation_markers_mask(base_model: Path) -> None:
    tokenizer = load_tokenizer(base_model)
    assert "{% generation %}" in tokenizer.chat_template
    ours = tokenize_with_assistant_mask(tokenizer, CONVERSATION)
    theirs = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert ours["input_ids"] == list(theirs["input_ids"])
    assert ours["assistant_masks"] == list(theirs["assistant_masks"])
    assert sum(ours["assistant_masks"]) > 10


def test_a_template_that_rewrites_earlier_turns_is_refused_saying_why(base_model: Path) -> None:
    tokenizer = load_tokenizer(base_model)
    # renders only the last assistant turn (like templates that drop past reasoning): not prefix-preserving
    tokenizer.chat_template = (
        "{%- for m in messages %}{%- if m['role'] != 'assistant' or loop.last %}"
        "{{- '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
    )
    with pytest.raises(ChatTemplateError, match="not prefix-preserving at message 2"):
        tokenize_with_assistant_mask(tokenizer, CONVERSATION)


@pytest.mark.timeout(600)
def test_a_few_lora_sft_steps_on_smollm2_train_its_adapter(smollm2: Path, tmp_path: Path) -> None:
    """The trainer's own code path (train_sft) on the real template: 3 steps, batch 2, sequences of at most 96."""
    torch.set_num_threads(2)
    records = helpers.records(6, seed=3)
    cfg = TrainingConfig(
        method="lora-sft", max_steps=3, batch_size=2, max_seq_len=96, lora_r=8, checkpoint_interval=10**6
    )
    result = train_sft(smollm2, sft_dataset(records), cfg, tmp_path)
    assert result.global_step == 3
    losses = [loss for _, loss in result.loss_history]
    assert len(losses) == 3 and all(math.isfinite(x) and 0 < x < 20 for x in losses), losses
    assert result.adapter_dir is not None
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().max()) > 0 for t in lora_b)  # B starts at zero: the steps moved it
    merged = load_file(str(result.model_dir / "model.safetensors"))
    base = load_file(str(smollm2 / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert merged[name].shape == base[name].shape and not torch.equal(merged[name], base[name])
    assert load_tokenizer(result.model_dir).chat_template == load_tokenizer(smollm2).chat_template
