"""The deployer over a real nats-server: the job report, a redeploy after a re-plan, teardown on cancel.

Inventory, selector (placement, re-planning, the job ledger, work assignments) and two deployers, one on
each of two servers with their own loopback addresses, run for real, the deployers starting real CPU model
servers as child processes. The stages in between are stood in for by their
events (valid contract events published by the test) and a tiny LoRA adapter in the artifact store:
the deployer is the unit under test, and training for real would cost a minute more.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from nats.aio.client import Client
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from stratos_cli.app import app
from stratos_cli.client import wait_for_workers, wait_until_ready
from stratos_cli.endpointkey import read_key
from stratos_cli.stack import launch_service, service_env, stop_pids
from stratos_deployer.main import build as build_deployer
from stratos_deployer.serving.process import stop_leftovers
from stratos_deployer.settings import DeployerSettings
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.artifacts import NatsArtifactStore, put_dir
from stratos_shared.bus.handler import subject_of
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET, server_artifacts_bucket
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    DataReady,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobSubmitted,
    ModelDeployed,
    ModelTrained,
    ServerDownRequested,
    StudentChosen,
    StudentScreen,
    TeacherChosen,
    TeacherScore,
    TrainingProgress,
)
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from stratos_shared.models import resolve_model
from tests.conftest import Collector
from tests.nats.services import common, running

pytestmark = pytest.mark.nats

ROOT = Path(__file__).parents[2]
STUDENT = "tiny:tiny-1m"
LOSSES = [(1, 3.2), (2, 2.9), (3, 2.5)]
TEACHER_COST, DATA_COST, TRAINING_COST = 0.013, 0.2, 0.05


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for the tiny student, random enough that serving it is not serving the base model."""
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(STUDENT))
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(str(out))
    return out


def spec(name: str) -> JobSpec:
    base = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    return base.model_copy(
        update={
            "name": name,
            "students": base.students[:1],
            "escalation": EscalationSpec(max_attempts=1),  # one attempt: not what this test is about
            "task": base.task.model_copy(update={"size": 100}),
            "distillation": base.distillation.model_copy(update={"min_dataset_size": 10}),
        }
    )


SERVERS = {"h100-us-east": "127.0.0.2", "a10-us-central": "127.0.0.3"}
"""The servers with a deployer, and the address each advertises (the only ones jobs can be placed on)."""


def stack(
    nats_server: NatsServerProcess, tmp_path: Path, backend: str = "cpu", servers: dict[str, str] = SERVERS
) -> tuple[Any, ...]:
    """Inventory, selector and one deployer per server of `servers` (id -> advertised address), serving with
    `backend`."""
    base = common(nats_server, tmp_path)
    return (
        build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**base | {"require_workers": True})),
        # Small probes keep each deployment to a few seconds; the numbers still come from real requests.
        *(
            build_deployer(
                DeployerSettings(
                    **base,
                    server_id=server,
                    advertise_host=host,
                    serving_backend=backend,
                    probe_requests=3,
                    accuracy_samples=3,
                    max_tokens=8,
                )
            )
            for server, host in servers.items()
        ),
    )


async def ready(nats_server: NatsServerProcess, servers: list[str] | None = None) -> None:
    await wait_until_ready(nats_server.url)
    await wait_for_workers(nats_server.url, servers or list(SERVERS))


async def publish(nc: Client, event: Event) -> None:
    await nc.jetstream().publish(subject_of(event), event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})


