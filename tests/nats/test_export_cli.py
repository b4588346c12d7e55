"""`stratos export JOB --out DIR` on a real nats-server: the trained adapter comes from the object store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from stratos_cli.app import app
from stratos_deployer.serving.llamacpp import find_engine
from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.strategies import Infeasible, select
from stratos_selector.workflow import apply
from stratos_shared.artifacts import NatsArtifactStore, put_dir
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET
from stratos_shared.contracts.events import JobSubmitted, ModelTrained, ServerChosen
from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer

pytestmark = pytest.mark.nats
ROOT = Path(__file__).resolve().parents[2]


def _adapter(tmp: Path) -> Path:
    """A LoRA adapter with non-zero B matrices on tiny-1m, saved as the trainer saves one (with its tokenizer)."""
    base = ensure_tiny_model("tiny-1m")
    torch.manual_seed(5)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base)),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(str(tmp / "adapter"))
    load_tokenizer(base).save_pretrained(str(tmp / "adapter"))
    return tmp / "adapter"


async def _publish_trained_job(url: str, adapter: Path) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_infrastructure(js)
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    uri = await put_dir(NatsArtifactStore(js), "j-export", "model/adapter.tar.gz", adapter)
    servers = generate_catalog(5, seed=3)
    choice = select(servers, spec)
    assert not isinstance(choice, Infeasible)
    placed = ServerChosen(
        job_id="j-export", revision=1, server=choice.server, reason="r", explanation=choice.explanation
    )
    trained = ModelTrained(
        job_id="j-export", server_id=choice.server.id, student="tiny-1m", base_model="tiny:tiny-1m",
        method="lora-sft", model_uri=uri, is_adapter=True, accuracy_before=0.1, accuracy_after=0.6,
        training_seconds=3.0, steps=10, tokens=1000, cost_usd=0.0, revision=1,
    )  # fmt: skip
    state: JobState | None = None
    for event in (JobSubmitted(job_id="j-export", spec=spec), placed, trained):
        state = apply(state, event) or state
    assert state is not None
    await TypedKV(await js.key_value(JOBS_BUCKET), JobState).put("j-export", state)
    await nc.drain()


def test_export_writes_a_loadable_merged_model_and_the_adapter(nats_server: NatsServerProcess, tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    asyncio.run(_publish_trained_job(nats_server.url, adapter))
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", "j-export", "--out", str(out), "--nats", nats_server.url])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model_dir"] == str(out / "model") and summary["adapter_dir"] == str(out / "adapter")
    assert summary["manifest"]["after"] == 0.6 and summary["manifest"]["base_model_ref"] == "tiny:tiny-1m"
    assert not (out / ".download").exists()

    merged = AutoModelForCausalLM.from_pretrained(str(out / "model"))
    tokenizer = AutoTokenizer.from_pretrained(str(out / "model"))
    enc = tokenizer("What is 3 + 4?", return_tensors="pt")
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(str(ensure_tiny_model("tiny-1m")))
    reference = PeftModel.from_pretrained(base, str(out / "adapter"))
    with torch.no_grad():
        assert torch.allclose(merged(**enc).logits, reference(**enc).logits, atol=1e-4)

    missing = CliRunner().invoke(app, ["export", "nope", "--out", str(out), "--nats", nats_server.url])
    assert missing.exit_code == 1 and "no trained model" in missing.output
    # the adapter names its base as the spec did, not the trainer's cache; the model card says what it is
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "tiny:tiny-1m"
    card = (out / "README.md").read_text()
    assert "`j-export`" in card and "lora-sft, 10 steps" in card and "10.0% before training, 60.0% after" in card


def test_a_gguf_export_needs_llama_cpp_or_a_model_its_converter_knows(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """Without the engine: one line naming `make llama-cpp`. With it: the tiny student's locally trained tokenizer
    is one llama.cpp's converter does not know, refused in one line (SmolLM2 converts: tests/unit/serving)."""
    asyncio.run(_publish_trained_job(nats_server.url, _adapter(tmp_path)))
    out = tmp_path / "gguf"
    argv = ["export", "j-export", "--out", str(out), "--format", "gguf", "--nats", nats_server.url]
    result = CliRunner().invoke(app, argv)
    # no engine: refused before anything is written (exit 2); with it, the conversion error (a StratosError:
    # `stratos` prints it as one line)
    said = " ".join(result.output.split()) + str(result.exception or "")
    expected = "make llama-cpp" if find_engine() is None else "to GGUF failed"
    assert result.exit_code != 0 and expected in said, said
    argv[3] = str(tmp_path / "gguf-2")
    bad = CliRunner().invoke(app, [*argv[:-2], "--quant", "q3", "--nats", nats_server.url])
    assert bad.exit_code == 2 and "expected one of f16, q8_0, q4_k_m" in " ".join(bad.output.split())


def test_export_never_writes_into_a_folder_that_holds_something_or_through_a_link(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    asyncio.run(_publish_trained_job(nats_server.url, _adapter(tmp_path)))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    for out, phrase in ((busy, "is not empty"), (tmp_path / "link", "symbolic link")):
        refused = CliRunner().invoke(app, ["export", "j-export", "--out", str(out), "--nats", nats_server.url])
        assert refused.exit_code == 2 and phrase in refused.output, refused.output
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"] and not any(elsewhere.iterdir())
    forced = ["export", "j-export", "--out", str(busy), "--force", "--nats", nats_server.url]
    assert CliRunner().invoke(app, forced).exit_code == 0
    assert (busy / "model").is_dir() and (busy / "notes.txt").read_text() == "mine"
