"""The deployer's engine choice over a real nats-server: llama.cpp where it can serve, the transformers server
where it cannot, and the report saying which and why.

One deployer with `serving_backend=auto` on a host without a GPU. A SmolLM2 student (a LoRA adapter on the
bundled SmolLM2-135M-Instruct) is merged, converted to GGUF and served by llama-server where `make llama-cpp`
built the engine; the tiny test student, whose locally trained tokenizer llama.cpp's converter does not know,
is served by the transformers server, and its report says so. Skipped where the engine is not built (CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from stratos_deployer.serving.llamacpp import find_engine
from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.contracts.job import StudentSpec
from stratos_shared.localmodels.bundled import ensure_bundled_model
from stratos_shared.report import JobReport
from tests.nats.services import running
from tests.nats.test_deployer import SERVERS, answers, deploy, key_of, ready, spec, stack
from tests.nats.test_deployer import adapter_dir as adapter_dir  # the tiny student's adapter (a module fixture)

# Without the engine every deployment in the suite already takes the fallback path (the e2e and deployer tests);
# this one is about the choice between the two, so it needs both.
pytestmark = [
    pytest.mark.nats,
    pytest.mark.skipif(find_engine() is None, reason="llama.cpp is not built here: run `make llama-cpp`"),
]


@pytest.fixture(scope="module")
def smollm2_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for SmolLM2 as the trainer saves one (B = 0: the base's answers, which is all serving needs)."""
    model = AutoModelForCausalLM.from_pretrained(ensure_bundled_model("smollm2-135m"))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    out = tmp_path_factory.mktemp("smollm2-adapter")
    get_peft_model(model, config).save_pretrained(str(out))
    return out


async def test_auto_serves_what_llama_cpp_converts_and_says_why_it_did_not(
    nats_server, tmp_path, nc: Client, collect, smollm2_adapter: Path, adapter_dir: Path
) -> None:
    chosen = await collect("stratos.evt.server.chosen")
    deployed = await collect("stratos.evt.model.deployed")
    completed = await collect("stratos.evt.job.completed")
    store = NatsArtifactStore(nc.jetstream())
    students = [StudentSpec(name="smollm2-135m", model="smollm2-135m", params_b=0.135)]
    smol = spec("smol-1").model_copy(update={"students": students})
    # 100 ms end to end: no 135M model on two cores answers a word problem that fast, with 8 requests in flight
    # least of all, so the deployer must try the faster weights too (and serve them: nothing meets it)
    strict = spec("smol-2").model_copy(update={"students": students})
    smol = smol.model_copy(update={"constraints": smol.constraints.model_copy(update={"latency_slo_ms": 600_000})})
    # both servers: three jobs keep serving, and a server holds two
    async with running(*stack(nats_server, tmp_path, "auto", SERVERS)):
        await ready(nats_server, list(SERVERS))
        await deploy(nc, chosen, completed, "smol-1", smollm2_adapter, smol)
        await deploy(nc, chosen, completed, "smol-2", smollm2_adapter, strict)
        await deploy(nc, chosen, completed, "tiny-1", adapter_dir)
        by_job = {b["job_id"]: b for b in deployed.bodies()}
        served = {job: await answers(by_job[job]["endpoint"], job, await key_of(nc, job)) for job in by_job}
        stored = {b["job_id"]: await store.get_bytes(b["report_uri"]) for b in completed.bodies()}
    reports = {job: JobReport.model_validate_json(raw) for job, raw in stored.items()}

    assert served == {"smol-1": True, "smol-2": True, "tiny-1": True}
    tiny_note = reports["tiny-1"].serving.engine_note or ""
    assert by_job["tiny-1"]["backend"] == "cpu"
    assert by_job["smol-1"]["backend"] == "llamacpp", reports["smol-1"].serving
    assert reports["smol-1"].serving.engine_note is None
    assert tiny_note.startswith("llama.cpp could not serve it: convert"), tiny_note
    # the engine and weights chosen against the SLO: q8_0 meets a generous one; a strict one tries q4_k_m too
    assert [(t.quantization, t.meets_slo) for t in reports["smol-1"].serving.engine_trials] == [("q8_0", True)]
    assert [(t.quantization, t.meets_slo) for t in reports["smol-2"].serving.engine_trials] == [
        ("q8_0", False),
        ("q4_k_m", False),
    ]
    assert reports["smol-2"].serving.quantization == "q4_k_m" and not reports["smol-2"].serving.meets_slo
    assert [level.concurrency for level in reports["smol-2"].serving.by_concurrency] == [1, 8]
    assert [t.backend for t in reports["tiny-1"].serving.engine_trials] == ["cpu"]
