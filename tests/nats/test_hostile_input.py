"""Hostile and malformed input against the real selector and inventory over a real nats-server.

One test per class of input that used to wedge a consumer, poison another job's re-plan, block admission or
leak a secret, then a property test: hostile submissions drawn by hypothesis are each answered (a rejection
with a reason, or a placement whose stored spec reads back), and the consumers end with nothing pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.placements import JobPlacement, ServerLoad
from stratos_selector.settings import SelectorSettings
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import EVENTS_STREAM, JOBS_BUCKET, PLACEMENTS_BUCKET, SPECS_BUCKET
from stratos_shared.contracts.events import JobCancelRequested, JobSubmitted, ServerChosen, ServerDownRequested
from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from stratos_teacher_eval.main import build as build_teacher_eval
from stratos_teacher_eval.settings import TeacherEvalSettings
from tests.conftest import Collector
from tests.hostile import BASE, RAW, hostile_submission, to_bytes, valid_submission
from tests.nats.services import common, running

pytestmark = pytest.mark.nats
ROOT = Path(__file__).parents[2]
CATALOG = ROOT / "examples" / "servers.yaml"


def stack(nats_server: NatsServerProcess, tmp_path: Path, **selector: Any) -> tuple[Any, ...]:
    base = common(nats_server, tmp_path)
    return (
        build_inventory(InventorySettings(**base, catalog=CATALOG)),
        build_selector(SelectorSettings(**base, **selector)),
    )


async def publish(nc: Client, body: bytes, msg_id: str, subject: str = JobSubmitted.SUBJECT) -> None:
    await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})


def submission(job_id: str, name: str = "math-small", **task: Any) -> dict[str, Any]:
    body = valid_submission(job_id, name)
    body["spec"]["task"].update(task)
    return body


async def nothing_pending(nc: Client, *consumers: str) -> None:
    """Every listed durable consumer has delivered and had acked everything (nothing redelivered later)."""
    js = nc.jetstream()
    for _ in range(200):
        infos = [await js.consumer_info(EVENTS_STREAM, name) for name in consumers]
        if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
            return
        await asyncio.sleep(0.05)
    raise AssertionError({i.name: (i.num_pending, i.num_ack_pending) for i in infos})


def reason_of(collector: Collector, job_id: str | None, index: int = 0) -> str:
    return str([b for b in collector.bodies() if b.get("job_id") == job_id][index]["reason"])


async def test_deep_nesting_is_rejected_and_dead_lettered_at_once(nats_server, tmp_path, nc, collect) -> None:
    """Deeply nested JSON used to raise RecursionError outside the wrapper and come back every ack_wait."""
    rejected, chosen, dead = [
        await collect(s) for s in ("stratos.evt.job.rejected", "stratos.evt.server.chosen", "stratos.dlq.>")
    ]
    deep = b'{"event_type": "JobSubmitted", "job_id": "deep-1", "spec": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    spec_deep = submission("deep-2")
    spec_deep["spec"]["task"]["generator"] = RAW + '{"x": [' * 200 + "1" + "]}" * 200
    async with running(*stack(nats_server, tmp_path)):
        await publish(nc, deep, "deep-1")
        await publish(nc, to_bytes(spec_deep), "deep-2")
        await publish(nc, JobSubmitted(job_id="after", spec=BASE).to_bytes(), "after")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        await rejected.wait_for(lambda c: len(c.messages) == 2)
        await dead.wait_for(lambda c: len(c.messages) == 2)
        await nothing_pending(nc, "selector-jobs", "selector-ledger")
        info = await nc.jetstream().consumer_info(EVENTS_STREAM, "selector-jobs")
    # too deep to read at all, so no job id to answer to; the second one is read, and its id is named
    assert "nests" in reason_of(rejected, None) and "nests" in reason_of(rejected, "deep-2")
    assert info.num_redelivered == 0, "an unparsable message was redelivered instead of refused at once"


async def test_ids_that_kv_keys_or_subjects_refuse_are_rejected_with_a_reason(
    nats_server, tmp_path, nc, collect
) -> None:
    rejected, chosen, dead = [
        await collect(s) for s in ("stratos.evt.job.rejected", "stratos.evt.server.chosen", "stratos.dlq.>")
    ]
    bad_ids = ["trailing.", ".leading", "two..dots", "star*", "gt>", "sp ace", "sl/ash", "é", "x" * 97]
    async with running(*stack(nats_server, tmp_path)):
        for index, job_id in enumerate(bad_ids):
            await publish(nc, to_bytes(submission(job_id, f"n{index}")), f"bad-{index}")
        dotted = ServerDownRequested(server_id="t4-us-east").to_bytes().replace(b"t4-us-east", b"t4.us")
        await publish(nc, dotted, "sd", subject=ServerDownRequested.SUBJECT)
        await publish(nc, JobSubmitted(job_id="dotted.ok-1", spec=BASE).to_bytes(), "ok")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        await rejected.wait_for(lambda c: len(c.messages) == len(bad_ids))
        await dead.wait_for(lambda c: len(c.messages) == len(bad_ids) + 1)
        await nothing_pending(nc, "selector-jobs", "inventory-server-down")
    assert chosen.bodies()[0]["job_id"] == "dotted.ok-1"
    for body in rejected.bodies():
        assert body["job_id"] is None and body["reason"].startswith("invalid JobSubmitted: job_id"), body
        assert "single dots" in body["reason"] or "at most 96" in body["reason"], body["reason"]
    server_down = [m for m in dead.messages if m.subject.endswith("server.down")]
    assert server_down and "server_id" in server_down[0].headers["Stratos-Dead-Reason"]


async def test_non_finite_numbers_are_refused(nats_server, tmp_path, nc, collect) -> None:
    rejected = await collect("stratos.evt.job.rejected")
    cases = {
        "inf-budget": ("constraints", "budget_usd", RAW + "1e309"),
        "nan-weight": ("selection", "weights", RAW + "[1.0, NaN, 1.0]"),
        "inf-latency": ("constraints", "latency_slo_ms", RAW + "Infinity"),
        "nan-generator": ("task", "generator", RAW + '{"max_ops": NaN}'),
    }
    async with running(*stack(nats_server, tmp_path)):
        for job_id, (section, field, value) in cases.items():
            body = submission(job_id)
            body["spec"][section][field] = value
            await publish(nc, to_bytes(body), job_id)
        await rejected.wait_for(lambda c: len(c.messages) == len(cases))
    for job_id in cases:
        reason = reason_of(rejected, job_id)
        assert ("not plain JSON" in reason and "represented" in reason) or "not a JSON number" in reason, reason


async def test_one_unreadable_stored_spec_never_blocks_another_jobs_replan(nats_server, tmp_path, nc, collect) -> None:
    """A stored spec that no longer validates (a NaN written as null) fails its own job; the others move."""
    chosen, failed = await collect("stratos.evt.server.chosen"), await collect("stratos.evt.job.failed")
    js = nc.jetstream()
    async with running(*stack(nats_server, tmp_path)):
        await publish(nc, JobSubmitted(job_id="healthy", spec=BASE).to_bytes(), "healthy")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        server = chosen.bodies()[0]["server"]["id"]
        broken = json.loads(BASE.model_dump_json())
        broken["constraints"]["budget_usd"] = None  # what `inf` became on the way into KV before the fix
        await (await js.key_value(SPECS_BUCKET)).put("legacy", json.dumps(broken).encode())
        placements = await js.key_value(PLACEMENTS_BUCKET)
        await TypedKV(placements, JobPlacement).put(
            "job.legacy", JobPlacement(job_id="legacy", server_id=server, revision=1)
        )
        loads = TypedKV(placements, ServerLoad)
        load = (await loads.get(f"server.{server}"))[0]  # type: ignore[index]
        await loads.put(f"server.{server}", ServerLoad(server_id=server, jobs=["legacy", *load.jobs]))
        await publish(nc, ServerDownRequested(server_id=server).to_bytes(), "down", subject=ServerDownRequested.SUBJECT)
        await chosen.wait_for(lambda c: len(c.messages) == 2)
        await failed.wait_for(lambda c: len(c.messages) == 1)
    moved = chosen.bodies()[1]
    assert moved["job_id"] == "healthy" and moved["revision"] == 2 and moved["server"]["id"] != server
    assert failed.bodies()[0]["job_id"] == "legacy" and "cannot be read" in failed.bodies()[0]["reason"]


async def test_data_files_are_checked_without_blocking_and_named_in_the_rejection(
    nats_server, tmp_path, nc, collect
) -> None:
    rejected, chosen = await collect("stratos.evt.job.rejected"), await collect("stratos.evt.server.chosen")
    root = tmp_path / "data"
    root.mkdir()
    os.mkfifo(root / "pipe.jsonl")
    (root / "folder.jsonl").mkdir()
    outside = tmp_path / "outside.jsonl"
    outside.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    (root / "escape.jsonl").symlink_to(outside)
    cases = {
        "fifo": (str(root / "pipe.jsonl"), "pipe.jsonl is not a regular file (a FIFO)"),
        "folder": ("folder.jsonl", "folder.jsonl is not a regular file (a directory)"),
        "outside": (str(outside), "outside the allowed folder"),
        "symlink-out": ("escape.jsonl", "outside the allowed folder"),
        "etc": ("/etc/passwd", "outside the allowed folder"),
        "dotdot": ("../outside.jsonl", "must not contain '..'"),
        "nul": ("a\x00b.jsonl", "NUL byte"),
        "long-name": ("n" * 300 + ".jsonl", "too long"),
        "missing": ("nowhere.jsonl", "nowhere.jsonl: file not found"),
    }
    async with running(*stack(nats_server, tmp_path, data_root=root)):
        for job_id, (path, _) in cases.items():
            await publish(nc, to_bytes(submission(job_id, kind="jsonl", grader="exact", path=path)), job_id)
        await publish(nc, JobSubmitted(job_id="next", spec=BASE).to_bytes(), "next")
        await chosen.wait_for(lambda c: len(c.messages) == 1, timeout_s=30)
        await rejected.wait_for(lambda c: len(c.messages) == len(cases))
        await nothing_pending(nc, "selector-jobs")
        info = await nc.jetstream().consumer_info(EVENTS_STREAM, "selector-jobs")
    for job_id, (_, phrase) in cases.items():
        assert phrase in reason_of(rejected, job_id), (job_id, reason_of(rejected, job_id))
    assert info.num_redelivered == 0, "a bad file was retried instead of rejected"


async def test_secret_references_and_teacher_urls_cannot_exfiltrate(nats_server, tmp_path, nc, collect) -> None:
    rejected, dead = await collect("stratos.evt.job.rejected"), await collect("stratos.dlq.>")
    teacher_cases = {
        "own-password": ({"api_key_ref": "env:STRATOS_NATS_PASSWORD"}, "names a service setting"),
        "environ": ({"api_key_ref": "file:/proc/self/environ"}, "not in an allowed secrets folder"),
        "other-env": ({"api_key_ref": "env:AWS_SECRET_ACCESS_KEY"}, "not an allowed variable"),
        "metadata": ({"base_url": "http://169.254.169.254/latest"}, "169.254.0.0/16"),
        "decimal-ip": ({"base_url": "http://2852039166/v1"}, "169.254.169.254 is in the refused network"),
        "trailing-dot": ({"base_url": "http://169.254.169.254./latest"}, "169.254.0.0/16"),
        "nat64": ({"base_url": "http://[64:ff9b::a9fe:a9fe]/v1"}, "carried in 64:ff9b::a9fe:a9fe"),
        "azure-wire": ({"base_url": "http://168.63.129.16/machine"}, "168.63.129.16/32"),
        "gcp-name": ({"base_url": "http://Metadata.Google.Internal./v1"}, "metadata.google.internal is a refused"),
        "code-in-query": ({"base_url": "https://fn.example/api?code=sk-code-secret"}, "query string"),
        "sig-in-path": ({"base_url": "https://fn.example/api;sig=sk-sig-secret"}, "path parameters"),
        "key-to-attacker": (
            {"api_key_ref": "env:TEACHER_KEY_OPENAI", "base_url": "http://203.0.113.9:9000/v1"},
            "may be sent only to api.openai.com, not to 203.0.113.9",
        ),
        "mapped-v6": ({"base_url": "http://[::ffff:169.254.169.254]/v1"}, "169.254.0.0/16"),
        "key-in-url": ({"base_url": "http://user:sk-url-secret@127.0.0.1:8100/v1"}, "must not carry credentials"),
        "key-in-query": ({"base_url": "http://127.0.0.1:8100/v1?api_key=sk-query-secret"}, "query string"),
        "key-by-value": ({"api_key_ref": "sk-value-secret"}, "never the key itself"),
    }
    bindings = {"env:TEACHER_KEY_OPENAI": ["api.openai.com"], "env:TEACHER_KEY_DEMO": ["127.0.0.1"]}
    async with running(*stack(nats_server, tmp_path, teacher_key_hosts=bindings)):
        for job_id, (change, _) in teacher_cases.items():
            body = submission(job_id)
            body["spec"]["teachers"][0].update(change)
            await publish(nc, to_bytes(body), job_id)
        await rejected.wait_for(lambda c: len(c.messages) == len(teacher_cases))
        await asyncio.sleep(0.5)  # dead letters are published right after the rejections
    for job_id, (_, phrase) in teacher_cases.items():
        assert phrase in reason_of(rejected, job_id), (job_id, reason_of(rejected, job_id))
    everything = b"".join(m.data for m in dead.messages) + b"".join(m.data for m in rejected.messages)
    assert dead.messages, "invalid submissions are dead-lettered"
    for secret in (b"sk-url-secret", b"sk-query-secret", b"sk-value-secret", b"sk-code-secret", b"sk-sig-secret"):
        assert secret not in everything, f"{secret!r} leaked into a rejection or a dead letter"


async def test_loose_versions_phantom_jobs_and_reused_ids(nats_server, tmp_path, nc, collect) -> None:
    rejected, chosen = await collect("stratos.evt.job.rejected"), await collect("stratos.evt.server.chosen")
    js = nc.jetstream()
    async with running(*stack(nats_server, tmp_path)):
        for index, version in enumerate(['"1"', "1.0", "true"]):
            body = submission(f"version-{index}")
            body["schema_version"] = RAW + version
            await publish(nc, to_bytes(body), f"version-{index}")
        cancel = JobCancelRequested(job_id="never-submitted").to_bytes()
        await publish(nc, cancel, "cancel-ghost", subject=JobCancelRequested.SUBJECT)
        ghost = JobSubmitted(job_id="on-cancel-subject", spec=BASE).to_bytes()
        await publish(nc, ghost, "ghost-2", subject=JobCancelRequested.SUBJECT)
        await publish(nc, JobSubmitted(job_id="owner", spec=BASE).to_bytes(), "owner-1")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        thief = BASE.model_copy(update={"name": "someone-else"})
        await publish(nc, JobSubmitted(job_id="owner", spec=thief).to_bytes(), "owner-2")
        await rejected.wait_for(lambda c: len(c.messages) == 4)
        await publish(nc, JobSubmitted(job_id="last", spec=BASE).to_bytes(), "last")
        await chosen.wait_for(lambda c: len(c.messages) == 2)
        jobs = TypedKV(await js.key_value(JOBS_BUCKET), JobState)
        for _ in range(100):
            if await jobs.get("last"):
                break
            await asyncio.sleep(0.05)
        await nothing_pending(nc, "selector-jobs", "selector-ledger")
        owner = (await jobs.get("owner"))[0]  # type: ignore[index]
        ghosts = [await jobs.get(j) for j in ("never-submitted", "on-cancel-subject")]
    for index in range(3):
        assert "schema_version must be an integer" in reason_of(rejected, f"version-{index}")
    assert "already taken by another submission" in reason_of(rejected, "owner")
    assert [b["job_id"] for b in chosen.bodies()].count("owner") == 1, "the first placement was re-sent"
    assert owner.name == "math-small" and owner.status == "running", owner
    assert ghosts == [None, None], "a stray event created a job in the ledger"


async def test_a_stage_that_gives_up_fails_the_job(nats_server, tmp_path, nc, collect) -> None:
    """teacher-eval cannot read the job's spec (deleted here): after max_deliver it fails the job, not "running"."""
    failed, chosen = await collect("stratos.evt.job.failed"), await collect("stratos.evt.server.chosen")
    js = nc.jetstream()
    async with running(*stack(nats_server, tmp_path)):
        await publish(nc, JobSubmitted(job_id="orphan", spec=BASE).to_bytes(), "orphan")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        await (await js.key_value(SPECS_BUCKET)).delete("orphan")
        teacher_eval = build_teacher_eval(TeacherEvalSettings(**common(nats_server, tmp_path), max_deliver=2))
        async with running(teacher_eval):
            await failed.wait_for(lambda c: len(c.messages) == 1, timeout_s=30)
        jobs = TypedKV(await js.key_value(JOBS_BUCKET), JobState)
        for _ in range(100):
            state = (await jobs.get("orphan") or (None,))[0]
            if state is not None and state.status == "failed":
                break
            await asyncio.sleep(0.05)
    failure = failed.bodies()[0]
    assert failure["stage"] == "teacher-eval" and "gave up on ServerChosen after 2 attempts" in failure["reason"]
    assert "has no accepted spec" in failure["reason"]
    assert state is not None and state.status == "failed", state


