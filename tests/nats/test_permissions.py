"""Per-service NATS credentials: a service may publish its own events and no one else's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import nats.aio.msg
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from stratos_shared.bus.infra import ensure_infrastructure, ensure_server_buckets
from stratos_shared.bus.names import inbox_prefix, server_artifacts_bucket
from stratos_shared.bus.permissions import (
    EVENT_PUBLISHERS,
    Credential,
    control_subject,
    server_ids,
    server_subject,
    server_subscriptions,
    write_auth,
)
from stratos_shared.contracts.events import FromServer, JobCompleted, JobFailed, JobSubmitted, ModelTrained
from stratos_shared.embedded import NatsServerProcess

pytestmark = pytest.mark.nats

ROOT = Path(__file__).parents[2]


async def test_service_credential_cannot_publish_another_services_event(tmp_path: Path) -> None:
    config, credentials = write_auth(tmp_path / "auth")
    server = NatsServerProcess(store_dir=tmp_path / "js", config_file=config, log_file=tmp_path / "nats.log").start()
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    try:
        trainer = credentials["trainer"]
        nc = await nats.connect(server.url, user=trainer.user, password=trainer.password, error_cb=on_error)
        js = nc.jetstream()
        await ensure_infrastructure(js)  # the JetStream API is allowed
        ack = await js.publish(server_subject(ModelTrained, "s1"), b"{}", headers={"Nats-Msg-Id": "own"})
        assert ack.seq >= 1  # its own event: accepted
        with pytest.raises(NatsTimeout):  # the deployer's event: refused by the server, never stored
            await js.publish(server_subject(JobCompleted, "s1"), b"{}", headers={"Nats-Msg-Id": "forged"}, timeout=1.0)
        assert any("permissions violation" in str(e).lower() for e in errors), errors
        info = await js.stream_info("STRATOS_EVENTS")
        assert info.state.messages == 1
        await nc.close()

        with pytest.raises(Exception, match=r"[Aa]uthorization"):
            await nats.connect(
                server.url, user="trainer", password="wrong", max_reconnect_attempts=0, allow_reconnect=False
            )
        cli = credentials["cli"]
        nc = await nats.connect(server.url, user=cli.user, password=cli.password)
        ack = await nc.jetstream().publish(JobSubmitted.SUBJECT, b"{}", headers={"Nats-Msg-Id": "job"})
        assert ack.seq == 2
        await nc.close()
    finally:
        server.stop()


def test_permission_table_matches_what_each_service_declares() -> None:
    """Every event a service declares it publishes (its handlers' and its background publishers') is allowed for
    that service's user; `test_services_publish_and_subscribe_only_through_their_declarations` checks nothing
    is published or subscribed around the declarations."""
    from stratos_data_synth.handlers import build_events as data_synth
    from stratos_data_synth.settings import DataSynthSettings
    from stratos_deployer.deployments import Deployments
    from stratos_deployer.handlers import build_events as deployer
    from stratos_deployer.settings import DeployerSettings
    from stratos_inventory.handlers import build_events as inventory
    from stratos_inventory.servers import Inventory, InventoryMonitor
    from stratos_selector.handlers import build_events as selector
    from stratos_selector.planner import Planner
    from stratos_selector.settings import SelectorSettings
    from stratos_shared.bus.permissions import server_permissions
    from stratos_shared.jobcontext import StageResources
    from stratos_teacher_eval.handlers import build_events as teacher_eval
    from stratos_teacher_eval.settings import TeacherEvalSettings
    from stratos_trainer.handlers import build_events as trainer
    from stratos_trainer.jobs import JobSignals
    from stratos_trainer.settings import TrainerSettings

    workers = {
        "trainer": trainer(TrainerSettings(server_id="a10-us-central"), StageResources(), JobSignals()),
        "deployer": deployer(DeployerSettings(server_id="a10-us-central"), StageResources(), Deployments()),
    }
    allowed = server_permissions("a10-us-central")
    hears = set(server_subscriptions("a10-us-central"))
    for service, router in workers.items():  # a server's workers publish under the server's credential
        assert all(issubclass(cls, FromServer) for cls in router.publishes), (service, router.publishes)
        declared = {server_subject(cls, "a10-us-central") for cls in router.publishes}  # type: ignore[arg-type]
        assert declared <= set(allowed), (service, declared - set(allowed))
        signals = {spec.subject for spec in router.signals} | {spec.subject for spec in router.advisories}
        assert signals <= hears, (service, signals - hears)  # and subscribes to what it declares it hears
    routers = {
        "inventory": inventory(Inventory(), monitor=InventoryMonitor(Inventory(), timeout_s=8.0, check_s=1.0)),
        "selector": selector(Planner(), SelectorSettings().input_policy()),
        "teacher-eval": teacher_eval(TeacherEvalSettings(), StageResources()),
        "data-synth": data_synth(DataSynthSettings(), StageResources()),
    }
    for service, router in routers.items():
        # work for one server goes to <SUBJECT>.<server>: allowed as <SUBJECT>.*; a failure to the control subject
        declared = {
            control_subject(cls)
            if issubclass(cls, FromServer)
            else f"{cls.SUBJECT}.*"
            if hasattr(cls, "routed_subject")
            else cls.SUBJECT
            for cls in router.publishes
        }
        assert declared <= set(EVENT_PUBLISHERS[service]), (service, declared - set(EVENT_PUBLISHERS[service]))


def auth_server(tmp_path: Path, servers: list[str]) -> tuple[NatsServerProcess, dict[str, Credential]]:
    """A nats-server with the users `stratos up` makes for these servers."""
    config, credentials = write_auth(tmp_path / "auth", servers)
    server = NatsServerProcess(store_dir=tmp_path / "js", config_file=config, log_file=tmp_path / "nats.log")
    return server.start(), credentials


async def as_selector(server: NatsServerProcess, credentials: dict[str, Credential]) -> tuple[Client, JetStreamContext]:
    """A control service's connection, which creates the streams and buckets as the control plane does (and each
    credentialed server's object stores, as the inventory does for its catalog)."""
    selector = credentials["selector"]
    admin = await nats.connect(server.url, user=selector.user, password=selector.password)
    js = admin.jetstream()
    await ensure_infrastructure(js)
    for server_id in server_ids(credentials):
        await ensure_server_buckets(js, server_id)
    return admin, js


