"""`stratos server join`: on a server's own host, run its workers in the foreground under its credential.

Done means the inventory has seen every worker beat: the join watches the inventory write the server's record in
the `stratos-liveness` bucket (a core subscription to the bucket's subject, which the server's credential may read;
it may not read the other buckets `stratos.wait_for_workers` needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import nats
import nats.errors
from nats.aio.client import Client

from stratos_cli.membership import MembershipError, ServerCredentialFile
from stratos_cli.stack import alive, launch_server, service_env, signal_server, stop_pids
from stratos_shared.bus.names import liveness_subject, server_token
from stratos_shared.contracts.servers import ServerLiveness
from stratos_shared.errors import StratosError
from stratos_shared.settings import nats_tls_context


class Stopped(StratosError):
    """SIGTERM or SIGINT reached `stratos server join`: stop the workers and leave (an ending, not a failure)."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into `Stopped` while the join runs (Ctrl-C and a service manager alike)."""

    def stop(signum: int, _: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def log_in(credential: ServerCredentialFile, ca_file: Path | None) -> Client:
    """Connect as the server, or a one-line error: the credential was replaced or removed, or NATS is elsewhere."""

    async def quiet(_: Exception) -> None:
        return None

    try:
        return await nats.connect(
            servers=credential.nats_url.split(","),
            user=credential.user,
            password=credential.password,
            tls=nats_tls_context(ca_file),
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        why = str(exc).removeprefix("nats: ") or type(exc).__name__
        raise MembershipError(
            f"cannot log in to NATS at {credential.nats_url} as {credential.user} ({why}); on the control host, "
            f"`stratos server add {credential.server_id} --force` writes a fresh credential"
        ) from None


async def await_beats(
    nc: Client, server_id: str, pids: dict[str, int], log_dir: Path, timeout_s: float
) -> ServerLiveness:
    """Until the inventory has recorded a beat from each worker started now; fails if a worker exits first."""
    started = time.time()
    subscription = await nc.subscribe(liveness_subject(server_id))
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(nats.errors.TimeoutError):
            message = await subscription.next_msg(timeout=0.5)
            seen = ServerLiveness.model_validate_json(message.data)
            if sum(beat.seen_at >= started for beat in seen.workers.values()) >= len(pids):
                return seen
        if dead := [name for name, pid in pids.items() if not alive(pid)]:
            raise MembershipError(f"{', '.join(dead)} exited before beating; see its log in {log_dir}")
        if time.monotonic() > deadline:
            raise MembershipError(
                f"the inventory saw no heartbeat from {server_id} within {timeout_s:.0f} s: is the control "
                f"stack running, and its inventory? (worker logs in {log_dir})"
            )


def join_server(
    credential: ServerCredentialFile,
    home: Path,
    advertise: str,
    trainers: int,
    say: Callable[[str], None],
    timeout_s: float = 120.0,
) -> int:
    """Run the server's workers until a signal (0) or until one of them exits (1); stops them either way."""
    env = service_env(home, credential.nats_url, replicas=1)
    for inherited in ("STRATOS_NATS_USER", "STRATOS_NATS_PASSWORD", "STRATOS_NATS_CA"):
        env.pop(inherited, None)  # this host's workers speak as the server, nobody else
    ca_file = None
    if credential.ca:
        home.mkdir(parents=True, exist_ok=True)
        ca_file = home / f"nats-ca-{server_token(credential.server_id)}.pem"
        ca_file.write_text(credential.ca, encoding="utf-8")
        env["STRATOS_NATS_CA"] = str(ca_file)
    login = {"STRATOS_NATS_USER": credential.user, "STRATOS_NATS_PASSWORD": credential.password}
    log_dir = home / "logs"

    async def watch(pids: dict[str, int]) -> ServerLiveness:
        nc = await log_in(credential, ca_file)
        try:
            return await await_beats(nc, credential.server_id, pids, log_dir, timeout_s)
        finally:
            await nc.close()

    async def check() -> None:  # a credential NATS refuses fails here, before anything starts
        await (await log_in(credential, ca_file)).close()

    asyncio.run(check())
    pids: dict[str, int] = {}
    with stop_on_signals():
        try:
            pids = launch_server(
                credential.server_id, 0, home, env, trainers, login | {"STRATOS_ADVERTISE_HOST": advertise}
            )
            asyncio.run(watch(pids))
            say(
                f"server {credential.server_id} joined: the inventory sees its {len(pids)} workers beating "
                f"(endpoints on {advertise}; logs in {log_dir}); Ctrl-C stops them"
            )
            while all(alive(pid) for pid in pids.values()):
                time.sleep(0.5)
            say(f"a worker of {credential.server_id} exited ({', '.join(n for n, p in pids.items() if not alive(p))})")
            return 1
        except Stopped:
            return 0
        finally:
            stop_pids(pids)
            signal_server(home, credential.server_id)  # model servers its deployer may have left behind
            say(f"server {credential.server_id}: workers stopped")