PATHS = ["pipe.jsonl", "folder.jsonl", "/etc/passwd", "../x.jsonl", "x\x00.jsonl", "n" * 300, "missing.jsonl"]
BATCH = 40


@pytest.mark.timeout(300)
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.tuples(*(hostile_submission(i, PATHS) for i in range(BATCH))))
def test_hostile_submissions_are_each_answered_and_nothing_is_left_pending(payloads: tuple[bytes, ...]) -> None:
    """BATCH hostile submissions per example: each is answered by a JobRejected with a reason or a placement whose
    stored spec reads back; afterwards a valid job is placed and both selector consumers have nothing pending."""
    asyncio.run(_answer_all(payloads))


async def _answer_all(payloads: tuple[bytes, ...]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "data").mkdir()
        os.mkfifo(tmp / "data" / "pipe.jsonl")
        (tmp / "data" / "folder.jsonl").mkdir()
        server = NatsServerProcess(store_dir=tmp / "js", log_file=tmp / "nats.log").start()
        nc = await nats.connect(server.url)
        try:
            answers = Collector()

            async def record(msg: Any) -> None:
                answers.messages.append(msg)

            for subject in ("stratos.evt.job.rejected", "stratos.evt.server.chosen"):
                await nc.subscribe(subject, cb=record)
            async with running(*stack(server, tmp, data_root=tmp / "data")):
                for index, payload in enumerate(payloads):
                    await publish(nc, payload, f"p{index}")
                await answers.wait_for(lambda c: len(c.messages) >= len(payloads), timeout_s=90)
                await publish(nc, JobSubmitted(job_id="valid-after", spec=BASE).to_bytes(), "valid-after")
                await answers.wait_for(lambda c: any(b.get("job_id") == "valid-after" for b in c.bodies()))
                await nothing_pending(nc, "selector-jobs", "selector-ledger")
                specs = TypedKV(await nc.jetstream().key_value(SPECS_BUCKET), JobSpec)
                for body in answers.of_type("ServerChosen"):
                    stored = await specs.get(body["job_id"])  # raises if the stored spec does not read back
                    assert stored is not None
            for body in answers.of_type("JobRejected"):
                assert body["reason"].strip(), body
            assert len(answers.messages) == len(payloads) + 1, [b.get("event_type") for b in answers.bodies()]
            assert ServerChosen.__name__ in {b["event_type"] for b in answers.bodies()}
        finally:
            await nc.drain()
            server.stop()


