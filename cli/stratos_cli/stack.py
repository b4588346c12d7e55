"""The embedded stack behind `stratos up`: nats-server from the wheel, the four control services, and the
worker processes (trainer, deployer) of N catalog servers, each server its own process group on its own
loopback address (127.0.0.2, 127.0.0.3, ...)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stratos_shared.bus.wiring_table import SERVICES as WIRING
from stratos_shared.embedded import WILDCARD_HOSTS, NatsServerProcess, start_cluster

CONTROL = [service.name for service in WIRING if service.runs == "control"]
"""Services that run once for the whole system (anywhere), as their handlers declare; the rest run on every server."""
WORKERS = [service.name for service in WIRING if service.runs == "server"]
"""Services that run on a server: they take only that server's work and heartbeat for it."""
SERVICES = [*CONTROL, *WORKERS]
EMBEDDED_SERVERS = ("t4-us-east", "l4-us-west", "a10-us-central", "a100-us-east", "h100-us-east", "a100-eu-west")
"""Which catalog servers `stratos up --servers N` brings to life first (fit the example jobs, three regions)."""


def module_of(service: str) -> str:
    return "stratos_" + service.replace("-", "_")


@dataclass
class StackState:
    """What `stratos up` started, saved so `stratos down` and other commands find it."""

    nats_url: str
    replicas: int = 1
    pids: dict[str, int] = field(default_factory=dict)
    servers: list[str] = field(default_factory=list)
    """The catalog servers that have workers (what `stratos server kill` may kill)."""
    advertise_url: str = ""
    """Where servers on other hosts reach NATS (`stratos up --listen/--advertise-url`): what `stratos server add`
    writes into their credential files. Empty: the stack listens on loopback only."""
    auth: bool = False
    """Whether its nats-server has per-user auth (`<home>/nats-auth.conf`), which `stratos server add` changes."""
    nats_ca: str = ""
    """The CA file clients verify NATS's TLS certificate with (STRATOS_NATS_CA at `stratos up`); empty: no TLS."""

    @staticmethod
    def path(home: Path) -> Path:
        return home / "stack.json"

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.path(home).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> StackState | None:
        try:
            return cls(**json.loads(cls.path(home).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def alive(pid: int) -> bool:
    """Whether `pid` still runs; a child of this process that exited is reaped (a zombie would look alive)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Listen:
    """Where the embedded nats-server takes clients: an address (loopback by default) and optional TLS."""

    host: str = "127.0.0.1"
    tls_cert: Path | None = None
    tls_key: Path | None = None


def start_nats(
    home: Path, port: int, cluster: int, config_file: Path | None = None, listen: Listen = Listen()
) -> tuple[str, dict[str, int]]:
    """Start one server (or a `cluster`-node cluster) detached; returns its local URL(s) and pids."""
    nodes, pids = start_nats_nodes(home, port, cluster, config_file, listen)
    return ",".join(n.url for n in nodes), pids


def start_nats_nodes(
    home: Path, port: int, cluster: int, config_file: Path | None = None, listen: Listen = Listen()
) -> tuple[list[NatsServerProcess], dict[str, int]]:
    """`start_nats`, returning the servers themselves (their listen addresses make the advertised URL)."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    if cluster > 1:
        tls = (listen.tls_cert, listen.tls_key) if listen.tls_cert and listen.tls_key else None
        nodes = start_cluster(home / "nats-cluster", cluster, config_file=config_file, host=listen.host, tls=tls)
        return nodes, {f"nats-{i}": n.process.pid for i, n in enumerate(nodes) if n.process}
    server = NatsServerProcess(
        store_dir=home / "jetstream",
        port=port,
        log_file=home / "logs" / "nats.log",
        config_file=config_file,
        host=listen.host,
        tls_cert=listen.tls_cert,
        tls_key=listen.tls_key,
    ).start()
    assert server.process is not None
    return [server], {"nats": server.process.pid}


def outbound_address() -> str:
    """This host's address on its default route (no packet is sent), or its name when it has no route: what
    another host most likely reaches it at."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any remote address, never contacted
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostname()


def advertised_url(nodes: list[NatsServerProcess], explicit: str | None = None) -> str:
    """The client URL(s) other hosts use: `explicit`, else the listen address (this host's outbound address when
    it listens on every interface); empty when the stack listens on loopback only (no other host reaches it)."""
    if explicit:
        return explicit
    urls = []
    for node in nodes:
        if is_loopback(node.host):
            return ""
        host = outbound_address() if node.host in WILDCARD_HOSTS else node.host
        urls.append(f"{'tls' if node.tls_cert else 'nats'}://{host}:{node.port}")
    return ",".join(urls)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def launch_service(
    service: str, home: Path, env: dict[str, str], replica: int = 0, tag: str = "", prefix: Sequence[str] = ()
) -> int:
    """Start one service as its own process (own session), logging to `<home>/logs/<service>[@tag][-n].log`.

    `prefix` runs it through another command first (``ip netns exec HOST``: a worker on another network host).
    """
    suffix = (f"@{tag}" if tag else "") + (f"-{replica}" if replica else "")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    log = (home / "logs" / f"{service}{suffix}.log").open("ab")
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", module_of(service)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process.pid


def advertise_host(index: int) -> str:
    """The loopback address of the index-th embedded server: 127.0.0.2, 127.0.0.3, ... (all of 127/8 is lo)."""
    return f"127.0.{(index + 2) // 256}.{(index + 2) % 256}"


def choose_servers(catalog_ids: list[str], count: int) -> list[str]:
    """`count` catalog servers for the embedded stack: the preferred ones first, then the catalog's order."""
    preferred = [s for s in EMBEDDED_SERVERS if s in catalog_ids]
    rest = [s for s in catalog_ids if s not in preferred]
    return (preferred + rest)[:count]


def launch_server(
    server_id: str,
    index: int,
    home: Path,
    env: dict[str, str],
    trainers: int = 1,
    extra: dict[str, str] | None = None,
    advertise: str | None = None,
    prefix: Sequence[str] = (),
) -> dict[str, int]:
    """Start one server's workers (trainers and a deployer); returns name -> pid.

    They are one server by their environment (``STRATOS_SERVER_ID``), which the model servers they start
    inherit: `server_pids` finds all of them, though each runs in a session of its own. They advertise
    `advertise` (default: the index-th loopback address), and run through `prefix` (another network host).
    """
    worker_env = dict(env) | {
        "STRATOS_SERVER_ID": server_id,
        "STRATOS_ADVERTISE_HOST": advertise or advertise_host(index),
    }
    worker_env |= extra or {}
    pids: dict[str, int] = {}
    try:
        for service, count in (("trainer", trainers), ("deployer", 1)):
            for replica in range(count):
                pid = launch_service(service, home, worker_env, replica, tag=server_id, prefix=prefix)
                pids[f"{service}@{server_id}" + (f"-{replica}" if replica else "")] = pid
    except BaseException:
        stop_pids(pids)  # half a server must not be left running where nobody knows of it
        raise
    return pids


def server_pids(home: Path, server_id: str) -> list[int]:
    """Every process of one embedded server: its workers and the model servers they started (which run in
    sessions of their own, so they are found by the server id in their environment)."""
    marks = {f"STRATOS_SERVER_ID={server_id}".encode(), f"STRATOS_HOME={home}".encode()}
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if marks <= environ:
            found.append(int(proc.name))
    return sorted(found)


def signal_server(home: Path, server_id: str, sig: int = signal.SIGKILL) -> list[int]:
    """Send `sig` to every process of the server (SIGKILL: the server dies; SIGSTOP/SIGCONT: it pauses)."""
    pids = server_pids(home, server_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def service_env(home: Path, nats_url: str, replicas: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"NATS_URL": nats_url, "STRATOS_HOME": str(home), "STRATOS_REPLICAS": str(replicas)})
    env.update(extra or {})
    return env


def stop_pids(pids: dict[str, int], timeout_s: float = 15.0) -> list[str]:
    """SIGTERM everything (services first, NATS last), then SIGKILL stragglers; returns what was stopped."""
    ordered = sorted(pids.items(), key=lambda item: item[0].startswith("nats"))
    for _, pid in ordered:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for _, pid in ordered):
        time.sleep(0.1)
    for _, pid in ordered:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return [name for name, _ in ordered]