async def trained_upstream(
    nc: Client,
    job_id: str,
    server_id: str,
    adapter: Path,
    revision: int = 1,
    student: tuple[str, str] = ("tiny-1m", STUDENT),
) -> ModelTrained:
    """What teacher-eval, data-synth and the trainer (of `server_id`, at placement `revision`) would have published
    for this job, in pipeline order; `student` is (name, model) of the spec's student the adapter was trained on."""
    name, model = student
    store = NatsArtifactStore(nc.jetstream())
    teacher = TeacherChosen(
        job_id=job_id,
        teacher="strong",
        mode="alignment",
        tau=0.5,
        scores=[
            TeacherScore(name="strong", accuracy=0.9, ci_low=0.75, ci_high=0.96, graded=30, errors=0, cost_usd=0.012),
            TeacherScore(name="weak", accuracy=0.3, ci_low=0.17, ci_high=0.48, graded=30, errors=1, cost_usd=0.001),
        ],
        sample_ids=["q-1", "q-2"],
        cost_usd=TEACHER_COST,
    )
    data = DataReady(
        job_id=job_id,
        mode="alignment",
        teacher="strong",
        train_uri=store.uri_for(job_id, "data/train.jsonl"),
        eval_uri=store.uri_for(job_id, "data/eval.jsonl"),
        asked=100,
        accepted=85,
        rejected_by_reason={"wrong-answer": 15},
        acceptance_rate=0.85,
        teacher_tokens=20_000,
        cost_usd=DATA_COST,
    )
    screen = StudentScreen(name=name, model=model, params=1_000_000, screened_accuracy=0.0, passed=True)
    placed = {"server_id": server_id, "revision": revision}
    chosen = StudentChosen(job_id=job_id, student=name, model=model, threshold=0.0, screens=[screen], **placed)
    progress = [TrainingProgress(job_id=job_id, step=step, total_steps=3, loss=loss, **placed) for step, loss in LOSSES]
    trained = ModelTrained(
        job_id=job_id,
        server_id=server_id,
        student=name,
        base_model=model,
        method="lora-sft",
        model_uri=await put_dir(store, job_id, "model/adapter", adapter),
        is_adapter=True,
        accuracy_before=0.0,
        accuracy_after=0.1,
        training_seconds=12.5,
        steps=3,
        tokens=4096,
        cost_usd=TRAINING_COST,
        revision=revision,
    )
    for event in (teacher, data, chosen, *progress, trained):
        await publish(nc, event)
    return trained


async def deploy(
    nc: Client, chosen: Collector, completed: Collector, job_id: str, adapter: Path, job: JobSpec | None = None
) -> tuple[dict[str, Any], ModelTrained]:
    """Submit a job (`spec(job_id)` unless given), stand in for the stages up to training (the adapter trained on
    the spec's first student), wait until it completes."""
    job = job or spec(job_id)
    await publish(nc, JobSubmitted(job_id=job_id, spec=job))
    await chosen.wait_for(lambda c: any(b["job_id"] == job_id for b in c.bodies()), timeout_s=30)
    placement = next(b for b in chosen.bodies() if b["job_id"] == job_id)
    student = (job.students[0].name, job.students[0].model)
    trained = await trained_upstream(nc, job_id, placement["server"]["id"], adapter, placement["revision"], student)
    await completed.wait_for(lambda c: any(b["job_id"] == job_id for b in c.bodies()), timeout_s=120)
    return placement, trained


async def key_of(nc: Client, job_id: str, revision: int = 1) -> str:
    """The bearer key the deployer minted for the job's deployment at `revision`, read as `stratos key` reads it:
    the ledger's URI, in the deployed server's key bucket."""
    state = await job_state(
        nc, job_id, lambda s: s.results.deployment is not None and s.results.deployment.revision == revision
    )
    return await read_key(state, nc.jetstream())


async def ask(endpoint: str, model: str, key: str | None) -> httpx.Response:
    """One short chat completion, with `key` as the bearer token (None: no Authorization header)."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        return await client.post(
            f"{endpoint}/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "1+1?"}], "max_tokens": 4},
        )


async def answers(endpoint: str, model: str, key: str) -> bool:
    """True when the endpoint serves a chat completion for `model`; False when nothing serves there."""
    try:
        reply = await ask(endpoint, model, key)
    except httpx.TransportError:  # refused, reset or silent: nothing serves there
        return False
    reply.raise_for_status()
    body = reply.json()
    return body["model"] == model and isinstance(body["choices"][0]["message"]["content"], str)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def job_state(nc: Client, job_id: str, until: Callable[[JobState], bool]) -> JobState:
    """The ledger's state of the job once `until` holds (the ledger folds events a moment after they are out)."""
    jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
    state: JobState | None = None
    for _ in range(100):
        found = await jobs.get(job_id)
        state = found[0] if found else None
        if state is not None and until(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"the ledger never reached the expected state for {job_id}: {state}")