@pytest.mark.timeout(180)
async def test_a_job_whose_work_kills_its_worker_on_every_delivery_fails_saying_so(
    nats_server, tmp_path: Path, nc: Client, collect
) -> None:
    """A poison job: its trainer process dies on each delivery (no handler lives to fail it). After the consumer's
    `max_deliver` deliveries JetStream gives up and says so; the selector fails the job with the reason, so it never
    stays "running". The worker is restarted after each death, as a supervisor would."""
    from stratos_shared.bus.handler import subject_of
    from stratos_shared.contracts.events import DataReady, TrainingAssigned
    from tests.nats.crashing_worker import MAX_DELIVER

    failed = await collect("stratos.evt.job.failed")
    chosen = await collect("stratos.evt.server.chosen")
    base = common(nats_server, tmp_path)
    log = tmp_path / "deliveries.log"
    async with running(
        build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**base)),
    ):
        spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
        submitted = JobSubmitted(job_id="poison-1", spec=spec)
        await nc.jetstream().publish(submitted.SUBJECT, submitted.to_bytes(), headers={"Nats-Msg-Id": "poison"})
        await chosen.wait_for(lambda c: bool(c.messages), timeout_s=30)
        server = chosen.bodies()[0]["server"]["id"]
        data = DataReady(
            job_id="poison-1", mode="alignment", teacher="strong", train_uri="nats-obj://stratos-artifacts/poison-1/d",
            eval_uri="nats-obj://stratos-artifacts/poison-1/e", asked=1, accepted=1, acceptance_rate=1.0,
            teacher_tokens=1, cost_usd=0.0,
        )  # fmt: skip
        work = TrainingAssigned(job_id="poison-1", server_id=server, revision=1, data=data)
        await nc.jetstream().publish(subject_of(work), work.to_bytes(), headers={"Nats-Msg-Id": work.event_id})
        env = {**os.environ, "NATS_URL": nats_server.url, "STRATOS_HOME": str(tmp_path / "home")}
        command = [sys.executable, "-m", "tests.nats.crashing_worker", str(log), server]
        starts = 0
        while not failed.messages and starts < MAX_DELIVER + 2:
            starts += 1
            process = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT)
            # it dies on the delivery it is handed; the one started after the last delivery gets none: JetStream
            # gives up on the message as that process asks for work, and the job fails
            deadline = asyncio.get_running_loop().time() + 60
            while process.returncode is None and not failed.messages:
                assert asyncio.get_running_loop().time() < deadline, "neither a crash nor a failed job"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=0.2)
            if process.returncode is None:
                process.kill()
                await process.wait()
            await asyncio.sleep(1.5)  # past the ack wait: the message is due again (or given up on)
        await failed.wait_for(lambda c: bool(c.messages), timeout_s=20)
        state = await TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState).get("poison-1")

    deliveries = log.read_text().splitlines()
    assert deliveries == [f"delivery {n} of poison-1" for n in range(1, MAX_DELIVER + 1)], deliveries
    [body] = failed.bodies()
    assert body["stage"] == f"trainer-{server}" and f"each of {MAX_DELIVER} deliveries" in body["reason"], body
    assert (
        state is not None
        and state[0].status == "failed"
        and "never finished TrainingAssigned" in (state[0].reason or "")
    )
