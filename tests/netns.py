"""Hosts for partition tests: a Linux network namespace joined to this one by a veth pair.

A server's workers started in a `Host` (``ip netns exec``) reach the control plane only over the pair, at the
root side's address; `cut` takes the root side's link down (nothing gets through either way, no connection is
reset: a real partition, not a process death) and `heal` brings it back. The addresses come from 198.18.0.0/15,
the block set aside for network benchmarks (RFC 2544): they name nothing outside this machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def netns_unavailable() -> str | None:
    """Why this machine cannot make a test host (one line), or None when it can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"stratos-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else "timed out"
        return f"this machine does not allow network namespaces ({detail})"
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class Host:
    """A namespace and the veth pair that joins it: `address` is the host's, `gateway` the root side's."""

    name: str
    root_dev: str
    address: str
    gateway: str

    def prefix(self) -> list[str]:
        """Run a command inside the host: put this in front of its argv."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        _ip("link", "set", self.root_dev, "down")

    def heal(self) -> None:
        _ip("link", "set", self.root_dev, "up")


@contextlib.contextmanager
def network_host(index: int = 1) -> Iterator[Host]:
    """A fresh host at 198.18.<index>.2, the root side at 198.18.<index>.1; removed (with its link) afterwards."""
    tag = secrets.token_hex(3)
    host = Host(f"stratos-h{index}-{tag}", f"sv{index}{tag}", f"198.18.{index}.2", f"198.18.{index}.1")
    inner = f"sn{index}{tag}"
    _ip("netns", "add", host.name)
    try:
        _ip("link", "add", host.root_dev, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", host.name)
        _ip("addr", "add", f"{host.gateway}/30", "dev", host.root_dev)
        _ip("link", "set", host.root_dev, "up")
        _ip("-n", host.name, "addr", "add", f"{host.address}/30", "dev", inner)
        _ip("-n", host.name, "link", "set", inner, "up")
        _ip("-n", host.name, "link", "set", "lo", "up")
        yield host
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", host.root_dev)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", host.name)
