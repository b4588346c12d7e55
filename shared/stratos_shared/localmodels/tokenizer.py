"""A small byte-level BPE tokenizer trained locally, plus a loader for any model directory.

Digits are split one by one before BPE so numbers tokenize the same way in
every context: a tiny model can then learn column arithmetic instead of
memorising multi-digit tokens. Byte-level BPE means no input is ever unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN]
MARKER_FILE = "stratos_model.json"
"""Written next to locally built models; tells ``load_tokenizer`` to keep our tokenizer class."""

# ChatML-style. The {% generation %} block marks assistant tokens so TRL's
# ``assistant_only_loss`` can mask everything else; <|im_end|> is inside the
# block so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endif %}"
    "{{- '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


PLAIN_CHAT_TEMPLATE = (
    "{%- if bos_token %}{{- bos_token }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'assistant' %}{{- 'Assistant:\n' + message['content'] + (eos_token or '') + '\n\n' }}"
    "{%- else %}{{- message['role'] | capitalize + ': ' + message['content'] + '\n\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:\n' }}{%- endif %}"
)
"""The chat format of a model that has no chat template of its own (a base model such as Gemma 3 270M).

Plain text a base model reads naturally: the system prompt, ``User: <question>``, then ``Assistant:`` and a
newline (not a space, so the first answer token is the same whether the prompt is tokenized alone or with
the answer), each turn separated by a blank line; an assistant turn ends with the eos token so a trained model
learns to stop. It starts with the bos token when the tokenizer has one (Gemma needs it). It is
prefix-preserving, as the trainer's assistant mask requires, and :func:`load_tokenizer` sets it, so the trainer,
its evaluation, the transformers server and the saved student (hence vLLM and llama.cpp) all render the same
text."""

PLAIN_NEXT_TURN = "\n\nUser:"
"""Where a base model that has not learned to stop starts inventing the next turn in the plain format."""


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (digits split individually) with the chat template and special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[BOS_TOKEN],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a local tiny model or of any normal hub-format model directory.

    Our models are loaded as ``PreTrainedTokenizerFast`` because transformers'
    auto classes may substitute an architecture-specific tokenizer class with
    its own pre-tokenizer. A pad token is always set (falling back to eos),
    since batched generation and training both pad; so is a chat template (the
    model's own, else :data:`PLAIN_CHAT_TEMPLATE`), since every stage renders chats.
    """
    path = Path(path)
    tok: PreTrainedTokenizerBase
    if (path / MARKER_FILE).exists() or _saved_class(path) in _GENERIC_CLASSES:
        tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        log.info("%s has no chat template: chats are rendered in the plain format (PLAIN_CHAT_TEMPLATE)", path)
        tok.chat_template = PLAIN_CHAT_TEMPLATE
    return tok


def has_chat_template(path: str | Path) -> bool:
    """True when the model folder at ``path`` carries a chat template of its own; a hub id or a folder without a
    tokenizer config counts as having one (whoever loads it resolves it)."""
    folder = Path(path)
    if (folder / "chat_template.jinja").exists() or not (folder / "tokenizer_config.json").exists():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return True


def uses_plain_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when ``tokenizer`` renders chats with the plain fallback format (its model has no template)."""
    return tokenizer.chat_template == PLAIN_CHAT_TEMPLATE


_GENERIC_CLASSES = {"PreTrainedTokenizerFast", "TokenizersBackend"}


def _saved_class(path: Path) -> str | None:
    """The tokenizer class in ``tokenizer_config.json`` (our checkpoints and adapters carry no marker)."""
    try:
        cls = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        return None
    return cls if isinstance(cls, str) else None


def is_local_tiny_model(path: str | Path) -> bool:
    """True for directories built by :mod:`stratos_shared.localmodels`."""
    return (Path(path) / MARKER_FILE).exists()


def read_marker(path: str | Path) -> dict[str, object]:
    """The build metadata of a local tiny model (name, hash, parameter count, pre-training loss)."""
    data: dict[str, object] = json.loads((Path(path) / MARKER_FILE).read_text())
    return data