async def as_server(
    server: NatsServerProcess, credentials: dict[str, Credential], server_id: str, errors: list[Exception]
) -> Client:
    """A server's workers' connection: its credential, its own inbox prefix (as `ServiceRuntime` connects)."""
    own = credentials[f"server-{server_id}"]

    async def on_error(error: Exception) -> None:
        errors.append(error)

    return await nats.connect(
        server.url, user=own.user, password=own.password, error_cb=on_error, inbox_prefix=inbox_prefix(own.user)
    )


async def test_a_servers_credential_beats_and_pulls_only_for_its_own_server(tmp_path: Path) -> None:
    """`server-<id>` (what a server's workers log in as) may heartbeat for its server and pull its own work;
    it may not keep another server alive, take another server's work, publish the selector's events, speak for
    another server (its results on a subject that names another server) or declare a failure as a control service."""
    from nats.js.api import ConsumerConfig

    from stratos_shared.bus.names import heartbeat_subject, work_subject
    from stratos_shared.contracts.events import ServerChosen

    mine, theirs = "a10-us-central", "l4-us-west"
    server, credentials = auth_server(tmp_path, [mine, theirs])
    errors: list[Exception] = []
    try:
        admin, js = await as_selector(server, credentials)
        for server_id in (mine, theirs):
            subject = work_subject("train", server_id)
            durable = f"trainer-{server_id}"
            await js.add_consumer("STRATOS_EVENTS", ConsumerConfig(durable_name=durable, filter_subject=subject))
            await js.publish(subject, f"work for {server_id}".encode(), headers={"Nats-Msg-Id": server_id})
        beats: list[str] = []

        async def on_beat(msg: nats.aio.msg.Msg) -> None:
            beats.append(msg.subject)

        await admin.subscribe("stratos.hb.*", cb=on_beat)
        await admin.flush()

        nc = await as_server(server, credentials, mine, errors)
        await nc.publish(heartbeat_subject(mine), b"{}")
        await nc.publish(heartbeat_subject(theirs), b"{}")  # forged: refused by the server
        await nc.flush()
        worker = nc.jetstream()
        got = await (await worker.pull_subscribe_bind(f"trainer-{mine}", stream="STRATOS_EVENTS")).fetch(1, timeout=5)
        assert got[0].data == f"work for {mine}".encode()
        theirs_sub = await worker.pull_subscribe_bind(f"trainer-{theirs}", stream="STRATOS_EVENTS")
        with pytest.raises(NatsTimeout):
            await theirs_sub.fetch(1, timeout=2)
        with pytest.raises(NatsTimeout):
            await worker.publish(ServerChosen.SUBJECT, b"{}", headers={"Nats-Msg-Id": "forged"}, timeout=1.0)
        await worker.publish(server_subject(ModelTrained, mine), b"{}", headers={"Nats-Msg-Id": "own-result"})
        for forged in (server_subject(ModelTrained, theirs), server_subject(JobCompleted, theirs)):
            with pytest.raises(NatsTimeout):  # speaking for another server
                await worker.publish(forged, b"{}", headers={"Nats-Msg-Id": forged}, timeout=1.0)
        with pytest.raises(NatsTimeout):  # declaring a failure as a control service would
            await worker.publish(control_subject(JobFailed), b"{}", headers={"Nats-Msg-Id": "ctl"}, timeout=1.0)
        await asyncio.sleep(0.3)
        await nc.close()
        info = await js.consumer_info("STRATOS_EVENTS", f"trainer-{theirs}")
        await admin.close()
    finally:
        server.stop()
    assert beats == [heartbeat_subject(mine)], beats
    assert info.num_pending == 1 and not info.num_ack_pending, "another server's work was taken"
    assert sum("permissions violation" in str(e).lower() for e in errors) >= 6, errors


