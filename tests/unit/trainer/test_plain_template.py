"""A model without a chat template (a base model such as Gemma 3 270M) trains, evaluates and serves in the plain
format instead of failing in ``apply_chat_template``.

The tiny model with its template deleted stands in for such a model here, in every ``make test``; the real one
(``test_gemma.py``) runs where Gemma is converted.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import helpers
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stratos_deployer.serving.batcher import SamplingParams
from stratos_deployer.serving.cpu_server import encode_chat, with_turn_stop
from stratos_shared.localmodels import PLAIN_CHAT_TEMPLATE, PLAIN_NEXT_TURN, load_tokenizer, uses_plain_template
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.masks import tokenize_with_assistant_mask
from stratos_trainer.domain.sft import train_sft


@pytest.fixture(scope="module")
def templateless(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base model with no chat template, saved as a generic tokenizer (no Stratos marker)."""
    out = tmp_path_factory.mktemp("templateless")
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(base_model / name, out / name)
    config = json.loads((base_model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    assert not AutoTokenizer.from_pretrained(str(out)).chat_template
    return out


def test_a_model_without_a_template_renders_chats_in_the_plain_format(templateless: Path) -> None:
    tokenizer = load_tokenizer(templateless)
    assert uses_plain_template(tokenizer)
    prompt = tokenizer.apply_chat_template(helpers.TWO_TURNS[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "You add numbers.\n\nUser: What is 37 + 48?\n\nAssistant:\n"
    ids = encode_chat(tokenizer, helpers.TWO_TURNS[:2])  # the transformers server's prompt: the same text
    assert ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_the_server_stops_a_plain_format_model_where_it_would_start_the_next_turn(
    templateless: Path, base_model: Path
) -> None:
    asked = SamplingParams(max_tokens=32, stop=("###",))
    assert with_turn_stop(load_tokenizer(templateless), asked).stop == ("###", PLAIN_NEXT_TURN)
    assert with_turn_stop(load_tokenizer(base_model), asked) == asked  # its own template: its own eos


def test_the_mask_covers_exactly_the_answers_and_their_eos_in_the_plain_format(templateless: Path) -> None:
    tokenizer = load_tokenizer(templateless)
    enc = tokenize_with_assistant_mask(tokenizer, helpers.TWO_TURNS)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    masked = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    rest = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    eos = tokenizer.eos_token
    assert masked == f"Answer: 85{eos}Answer: 15{eos}"
    assert rest == "You add numbers.\n\nUser: What is 37 + 48?\n\nAssistant:\n\n\nUser: And 10 + 5?\n\nAssistant:\n\n\n"


@pytest.mark.timeout(300)
def test_lora_steps_on_a_templateless_model_save_a_student_that_carries_the_plain_format(
    templateless: Path, tmp_path: Path
) -> None:
    """The saved student carries the template it was trained with, so vLLM and llama.cpp render the same text."""
    torch.set_num_threads(2)
    cfg = TrainingConfig(
        method="lora-sft", max_steps=3, batch_size=2, max_seq_len=96, lora_r=8, checkpoint_interval=10**6
    )
    result = train_sft(templateless, sft_dataset(helpers.records(6, seed=3)), cfg, tmp_path)
    assert result.global_step == 3
    assert all(math.isfinite(loss) for _, loss in result.loss_history)
    assert result.adapter_dir is not None
    for folder in (result.model_dir, result.adapter_dir):
        assert AutoTokenizer.from_pretrained(str(folder)).chat_template == PLAIN_CHAT_TEMPLATE
    AutoModelForCausalLM.from_pretrained(str(result.model_dir))
