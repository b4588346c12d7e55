"""A CLI command that cannot reach NATS says so in one line (the URL it tried, how to start the stack)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["jobs"], ["status", "some-job"], ["report", "some-job"], ["servers"]])
def test_unreachable_nats_is_one_line_not_a_traceback(command: list[str], tmp_path) -> None:
    url = f"nats://127.0.0.1:{closed_port()}"
    env = {**os.environ, "STRATOS_HOME": str(tmp_path), "NATS_URL": url, "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "stratos_cli", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr
    assert lines[0].startswith(f"error: cannot reach NATS at {url}") and "stratos up" in lines[0], lines[0]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["teacher-sim", "--config", "/nonexistent/sim.yaml"],
            "error: /nonexistent/sim.yaml: No such file or directory",
        ),
        (["server", "kill", "x"], "error: 'x' is not a server of the embedded stack; its servers: none (no embedded"),
    ],
)
def test_other_errors_are_one_line_however_narrow_the_terminal(command: list[str], expected: str, tmp_path) -> None:
    env = {**os.environ, "STRATOS_HOME": str(tmp_path), "COLUMNS": "40"}
    env.pop("STRATOS_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "stratos_cli", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode in (1, 2), done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr and lines[0].startswith(expected), done.stderr