async def test_a_servers_credential_cannot_administer_jetstream_nor_write_the_ledger(tmp_path: Path) -> None:
    """What a server's credential could do with the whole JetStream API, refused by the broker: purge, change or
    delete the events stream, delete another server's consumer, take the selector's submissions through its
    consumer, mark a job completed in the jobs bucket. What its workers need still works: read KV, write and read
    an object, pull its own consumer."""
    from nats.js.api import ConsumerConfig, StreamConfig

    from stratos_shared.artifacts import NatsArtifactStore
    from stratos_shared.bus.names import EVENTS_STREAM, JOBS_BUCKET, work_subject

    mine, theirs = "a10-us-central", "l4-us-west"
    server, credentials = auth_server(tmp_path, [mine, theirs])
    errors: list[Exception] = []
    try:
        admin, js = await as_selector(server, credentials)
        await js.add_consumer(
            EVENTS_STREAM, ConsumerConfig(durable_name="selector-jobs", filter_subject=JobSubmitted.SUBJECT)
        )
        for server_id in (mine, theirs):
            subject = work_subject("train", server_id)
            await js.add_consumer(
                EVENTS_STREAM, ConsumerConfig(durable_name=f"trainer-{server_id}", filter_subject=subject)
            )
            await js.publish(subject, b"work", headers={"Nats-Msg-Id": server_id})
        cli = credentials["cli"]
        user = await nats.connect(server.url, user=cli.user, password=cli.password)
        await user.jetstream().publish(JobSubmitted.SUBJECT, b"{}", headers={"Nats-Msg-Id": "submission"})
        await user.close()
        jobs = await js.key_value(JOBS_BUCKET)
        await jobs.put("victim", b"running")

        nc = await as_server(server, credentials, mine, errors)
        worker = nc.jetstream(timeout=1.0)
        refused = {
            "purge the events stream": worker.purge_stream(EVENTS_STREAM),
            "delete the events stream": worker.delete_stream(EVENTS_STREAM),
            "change the events stream": worker.update_stream(StreamConfig(name=EVENTS_STREAM, subjects=["x.>"])),
            "delete another server's consumer": worker.delete_consumer(EVENTS_STREAM, f"trainer-{theirs}"),
            "delete its own consumer": worker.delete_consumer(EVENTS_STREAM, f"trainer-{mine}"),
        }
        outcomes = {}
        for what, call in refused.items():
            try:
                await call
                outcomes[what] = "allowed"
            except (NatsTimeout, nats.errors.Error) as exc:
                outcomes[what] = type(exc).__name__
        submissions = await worker.pull_subscribe_bind("selector-jobs", stream=EVENTS_STREAM)
        with pytest.raises(NatsTimeout):
            await submissions.fetch(1, timeout=1)
        worker_kv = await worker.key_value(JOBS_BUCKET)
        with pytest.raises(NatsTimeout):
            await worker_kv.put("victim", b"completed")
        assert (await worker_kv.get("victim")).value == b"running", "a server cannot read the ledger"
        store = NatsArtifactStore(nc.jetstream(), server_artifacts_bucket(mine))
        uri = await store.put_bytes("job-on-me", "checkpoints/latest.json", b"{}")
        assert await store.get_bytes(uri) == b"{}"
        mine_sub = await worker.pull_subscribe_bind(f"trainer-{mine}", stream=EVENTS_STREAM)
        assert (await mine_sub.fetch(1, timeout=5))[0].data == b"work"
        await nc.close()
        info = await js.stream_info(EVENTS_STREAM)
        consumers = {c.name for c in await js.consumers_info(EVENTS_STREAM)}
        pending = (await js.consumer_info(EVENTS_STREAM, "selector-jobs")).num_pending
        ledger = (await jobs.get("victim")).value
        await admin.close()
    finally:
        server.stop()
    assert all(outcome != "allowed" for outcome in outcomes.values()), outcomes
    assert info.config.subjects and "x.>" not in info.config.subjects and info.state.messages >= 3
    assert {f"trainer-{mine}", f"trainer-{theirs}", "selector-jobs"} <= consumers
    assert pending == 1, "the selector's submission was taken"
    assert ledger == b"running"
    assert sum("permissions violation" in str(e).lower() for e in errors) >= len(refused) + 2, errors


