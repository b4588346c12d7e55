"""Memory of the embedded stack: every process under one STRATOS_HOME, sampled while a command runs.

`stratos up --servers N` (or `make demo`) starts NATS, four control services, and a trainer and a deployer
per server, plus a model server per deployed job. This runs a command with a fresh STRATOS_HOME, samples the
resident memory (RSS) of every process whose environment names that home once a second, and prints the
peak of the sum and each process kind's share at that peak. Shared pages (the torch libraries) count once
per process, so the figure is an upper bound.

    python bench/stack_memory.py                       # `stratos up --servers 3`, 60 s idle, `stratos down`
    python bench/stack_memory.py --servers 5
    python bench/stack_memory.py -- stratos demo       # the whole demo (about 7 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[1]


def stack_processes(home: Path) -> dict[int, tuple[str, int]]:
    """pid -> (kind, RSS bytes) of every process whose environment has STRATOS_HOME=home."""
    mark = f"STRATOS_HOME={home}".encode()
    found: dict[int, tuple[str, int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if mark not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            rss = next(
                int(line.split()[1]) * 1024
                for line in (proc / "status").read_text().splitlines()
                if line.startswith("VmRSS")
            )
        except (OSError, StopIteration, ValueError):
            continue
        found[int(proc.name)] = (kind_of([a.decode(errors="replace") for a in argv]), rss)
    return found


def kind_of(argv: list[str]) -> str:
    text = " ".join(argv)
    for kind in (
        "stratos_deployer.serving",
        "stratos_trainer",
        "stratos_deployer",
        "stratos_inventory",
        "stratos_selector",
        "stratos_teacher_eval",
        "stratos_data_synth",
        "nats-server",
        "stratos_shared.teacher.simulator",
        "stratos_cli",
    ):
        if kind in text:
            return {"stratos_deployer.serving": "model server"}.get(kind, kind)
    return argv[0].rsplit("/", 1)[-1] if argv else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=60.0, help="without a command: how long to sample")
    parser.add_argument("command", nargs="*", help="run this instead of `stratos up` + idle + `stratos down`")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="stratos-mem-"))
    env = {**os.environ, "STRATOS_HOME": str(home)}
    env.pop("NATS_URL", None)
    stratos = [sys.executable, "-m", "stratos_cli"]
    peak: tuple[int, Counter[str], Counter[str]] = (0, Counter(), Counter())
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            procs = stack_processes(home)
            total = sum(rss for _, rss in procs.values())
            if total > peak[0]:
                peak = (total, Counter({k: 0 for k, _ in procs.values()}), Counter(k for k, _ in procs.values()))
                for kind, rss in procs.values():
                    peak[1][kind] += rss
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    if args.command:
        command = [*stratos, *args.command[1:]] if args.command[0] == "stratos" else args.command
        code = subprocess.run(command, env=env, cwd=ROOT).returncode
    else:
        port = str(_free_port())
        code = subprocess.run(
            [*stratos, "up", "--servers", str(args.servers), "--port", port], env=env, cwd=ROOT
        ).returncode
        time.sleep(args.idle_s)
        subprocess.run([*stratos, "down"], env=env, cwd=ROOT)
    done.set()
    sampler.join()
    total, by_kind, counts = peak
    print(
        f"command exit code {code}, {time.monotonic() - started:.0f} s; peak RSS of the stack {total / 2**30:.2f} GiB"
    )
    for kind, rss in by_kind.most_common():
        print(f"  {kind:32s} x{counts[kind]:<3d} {rss / 2**20:8.0f} MiB")
    return code


def _free_port() -> int:
    from stratos_shared.embedded import free_port

    return free_port()


if __name__ == "__main__":
    raise SystemExit(main())
