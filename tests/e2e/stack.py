"""The six services as separate processes against a test nats-server, as `stratos up` runs them: the four
control services once, a trainer and a deployer on each of the embedded servers."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from stratos_cli.stack import CONTROL, choose_servers, launch_server, launch_service, service_env, stop_pids
from stratos_inventory.sources.catalog import load_catalog
from stratos_shared.bus.permissions import Credential
from stratos_shared.embedded import NatsServerProcess

ROOT = Path(__file__).parents[2]
CATALOG = ROOT / "examples" / "servers.yaml"
SERVERS = choose_servers([s.id for s in load_catalog(CATALOG)], 2)
"""Two servers with workers: a job has somewhere to go when its server dies (more costs memory, not coverage)."""


@contextlib.contextmanager
def service_processes(
    nats_server: NatsServerProcess,
    home: Path,
    extra_env: dict[str, str] | None = None,
    servers: int = 2,
    credentials: dict[str, Credential] | None = None,
) -> Iterator[dict[str, int]]:
    """Start every service as its own process; SIGTERM them all afterwards (logs in `<home>/logs`). With
    `credentials` (`write_auth`), each logs in as `stratos up` has it: a control service as itself, a server's
    workers as `server-<id>`."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = service_env(home, nats_server.url, 1, {"STRATOS_CATALOG": str(CATALOG)})
    env.update(extra_env or {})
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)

    def login(user: str) -> dict[str, str]:
        found = (credentials or {}).get(user)
        return {"STRATOS_NATS_USER": user, "STRATOS_NATS_PASSWORD": found.password} if found else {}

    pids = {service: launch_service(service, home, env | login(service)) for service in CONTROL}
    for index, server in enumerate(choose_servers([s.id for s in load_catalog(CATALOG)], servers)):
        pids |= launch_server(server, index, home, env, extra=login(f"server-{server}"))
    try:
        yield pids
    finally:
        stop_and_reap(pids)


def stop_and_reap(pids: dict[str, int]) -> None:
    """Stop the processes (SIGTERM, then SIGKILL) and wait for each, so none is left a zombie."""
    stop_pids(pids)
    for pid in pids.values():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def logs_of(home: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((home / "logs").glob("*.log")))


__all__ = ["ROOT", "SERVERS", "logs_of", "service_processes", "subprocess"]