def violations(errors: list[Exception], kind: str, subject: str) -> int:
    """How many times the broker refused `kind` ("publish" or "subscription") to `subject`."""
    wanted = f'permissions violation for {kind} to "{subject}"'.lower()
    return sum(wanted in str(e).lower() for e in errors)


async def test_a_servers_credential_writes_only_its_own_buckets_and_hears_only_its_own_replies(
    tmp_path: Path,
) -> None:
    """Server A's credential: refused by the broker when it writes an object into B's bucket or the control
    plane's, purges another bucket, reads B's endpoint key, listens to every reply, every object chunk or B's
    replies, or publishes a reply; it still writes, overwrites and reads its own objects, and reads B's artifacts
    (to resume or serve a job that moved)."""
    from stratos_shared.artifacts import NatsArtifactStore
    from stratos_shared.bus.names import ARTIFACTS_BUCKET, object_stream, server_keys_bucket
    from stratos_shared.errors import ArtifactError

    mine, theirs = "a10-us-central", "l4-us-west"
    server, credentials = auth_server(tmp_path, [mine, theirs])
    errors: list[Exception] = []
    try:
        admin, js = await as_selector(server, credentials)
        control = NatsArtifactStore(js)
        data_uri = await control.put_bytes("victim", "task/data.jsonl", b"admitted")
        b = await as_server(server, credentials, theirs, [])
        b_store = NatsArtifactStore(b.jetstream(), server_artifacts_bucket(theirs))
        model_uri = await b_store.put_bytes("victim", "model/adapter.tar.gz", b"weights")
        key_uri = await b_store.in_bucket(server_keys_bucket(theirs)).put_bytes("victim", "deployment/r1-api-key", b"k")
        received: list[bytes] = []

        async def on_reply(msg: nats.aio.msg.Msg) -> None:
            received.append(msg.data)

        b_replies = await b.subscribe(f"{inbox_prefix(f'server-{theirs}')}.spied", cb=on_reply)

        nc = await as_server(server, credentials, mine, errors)
        a = nc.jetstream(timeout=1.0)
        heard: list[str] = []

        async def spy(msg: nats.aio.msg.Msg) -> None:
            heard.append(msg.subject)

        for subject in ("_INBOX.>", "$O.>", f"{inbox_prefix(f'server-{theirs}')}.>"):
            await nc.subscribe(subject, cb=spy)
        for bucket in (server_artifacts_bucket(theirs), ARTIFACTS_BUCKET):
            with pytest.raises((NatsTimeout, nats.errors.Error)):  # an object into another bucket
                await NatsArtifactStore(a, bucket).put_bytes("victim", "model/adapter.tar.gz", b"forged")
        for bucket in (server_artifacts_bucket(theirs), server_keys_bucket(theirs), ARTIFACTS_BUCKET):
            with pytest.raises((NatsTimeout, nats.errors.Error)):  # a purge without a filter wipes every job's
                await a.purge_stream(object_stream(bucket))
        with pytest.raises(ArtifactError):  # a key bucket is not one a reader of shared artifacts may name
            await NatsArtifactStore(a, server_artifacts_bucket(mine)).get_bytes(key_uri)
        with pytest.raises((NatsTimeout, nats.errors.Error)):  # and the broker refuses it to A's store for B's keys
            await NatsArtifactStore(a, server_keys_bucket(theirs)).get_bytes(key_uri)
        await nc.publish(b_replies.subject, b"forged reply")
        await admin.publish(b_replies.subject, b"a reply to B")  # a control service answering B
        await admin.flush()

        own = NatsArtifactStore(a, server_artifacts_bucket(mine))
        uri = await own.put_bytes("job-on-me", "checkpoints/latest.json", b"{}")
        await own.put_bytes("job-on-me", "checkpoints/latest.json", b'{"step": 2}')  # an overwrite purges its own
        assert await own.get_bytes(uri) == b'{"step": 2}'
        own_key = await own.in_bucket(server_keys_bucket(mine)).put_bytes("job-on-me", "deployment/r1-api-key", b"x")
        assert await NatsArtifactStore(a, server_keys_bucket(mine)).get_bytes(own_key) == b"x"
        assert await own.get_bytes(model_uri) == b"weights"  # B's artifacts: readable (resume, serve after a move)
        assert await own.get_bytes(data_uri) == b"admitted"
        await asyncio.sleep(0.3)
        await nc.close()
        await b.close()
        assert await control.get_bytes(model_uri) == b"weights"
        assert await NatsArtifactStore(js, server_keys_bucket(theirs)).get_bytes(key_uri) == b"k"  # `stratos key`
        assert await control.get_bytes(data_uri) == b"admitted"
        await admin.close()
    finally:
        server.stop()
    assert heard == [], heard
    assert received == [b"a reply to B"], received  # A's forged reply never reached B
    for subject in ("_INBOX.>", "$O.>", f"{inbox_prefix(f'server-{theirs}')}.>"):
        assert violations(errors, "subscription", subject) == 1, (subject, errors)
    for bucket in (server_artifacts_bucket(theirs), ARTIFACTS_BUCKET):
        assert any(f'publish to "$o.{bucket}.' in str(e).lower() for e in errors), (bucket, errors)
    for bucket in (server_artifacts_bucket(theirs), server_keys_bucket(theirs), ARTIFACTS_BUCKET):
        assert violations(errors, "publish", f"$JS.API.STREAM.PURGE.{object_stream(bucket)}") >= 1, errors
    assert any(f"obj_{server_keys_bucket(theirs)}".lower() in str(e).lower() for e in errors), errors
    assert violations(errors, "publish", b_replies.subject) == 1, errors


