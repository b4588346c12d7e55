"""Compose's NATS users on a real nats-server: started as the compose file starts it (its command, its config and
the `nats-auth` volume the config includes), every Stratos service logs in with the password file its settings
read, an anonymous client and a wrong password are refused, and a server's credential may not speak for the selector."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import nats
import nats.errors
import pytest

from stratos_shared.bus.names import inbox_prefix
from stratos_shared.contracts.events import ServerChosen
from stratos_shared.embedded import find_nats_server, free_port, wait_for_port
from stratos_shared.settings import StratosSettings
from tests.compose import AUTH_VOLUME, ROOT, SERVICES, STRATOS, environment, host_path, mounts, run_nats_auth

pytestmark = pytest.mark.nats


def _start_like_compose(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The `nats` service's command with its container's file system laid out under `root`: bind mounts copied
    there, named volumes as folders (nats-auth filled by its own command), so the config's include resolves as in
    the container."""
    service = SERVICES["nats"]
    for target, source in mounts(service).items():
        inside = root / target.relative_to("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith("./"):
            shutil.copy(ROOT / source, inside)
        elif source == AUTH_VOLUME:
            run_nats_auth(inside)
    command = list(service["command"])
    for flag in ("-sd", "-c"):
        command[command.index(flag) + 1] = str(root / PurePosixPath(command[command.index(flag) + 1]).relative_to("/"))
    command[command.index("-m") + 1] = str(free_port())
    port = free_port()
    process = subprocess.Popen([find_nats_server(), *command, "-a", "127.0.0.1", "-p", str(port)])
    wait_for_port(port, 10.0, "127.0.0.1")
    return process, f"nats://127.0.0.1:{port}"


async def _check(url: str, volume: Path) -> None:
    for name, service in sorted(STRATOS.items()):
        env = environment(service)
        password_file = host_path(service, PurePosixPath(env["STRATOS_NATS_PASSWORD_FILE"]), {AUTH_VOLUME: volume})
        settings = StratosSettings(nats_user=env["STRATOS_NATS_USER"], nats_password_file=password_file)
        nc = await nats.connect(  # with its own inbox prefix, as `ServiceRuntime` connects
            url,
            user=settings.nats_user,
            password=settings.nats_password,
            connect_timeout=3,
            inbox_prefix=inbox_prefix(settings.nats_user),
        )
        assert (await nc.jetstream().account_info()).streams >= 0, name  # logged in, JetStream API allowed
        await nc.close()
    for options in ({}, {"user": "selector", "password": "wrong"}):
        with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
            await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **options)
    worker = environment(STRATOS["trainer"])
    refused: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        refused.append(exc)

    password = (volume / "users" / worker["STRATOS_NATS_USER"]).read_text()
    nc = await nats.connect(url, user=worker["STRATOS_NATS_USER"], password=password, error_cb=on_error)
    await nc.publish(ServerChosen.SUBJECT, b"{}")
    await nc.flush()
    await asyncio.sleep(0.5)
    await nc.close()
    assert any("permissions violation" in str(e).lower() for e in refused), refused


def test_every_service_logs_in_with_its_password_file_and_nobody_else_does(tmp_path: Path) -> None:
    process, url = _start_like_compose(tmp_path)
    try:
        auth = next(t for t, s in mounts(SERVICES["nats"]).items() if s == AUTH_VOLUME)
        asyncio.run(_check(url, tmp_path / auth.relative_to("/")))
    finally:
        process.terminate()
        process.wait(10)
