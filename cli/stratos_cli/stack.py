"""The embedded stack behind `stratos up`: nats-server from the wheel plus the six services as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stratos_shared.embedded import NatsServerProcess, start_cluster

SERVICES = ["inventory", "selector", "teacher-eval", "data-synth", "trainer", "deployer"]


def module_of(service: str) -> str:
    return "stratos_" + service.replace("-", "_")


@dataclass
class StackState:
    """What `stratos up` started, saved so `stratos down` and other commands find it."""

    nats_url: str
    replicas: int = 1
    pids: dict[str, int] = field(default_factory=dict)

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
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def start_nats(home: Path, port: int, cluster: int, config_file: Path | None = None) -> tuple[str, dict[str, int]]:
    """Start one server (or a `cluster`-node cluster) detached; returns its URL(s) and pids."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    if cluster > 1:
        nodes = start_cluster(home / "nats-cluster", size=cluster, config_file=config_file)
        url = ",".join(n.url for n in nodes)
        return url, {f"nats-{i}": n.process.pid for i, n in enumerate(nodes) if n.process}
    server = NatsServerProcess(
        store_dir=home / "jetstream", port=port, log_file=home / "logs" / "nats.log", config_file=config_file
    ).start()
    assert server.process is not None
    return server.url, {"nats": server.process.pid}


def launch_service(service: str, home: Path, env: dict[str, str], replica: int = 0) -> int:
    """Start one service as its own process, logging to `<home>/logs/<service>[-n].log`."""
    suffix = f"-{replica}" if replica else ""
    log = (home / "logs" / f"{service}{suffix}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", module_of(service)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process.pid


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