async def test_report_is_complete_and_a_replan_moves_the_deployment(
    nats_server, tmp_path, nc: Client, collect, adapter_dir: Path
) -> None:
    chosen = await collect("stratos.evt.server.chosen")
    deployed = await collect("stratos.evt.model.deployed")
    completed = await collect("stratos.evt.job.completed")
    store = NatsArtifactStore(nc.jetstream())
    async with running(*stack(nats_server, tmp_path)):
        await ready(nats_server)
        placement, trained = await deploy(nc, chosen, completed, "dep-1", adapter_dir)
        first = deployed.bodies()[0]
        done = completed.bodies()[0]
        report = json.loads(await store.get_bytes(done["report_uri"]))
        markdown = (await store.get_bytes(done["report_uri"].replace("report.json", "report.md"))).decode()
        first_state = await job_state(nc, "dep-1", lambda s: s.status == "completed")
        first_key = await key_of(nc, "dep-1", 1)
        served_first = await answers(first["endpoint"], "dep-1", first_key)
        unkeyed = [(await ask(first["endpoint"], "dep-1", key)).status_code for key in (None, "wrong", first_key[:-1])]
        printed = await asyncio.to_thread(CliRunner().invoke, app, ["key", "dep-1", "--nats", nats_server.url])
        status_view = await asyncio.to_thread(CliRunner().invoke, app, ["status", "dep-1", "--nats", nats_server.url])

        # The job's server goes down after deployment: the selector re-plans, the deployer follows.
        old_server = placement["server"]["id"]
        await publish(nc, ServerDownRequested(server_id=old_server, reason="test: lost after deployment"))
        await deployed.wait_for(lambda c: any(b["revision"] == 2 for b in c.bodies()), timeout_s=120)
        second = next(b for b in deployed.bodies() if b["revision"] == 2)
        replan = next(b for b in chosen.bodies() if b["job_id"] == "dep-1" and b["revision"] == 2)
        moved_state = await job_state(nc, "dep-1", lambda s: s.endpoint == second["endpoint"])
        old_endpoint_gone = await eventually(lambda: _not(answers(first["endpoint"], "dep-1", first_key)))
        second_key = await key_of(nc, "dep-1", 2)
        served_second = await answers(second["endpoint"], "dep-1", second_key)
        old_key_on_new = (await ask(second["endpoint"], "dep-1", first_key)).status_code
        printed_after_move = await asyncio.to_thread(
            CliRunner().invoke, app, ["key", "dep-1", "--nats", nats_server.url]
        )
        assert moved_state.report_uri is not None  # the new server's report, in its own bucket
        moved_report = json.loads(await store.get_bytes(moved_state.report_uri))

    # --- the first deployment: on the placed server, measured through its endpoint ---
    assert first["revision"] == 1 and first["server_id"] == old_server and first["backend"] == "cpu"
    assert first["endpoint"].startswith(f"http://{SERVERS[old_server]}:"), "not served at its server's address"
    announced = {b["endpoint"] for b in deployed.bodies() if b["revision"] == 1}
    assert announced == {first["endpoint"]}, "revision 1 was served more than once (a redelivery restarted it?)"
    assert served_first, "the endpoint in ModelDeployed did not serve the job's model"
    assert unkeyed == [401, 401, 401], "the endpoint served a client without the deployment's key"
    assert len(first_key) >= 40 and first["api_key_uri"].endswith("/dep-1/deployment/r1-api-key")
    assert printed.exit_code == 0 and printed.output.strip() == first_key, printed.output
    assert "stratos key dep-1" in status_view.output and first_key not in status_view.output
    assert "stratos key dep-1" in markdown and first_key not in markdown
    assert 0 < first["ttft_p50_ms"] <= first["latency_p50_ms"] <= first["latency_p95_ms"]
    assert 0.0 <= first["accuracy"] <= 1.0
    assert done["summary"]["endpoint"] == first["endpoint"] and done["summary"]["server_id"] == old_server
    assert first_state.endpoint == first["endpoint"] and first_state.report_uri == done["report_uri"]

    # --- the report names every part the issue asks for, with the numbers the events carried ---
    server = placement["server"]
    assert report["server"]["id"] == old_server and report["server"]["reason"] == placement["reason"]
    assert report["server"]["revision"] == 1 and report["server"]["strategy"]
    assert report["server"]["feasible_count"] >= report["server"]["pareto_size"] >= 1
    assert report["teacher"]["teacher"] == "strong" and report["teacher"]["mode"] == "alignment"
    assert report["teacher"]["accuracy"] == 0.9
    assert report["student"]["before"] == trained.accuracy_before
    assert report["student"]["after"] == trained.accuracy_after
    assert report["student"]["seconds"] == trained.training_seconds and report["student"]["student"] == "tiny-1m"
    serving = report["serving"]
    assert serving["latency_p50_ms"] == first["latency_p50_ms"] and serving["accuracy"] == first["accuracy"]
    # the SLO is held against the slowest probed concurrency (one request at a time, and 8 in flight)
    assert [level["concurrency"] for level in serving["by_concurrency"]] == [1, 8]
    worst = max(level["latency_p50_ms"] for level in serving["by_concurrency"])
    assert serving["total_latency_ms"] == pytest.approx(server["latency_ms"] + worst)
    assert serving["slo_ms"] == 100 and serving["meets_slo"] == (serving["total_latency_ms"] <= 100)
    cost = report["cost"]
    assert (cost["teacher_eval_usd"], cost["data_synth_usd"], cost["training_usd"]) == (
        TEACHER_COST,
        DATA_COST,
        TRAINING_COST,
    )
    assert cost["serving_usd"] == pytest.approx(24 * server["cost_per_hour"]) and cost["budget_usd"] == 200
    total = TEACHER_COST + DATA_COST + TRAINING_COST + cost["serving_usd"]
    score = report["score"]
    assert score["accuracy"] == first["accuracy"]
    assert score["latency"] == pytest.approx(min(1.0, 100 / serving["total_latency_ms"]))
    assert score["cost"] == pytest.approx(1 - total / 200)
    assert [tuple(point) for point in report["loss_curve"]] == LOSSES
    assert set(report["plots"]) == {"accuracy", "loss", "cost"}
    stages = [span["stage"] for span in report["timeline"]]  # from the real ledger's event times
    assert stages == ["admission", "teacher-eval", "data-synth", "pre-screen", "training", "deployment"], stages
    for uri in report["plots"].values():
        assert (await store.get_bytes(uri)).startswith(b"\x89PNG"), uri
    assert f"**total** | **{total:.4f}** of 200.00 budget" in markdown

    # --- the re-plan: redeployed on the new server, the old endpoint torn down, the ledger and report updated ---
    assert replan["server"]["id"] != old_server and replan["previous_server_id"] == old_server
    assert second["revision"] == 2 and second["server_id"] == replan["server"]["id"]
    assert second["endpoint"].startswith(f"http://{SERVERS[second['server_id']]}:")
    assert second["endpoint"] != first["endpoint"]
    assert old_endpoint_gone, f"the old endpoint {first['endpoint']} still answers after the redeploy"
    assert served_second, "the new endpoint does not serve the job's model"
    assert second_key != first_key and old_key_on_new == 401, "the moved endpoint kept the old deployment's key"
    assert printed_after_move.output.strip() == second_key
    assert moved_state.server_id == replan["server"]["id"] and moved_state.server_revision == 2
    assert moved_state.results.dumped("deployment")["revision"] == 2 and moved_state.status == "completed"
    assert server_artifacts_bucket(second["server_id"]) in moved_state.report_uri and second["report_uri"]
    assert moved_report["server"]["id"] == replan["server"]["id"] and moved_report["server"]["revision"] == 2
    assert moved_report["serving"]["endpoint"] == second["endpoint"]
    assert len(completed.messages) == 1, "a redeploy must not complete the job a second time"