async def test_a_server_added_later_is_readable_by_the_servers_already_connected(tmp_path: Path) -> None:
    """Each server's read list names every credentialed server's bucket; `stratos server add` rewrites them all and
    reloads nats-server, which applies the new list to connections already open (a job moving from the new server
    to an old one resumes from the new one's checkpoints without the old one reconnecting)."""
    import secrets
    import signal

    from stratos_shared.artifacts import NatsArtifactStore
    from stratos_shared.bus.permissions import save_auth

    old, new = "a10-us-central", "l4-us-west"
    server, credentials = auth_server(tmp_path, [old])
    try:
        admin, js = await as_selector(server, credentials)
        await ensure_server_buckets(js, new)  # the inventory makes every catalog server's buckets
        uri = await NatsArtifactStore(js, server_artifacts_bucket(new)).put_bytes(
            "moved", "checkpoints/latest.json", b"1"
        )
        nc = await as_server(server, credentials, old, [])
        reader = NatsArtifactStore(nc.jetstream(timeout=1.0), server_artifacts_bucket(old))
        with pytest.raises((NatsTimeout, nats.errors.Error)):  # not a credentialed server yet: nothing to read
            await reader.get_bytes(uri)
        credentials[f"server-{new}"] = Credential(f"server-{new}", secrets.token_urlsafe(24))
        save_auth(tmp_path / "auth", credentials)
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                assert await reader.get_bytes(uri) == b"1"
                break
            except (NatsTimeout, nats.errors.Error):
                assert asyncio.get_running_loop().time() < deadline, "the reload did not widen the read list"
        assert nc.is_connected
        await nc.close()
        await admin.close()
    finally:
        server.stop()
