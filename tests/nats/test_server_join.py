"""`stratos server add/remove/join` against a real nats-server (listening on every interface) and a real inventory.

What must hold: a server added to a running stack logs in with its credential file and may speak only for itself;
connections made before the reload survive it; a removed credential is refused and its connections closed; every
operator mistake is one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from stratos_cli.joining import await_beats, log_in
from stratos_cli.membership import MembershipError, ServerCredentialFile
from stratos_cli.stack import (
    Listen,
    StackState,
    advertised_url,
    launch_service,
    service_env,
    start_nats_nodes,
    stop_pids,
)
from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.bus.names import SERVERS_BUCKET, heartbeat_subject, inbox_prefix, server_artifacts_bucket
from stratos_shared.bus.permissions import Credential, write_auth
from stratos_shared.catalog import load_catalog
from stratos_shared.contracts.events import ServerHeartbeat
from stratos_shared.embedded import free_port

pytestmark = pytest.mark.nats
ROOT = Path(__file__).parents[2]
MINE, THEIRS = "a10-us-central", "l4-us-west"


@dataclass
class Stack:
    home: Path
    url: str
    advertised: str
    credentials: dict[str, Credential]
    env: dict[str, str]


def stratos(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratos_cli", *args],
        env=stack.env,
        cwd=stack.home.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def astratos(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`stratos` in a subprocess while this test's event loop keeps its connections alive."""
    return await asyncio.to_thread(stratos, stack, *args)


async def catalog_count(url: str, selector: Credential) -> int:
    nc = await nats.connect(url, user=selector.user, password=selector.password)
    try:
        kv = await nc.jetstream().key_value(SERVERS_BUCKET)
        return len(await kv.keys())
    except Exception:  # the bucket is not there yet
        return 0
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """What `stratos up --listen 0.0.0.0 --servers 0` runs that matters here: NATS with auth, and the inventory."""
    home = tmp_path_factory.mktemp("control") / "home"
    config, credentials = write_auth(home, [])
    nodes, pids = start_nats_nodes(home, free_port(), 1, config, Listen("0.0.0.0"))
    url, advertised = nodes[0].url, advertised_url(nodes)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "STRATOS_"))}
    env |= {"STRATOS_HOME": str(home), "COLUMNS": "300"}
    StackState(url, 1, pids, [], advertise_url=advertised, auth=True).save(home)
    inventory = {"STRATOS_NATS_USER": "inventory", "STRATOS_NATS_PASSWORD": credentials["inventory"].password}
    catalog = {"STRATOS_CATALOG": str(ROOT / "examples" / "servers.yaml")}
    pids["inventory"] = launch_service("inventory", home, service_env(home, url, 1, inventory | catalog))
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(catalog_count(url, credentials["selector"])) < len(load_catalog(catalog["STRATOS_CATALOG"])):
            assert time.monotonic() < deadline, "the inventory did not register the catalog"
            time.sleep(0.1)
        yield Stack(home, url, advertised, credentials, env)
    finally:
        stop_pids(pids)


def test_up_listening_everywhere_advertises_this_hosts_address(stack: Stack) -> None:
    state = StackState.load(stack.home)
    assert state is not None and state.nats_url.startswith("nats://127.0.0.1:")  # local services use loopback
    assert stack.advertised.startswith("nats://") and "127.0.0.1" not in stack.advertised
    assert stack.advertised.rsplit(":", 1)[1] == state.nats_url.rsplit(":", 1)[1]