async def test_cancel_tears_down_only_that_jobs_deployment(
    nats_server, tmp_path, nc: Client, collect, adapter_dir: Path
) -> None:
    chosen = await collect("stratos.evt.server.chosen")
    deployed = await collect("stratos.evt.model.deployed")
    completed = await collect("stratos.evt.job.completed")
    async with running(*stack(nats_server, tmp_path)):
        await ready(nats_server)
        await deploy(nc, chosen, completed, "keep-1", adapter_dir)
        await deploy(nc, chosen, completed, "stop-1", adapter_dir)
        endpoints = {b["job_id"]: b["endpoint"] for b in deployed.bodies()}
        keys = {job: await key_of(nc, job) for job in endpoints}
        both_served = [await answers(endpoints[job], job, keys[job]) for job in ("keep-1", "stop-1")]

        result = await asyncio.to_thread(CliRunner().invoke, app, ["cancel", "stop-1", "--nats", nats_server.url])
        stopped = await eventually(lambda: _not(answers(endpoints["stop-1"], "stop-1", keys["stop-1"])))
        cancelled = await job_state(nc, "stop-1", lambda s: s.status == "cancelled")
        kept_serving = await answers(endpoints["keep-1"], "keep-1", keys["keep-1"])
        kept = await job_state(nc, "keep-1", lambda s: s.status == "completed")

    assert both_served == [True, True]
    assert result.exit_code == 0, result.output
    assert stopped, f"the cancelled job's endpoint {endpoints['stop-1']} still answers"
    assert cancelled.endpoint is None and "cancelled" in (cancelled.reason or "")
    assert kept_serving, "cancelling one job took another job's deployment down"
    assert kept.endpoint == endpoints["keep-1"]


