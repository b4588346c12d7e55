"""Run a model server as a child process and know when it is ready.

vLLM must never be imported here (it pins its own torch), and the CPU server
is best isolated from the deployer's event loop, so both run as subprocesses.
Readiness is observed over HTTP, not guessed from log lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from stratos_shared.errors import StratosError

SERVER_MARK = "STRATOS_SERVER_LOG"
"""Set in each model server's environment to its log path: what names a server left by a deployer's past life."""


class ServingError(StratosError):
    """Base class for everything that goes wrong while serving a model (the deployer's root of the error tree)."""


class ServerExitedError(ServingError):
    """The server process ended before it became ready."""


class ServerNotReadyError(ServingError):
    """The server was still not ready when the deadline passed."""


def free_port_in(host: str, ports: range) -> int:
    """The first port of `ports` free on `host` a moment ago: model servers stay inside a published range."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise ServingError(
        f"no free port in {ports.start}-{ports.stop - 1} on {host}: each holds a model server already; "
        "widen STRATOS_SERVING_PORTS (and what publishes it)"
    )


class ManagedProcess:
    """One server subprocess: start, wait until ready, stop (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        argv: Sequence[str],
        health_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.health_url = health_url
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id while started, else None."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Launch the process in its own session, stdout and stderr going to ``log_path``."""
        if self._proc is not None:
            raise ServingError(f"already started (pid {self._proc.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        stop_leftovers(self.log_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, **(self.env or {}), SERVER_MARK: str(self.log_path.resolve())}
        # A new session lets stop() signal the whole group (vLLM spawns workers).
        self._proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def is_running(self) -> bool:
        """True while the process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """True when the process runs and its health URL answers 200."""
        if not self.is_running():
            return False
        try:
            return httpx.get(self.health_url, timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float, poll_s: float = 0.2) -> None:
        """Poll the health URL until it answers 200; stop the process and raise otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc is None:
                raise ServingError("wait_ready() called before start()")
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                raise ServerExitedError(
                    f"server exited with code {code} before becoming ready; "
                    f"last log lines from {self.log_path}:\n{self.log_tail()}"
                )
            if self.healthy(timeout_s=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerNotReadyError(
                    f"server did not become ready at {self.health_url} within {timeout_s:.1f} s; it was stopped; "
                    f"last log lines from {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(poll_s)

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; return the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self._close_log()
        return proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log file, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def marked_servers(root: Path) -> list[int]:
    """Processes whose ``SERVER_MARK`` is ``root`` or a path under it (Linux /proc; unreadable ones are skipped)."""
    root = root.resolve()
    prefix = f"{SERVER_MARK}=".encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        mark = next((var[len(prefix) :] for var in environ.split(b"\0") if var.startswith(prefix)), None)
        if mark is None:
            continue
        path = Path(os.fsdecode(mark))
        if path == root or root in path.parents:
            found.append(int(entry.name))
    return found


def stop_leftovers(root: Path) -> int:
    """SIGKILL every model server marked at or under ``root``; return how many there were.

    A server runs in its own session, so it outlives a SIGKILLed deployer. The mark is in the server's
    environment from exec on, so a restarted deployer finds it whenever the last life died, even between
    starting the server and recording anything about it; serving the job again beside it would run two.
    """
    pids = marked_servers(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # a session leader: its workers too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