async def test_an_added_server_speaks_only_for_itself_and_a_removed_one_is_shut_out(stack: Stack) -> None:
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    service = stack.credentials["selector"]  # a control service, connected before the reload
    held = await nats.connect(stack.url, user=service.user, password=service.password)
    beats: list[str] = []

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        beats.append(msg.subject)

    await held.subscribe("stratos.hb.*", cb=on_beat)
    await held.flush()
    out = stack.home.parent / f"{MINE}.json"

    added = await astratos(stack, "server", "add", MINE, "--out", str(out))
    assert added.returncode == 0, added.stderr
    assert f"stratos server join --credentials {out.name}" in added.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    granted = ServerCredentialFile.read(out)
    assert set(json.loads(out.read_text())) == {"server_id", "user", "password", "nats_url"}
    assert (granted.server_id, granted.user, granted.nats_url) == (MINE, f"server-{MINE}", stack.advertised)

    # the file's URL is this host's outside address: what another host dials
    nc = await nats.connect(granted.nats_url, user=granted.user, password=granted.password, error_cb=on_error)
    await nc.publish(heartbeat_subject(MINE), b"{}")
    await nc.publish(heartbeat_subject(THEIRS), b"{}")  # another server's: refused by the broker
    await nc.flush()
    await asyncio.sleep(0.3)
    assert beats == [heartbeat_subject(MINE)], beats
    assert any("permissions violation" in str(e).lower() for e in errors), errors
    assert held.is_connected and not held.is_reconnecting, "the reload dropped a service's connection"
    # its own object store, made by the inventory from the catalog: its workers write there, the control plane reads
    worker = await nats.connect(
        granted.nats_url, user=granted.user, password=granted.password, inbox_prefix=inbox_prefix(granted.user)
    )
    own = NatsArtifactStore(worker.jetstream(), server_artifacts_bucket(MINE))
    uri = await own.put_bytes("job-on-mine", "report/report.md", b"ok")
    assert await NatsArtifactStore(held.jetstream()).get_bytes(uri) == b"ok"
    await worker.close()

    again = await astratos(stack, "server", "add", MINE, "--out", str(out))
    assert again.returncode == 1 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    joined = await nats.connect(
        stack.url, user=granted.user, password=granted.password, allow_reconnect=False, closed_cb=on_closed
    )
    removed = await astratos(stack, "server", "remove", MINE)
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(Exception, match=r"[Aa]uthorization"):
        await nats.connect(
            granted.nats_url, user=granted.user, password=granted.password, allow_reconnect=False, connect_timeout=2
        )
    await asyncio.wait_for(closed.wait(), 5)  # its live connection is closed by the reload too
    with pytest.raises(MembershipError, match=r"cannot log in .* --force"):
        await log_in(granted, None)
    assert held.is_connected
    await held.close()
    await nc.close()
    await joined.close()


def test_operator_mistakes_are_one_line(stack: Stack, tmp_path: Path) -> None:
    def refused(*args: str) -> str:
        result = stratos(stack, *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        return lines[0]

    assert f"not in the catalog; its servers: 4xa100-us-east, {MINE}," in refused("server", "add", "no-such-server")
    assert "is not a server id" in refused("server", "add", "bad.id")
    assert "no credential to remove" in refused("server", "remove", THEIRS)
    not_json = tmp_path / "not.json"
    not_json.write_text("user: x")
    assert "is not JSON" in refused("server", "join", "--credentials", str(not_json))
    assert "does not exist" in refused("server", "join", "--credentials", str(tmp_path / "missing.json"))
    for wrong, why in (
        ({"server_id": MINE, "user": f"server-{MINE}"}, "password: Field required"),
        ({"server_id": "a.b", "user": "server-a.b", "password": "p", "nats_url": "nats://h:1"}, "not a valid id"),
        ({"server_id": MINE, "user": "cli", "password": "p", "nats_url": "nats://h:1"}, "user must be"),
        ({"server_id": MINE, "user": f"server-{MINE}", "password": "p", "nats_url": "http://h"}, "nats://"),
    ):
        path = tmp_path / "wrong.json"
        path.write_text(json.dumps(wrong))
        with pytest.raises(MembershipError, match=why) as caught:
            ServerCredentialFile.read(path)
        assert "\n" not in str(caught.value)


async def test_join_waits_until_the_inventory_records_each_worker(stack: Stack, tmp_path: Path) -> None:
    """What `stratos server join` waits for, with the test as the server's one worker (real workers import torch
    for seconds): the inventory's write to the liveness bucket, read with the server's own credential."""
    out = tmp_path / "theirs.json"
    added = await astratos(stack, "server", "add", THEIRS, "--out", str(out))
    assert added.returncode == 0, added.stderr
    granted = ServerCredentialFile.read(out)
    nc = await log_in(granted, None)
    waiting = asyncio.create_task(await_beats(nc, THEIRS, {"worker": os.getpid()}, tmp_path, timeout_s=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    beat = ServerHeartbeat(server_id=THEIRS, worker="test:1", service="trainer")
    await nc.publish(heartbeat_subject(THEIRS), beat.to_bytes())
    seen = await asyncio.wait_for(waiting, 10)
    assert seen.server_id == THEIRS and "test:1" in seen.workers
    with pytest.raises(MembershipError, match="no heartbeat from"):
        await await_beats(nc, MINE, {"worker": os.getpid()}, tmp_path, timeout_s=0.5)
    await nc.close()