async def test_a_deployed_job_whose_only_server_goes_down_fails_and_its_endpoint_is_torn_down(
    nats_server, tmp_path, nc: Client, collect, adapter_dir: Path
) -> None:
    """Only one server meets a 31 ms latency SLO: once it is down the selector has nowhere to re-plan the job."""
    chosen = await collect("stratos.evt.server.chosen")
    failed = await collect("stratos.evt.job.failed")
    deployed = await collect("stratos.evt.model.deployed")
    completed = await collect("stratos.evt.job.completed")
    strict = spec("lost-1")
    strict = strict.model_copy(update={"constraints": strict.constraints.model_copy(update={"latency_slo_ms": 31})})
    async with running(*stack(nats_server, tmp_path)):
        await ready(nats_server)
        placement, _ = await deploy(nc, chosen, completed, "lost-1", adapter_dir, strict)
        endpoint = deployed.bodies()[0]["endpoint"]
        key = await key_of(nc, "lost-1")
        served = await answers(endpoint, "lost-1", key)
        await publish(nc, ServerDownRequested(server_id=placement["server"]["id"], reason="test: lost for good"))
        await failed.wait_for(lambda c: any(b["job_id"] == "lost-1" for b in c.bodies()), timeout_s=30)
        stopped = await eventually(lambda: _not(answers(endpoint, "lost-1", key)))
        state = await job_state(nc, "lost-1", lambda s: s.status == "failed")

    assert placement["server"]["id"] == "h100-us-east" and served
    assert failed.bodies()[0]["stage"] == "placement"
    assert stopped, f"the failed job's endpoint {endpoint} still answers"
    assert state.endpoint is None and (state.reason or "").startswith("deployment lost: server h100-us-east went down")
    assert len([b for b in chosen.bodies() if b["job_id"] == "lost-1"]) == 1, "re-planned onto a server that misses"


async def test_a_deployer_restarted_after_sigkill_still_stops_the_endpoint_it_left_running(
    nats_server, tmp_path, nc: Client, collect, adapter_dir: Path
) -> None:
    """The model server outlives a SIGKILLed deployer; the next deployer adopts it from the deployment record."""
    chosen = await collect("stratos.evt.server.chosen")
    deployed = await collect("stratos.evt.model.deployed")
    completed = await collect("stratos.evt.job.completed")
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    env = service_env(
        home,
        nats_server.url,
        1,
        {
            "STRATOS_SERVING_BACKEND": "cpu",
            "STRATOS_PROBE_REQUESTS": "3",
            "STRATOS_ACCURACY_SAMPLES": "3",
            "STRATOS_MAX_TOKENS": "8",
            "STRATOS_ACK_WAIT_S": "5",
            "STRATOS_SERVER_ID": "h100-us-east",
        },
    )
    pid = launch_service("deployer", home, env)
    try:
        async with running(*stack(nats_server, tmp_path)[:2]):  # inventory and selector in-process
            await ready(nats_server, ["h100-us-east"])
            await deploy(nc, chosen, completed, "orphan-1", adapter_dir)
            endpoint = deployed.bodies()[0]["endpoint"]
            key = await key_of(nc, "orphan-1")
            served_before = await answers(endpoint, "orphan-1", key)
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, pid, 0)
            survived = await answers(endpoint, "orphan-1", key)
            pid = launch_service("deployer", home, env)
            await publish(nc, JobCancelRequested(job_id="orphan-1"))
            stopped = await eventually(lambda: _not(answers(endpoint, "orphan-1", key)), timeout_s=60)
    finally:
        stop_pids({"deployer": pid})
        stop_leftovers(home / "deployments")  # a failed run must not leave a server behind
    assert served_before and survived, "the model server should outlive its deployer (it runs in its own session)"
    assert stopped, f"the restarted deployer left {endpoint} serving a cancelled job"


async def test_another_servers_forged_results_are_ignored_and_the_victim_job_completes(
    nats_server, tmp_path, nc: Client, collect, adapter_dir: Path
) -> None:
    """What a server's credential can still publish (on the subjects that name it) about a job placed elsewhere:
    a trained model, an endpoint at a revision never issued, the job's completion and its failure, and one event
    whose body names the victim's server. The ledger records each as ignored (or skips the mis-addressed one), the
    selector keeps the victim's slot, the victim's deployer keeps serving, and the real results complete it."""
    chosen = await collect("stratos.evt.server.chosen")
    completed = await collect("stratos.evt.job.completed")
    job = "victim-1"
    async with running(*stack(nats_server, tmp_path)):
        await ready(nats_server)
        await publish(nc, JobSubmitted(job_id=job, spec=spec(job)))
        await chosen.wait_for(lambda c: any(b["job_id"] == job for b in c.bodies()), timeout_s=30)
        placement = next(b for b in chosen.bodies() if b["job_id"] == job)
        victim_server = placement["server"]["id"]
        intruder = next(s for s in SERVERS if s != victim_server)
        forged_model = ModelTrained(
            job_id=job, server_id=intruder, student="tiny-1m", base_model=STUDENT, method="sft",
            model_uri="nats-obj://stratos-artifacts/victim-1/model/forged.tar.gz", is_adapter=False,
            accuracy_before=0.0, accuracy_after=1.0, training_seconds=1.0, steps=1, tokens=1, cost_usd=0.0, revision=1,
        )  # fmt: skip
        forged_endpoint = {
            "job_id": job, "backend": "cpu", "endpoint": "http://127.0.0.9:1/v1", "accuracy": 1.0,
            "ttft_p50_ms": 1.0, "ttft_p95_ms": 1.0, "latency_p50_ms": 1.0, "latency_p95_ms": 1.0,
        }  # fmt: skip
        forged: list[Event] = [
            forged_model,
            ModelDeployed(**forged_endpoint, server_id=intruder, revision=99),
            JobCompleted(
                job_id=job, report_uri="nats-obj://stratos-artifacts/victim-1/x", server_id=intruder, revision=1
            ),
            JobFailed(job_id=job, stage="training", reason="forged", server_id=intruder, revision=1),
        ]
        for event in forged:
            await publish(nc, event)
        # The victim's server in the body, the intruder's in the subject (all the broker lets it publish on).
        lie = ModelDeployed(**forged_endpoint, server_id=victim_server, revision=1)
        subject = lie.routed_subject().replace(victim_server, intruder)
        await nc.jetstream().publish(subject, lie.to_bytes(), headers={"Nats-Msg-Id": lie.event_id})
        await asyncio.sleep(1.0)
        meanwhile = await job_state(nc, job, lambda s: len(s.history) >= 2 + len(forged))
        await trained_upstream(nc, job, victim_server, adapter_dir, placement["revision"])
        await completed.wait_for(lambda c: any(b.get("server_id") == victim_server for b in c.bodies()), timeout_s=120)
        done = await job_state(nc, job, lambda s: s.status == "completed")
        served = await answers(done.endpoint or "", job, await key_of(nc, job, placement["revision"]))

    assert (meanwhile.status, meanwhile.endpoint, meanwhile.attempts) == ("running", None, [])
    ignored = [h.summary for h in meanwhile.history if h.summary.startswith("ignored (")]
    assert len(ignored) == len(forged), meanwhile.history
    assert all(f"from {intruder}, but the job is placed on {victim_server}" in s for s in ignored), ignored
    assert done.endpoint and done.endpoint.startswith(f"http://{SERVERS[victim_server]}:") and served
    assert done.results.training is not None and done.results.training.model_uri != forged_model.model_uri
    assert done.results.deployment is not None and done.results.deployment.revision == placement["revision"]
