"""vLLM argv construction and the subprocess lifecycle (exercised with the CPU server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stratos_deployer.serving.backend import CpuBackend, VllmBackend, choose_backend
from stratos_deployer.serving.cpu_server import free_port
from stratos_deployer.serving.process import (
    SERVER_MARK,
    ManagedProcess,
    ServerExitedError,
    ServerNotReadyError,
    stop_leftovers,
)
from stratos_deployer.serving.vllm import VllmConfig, build_vllm_command
from stratos_shared.localmodels import PLAIN_CHAT_TEMPLATE


def test_vllm_command_with_lora_adapter() -> None:
    config = VllmConfig(
        model="/models/qwen2.5-0.5b",
        adapter_path=Path("/jobs/j1/adapter"),
        served_name="job-j1-student",
        host="0.0.0.0",
        port=8123,
        max_model_len=4096,
        gpu_memory_utilization=0.85,
        dtype="bfloat16",
        max_lora_rank=64,
    )
    assert build_vllm_command(config) == [
        "vllm", "serve", "/models/qwen2.5-0.5b",
        "--host", "0.0.0.0", "--port", "8123",
        "--enable-lora", "--lora-modules", "job-j1-student=/jobs/j1/adapter", "--max-lora-rank", "64",
        "--dtype", "bfloat16", "--gpu-memory-utilization", "0.85",
        "--max-model-len", "4096",
    ]  # fmt: skip


def test_vllm_command_for_merged_model() -> None:
    config = VllmConfig(model="/jobs/j1/merged", served_name="job-j1-student", extra_args=["--enforce-eager"])
    assert build_vllm_command(config) == [
        "vllm", "serve", "/jobs/j1/merged",
        "--host", "127.0.0.1", "--port", "8000",
        "--served-model-name", "job-j1-student",
        "--dtype", "auto", "--gpu-memory-utilization", "0.9",
        "--enforce-eager",
    ]  # fmt: skip


def test_vllm_backend_fills_paths_and_port_into_its_template() -> None:
    backend = VllmBackend("stu", template=VllmConfig(model="", served_name="x", max_model_len=2048))
    config = backend.config_for(Path("/m"), Path("/a"), 9001)
    assert build_vllm_command(config)[:11] == [
        "vllm", "serve", "/m", "--host", "127.0.0.1", "--port", "9001",
        "--enable-lora", "--lora-modules", "stu=/a", "--dtype",
    ]  # fmt: skip


def test_vllm_serves_a_base_model_without_a_template_in_the_plain_format(tmp_path: Path) -> None:
    """Gemma 3 270M's folder has no template: vLLM would refuse its chats; the trainer trained it in the plain one."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer"}))
    backend = VllmBackend("stu", log_dir=tmp_path / "logs")
    argv = build_vllm_command(backend.config_for(base, tmp_path / "adapter", 9001))
    template = Path(argv[argv.index("--chat-template") + 1])
    assert template.read_text() == PLAIN_CHAT_TEMPLATE
    (base / "chat_template.jinja").write_text("{{ messages }}")
    assert "--chat-template" not in build_vllm_command(backend.config_for(base, None, 9001))


def test_a_keyed_vllm_launch_passes_its_key_in_the_environment_only(tmp_path: Path) -> None:
    backend = VllmBackend("stu", log_dir=tmp_path)
    process = backend._make_process(Path("/m"), None, 9001, "secret-key")
    assert process.env == {"VLLM_API_KEY": "secret-key"}
    assert not any("secret-key" in arg for arg in process.argv)
    assert backend._make_process(Path("/m"), None, 9001, None).env is None


def test_choose_backend() -> None:
    assert isinstance(choose_backend(has_gpu=True), VllmBackend)
    assert isinstance(choose_backend(has_gpu=False), CpuBackend)
    assert isinstance(choose_backend(has_gpu=True, override="cpu"), CpuBackend)
    assert isinstance(choose_backend(has_gpu=False, override="VLLM"), VllmBackend)
    with pytest.raises(ValueError, match="unknown serving backend"):
        choose_backend(has_gpu=False, override="tgi")


def test_cpu_backend_lifecycle(tiny_model_path: Path, adapter_path: Path, tmp_path: Path) -> None:
    backend = CpuBackend("lifecycle-student", max_batch_size=4, log_dir=tmp_path, ready_timeout_s=180)
    port = free_port()
    assert not backend.healthy()
    key = "k-" + "x" * 40
    url = backend.start(tiny_model_path, adapter_path, port, api_key=key)
    try:
        assert url == f"http://127.0.0.1:{port}/v1"
        assert backend.healthy(), "/health must stay open: the deployer and the inventory probe it without a key"
        assert httpx.get(url + "/models").status_code == 401
        models = httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"}).json()
        assert [m["id"] for m in models["data"]] == ["lifecycle-student"]
        pid = backend._process.pid if backend._process else None
        assert pid is not None and key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        backend.stop()
    assert not backend.healthy()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models")
    assert "--adapter" in backend.command(tiny_model_path, adapter_path, port)
    assert backend.log_path.exists()


def test_never_ready_process_times_out_and_is_stopped(tmp_path: Path) -> None:
    port = free_port()
    process = ManagedProcess(
        [sys.executable, "-c", "import time; print('warming up', flush=True); time.sleep(600)"],
        f"http://127.0.0.1:{port}/health",
        tmp_path / "slow.log",
    )
    process.start()
    pid = process.pid
    with pytest.raises(ServerNotReadyError, match=r"did not become ready .* within 1\.5 s") as info:
        process.wait_ready(timeout_s=1.5)
    assert "warming up" in str(info.value)
    assert not process.is_running() and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_process_that_exits_reports_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        [sys.executable, "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"],
        "http://127.0.0.1:9/health",
        tmp_path / "crash.log",
    )
    process.start()
    with pytest.raises(ServerExitedError, match="exited with code 3") as info:
        process.wait_ready(timeout_s=60)
    assert "CUDA out of memory" in str(info.value)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    )
    process = ManagedProcess([sys.executable, "-c", stubborn], "http://127.0.0.1:9/health", tmp_path / "s.log")
    process.start()
    deadline = time.monotonic() + 60
    while "up" not in process.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)  # the SIGTERM handler must be installed before we signal
    assert process.stop(grace_s=0.5) == -9


@pytest.fixture
def vllm_executable(tmp_path: Path) -> str:
    """A ``vllm`` on the path the config names, running the vLLM process double (this machine has no GPU)."""
    double = Path(__file__).with_name("vllm_double.py")
    executable = tmp_path / "bin" / "vllm"
    executable.parent.mkdir()
    executable.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{double}" "$@"\n')
    executable.chmod(0o755)
    return str(executable)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def logged(log: str, prefix: str) -> str:
    """The latest line the double logged under `prefix` (the log is appended to across launches)."""
    return next(line.removeprefix(prefix) for line in reversed(log.splitlines()) if line.startswith(prefix))


def test_vllm_backend_lifecycle_lora_then_merged(vllm_executable: str, tmp_path: Path) -> None:
    """Launch with --enable-lora, wait for /health, SIGTERM the process group; then relaunch a merged model."""
    template = VllmConfig(model="", served_name="x", executable=vllm_executable, max_model_len=512)
    backend = VllmBackend("job-7", template=template, log_dir=tmp_path / "logs", ready_timeout_s=60)
    port = free_port()
    url = backend.start(Path("/models/base"), Path("/jobs/job-7/adapter"), port)
    returned_at = time.time()
    log = backend.log_path.read_text()
    assert json.loads(logged(log, "argv ")) == [
        "serve", "/models/base", "--host", "127.0.0.1", "--port", str(port),
        "--enable-lora", "--lora-modules", "job-7=/jobs/job-7/adapter",
        "--dtype", "auto", "--gpu-memory-utilization", "0.9", "--max-model-len", "512",
    ]  # fmt: skip
    # start() returned only after the server listened (the double listens 1 s after it starts)
    assert returned_at >= float(logged(log, "listening "))
    assert url == f"http://127.0.0.1:{port}/v1" and backend.healthy()
    assert [m["id"] for m in httpx.get(url + "/models").json()["data"]] == ["job-7"]
    worker = int(logged(log, "worker "))

    backend.stop()
    assert "SIGTERM" in backend.log_path.read_text(), "stop() did not ask vLLM to shut down gracefully"
    # the worker got the group's SIGTERM with its parent; on a loaded machine it may take a moment to exit
    assert not backend.healthy() and gone_within(worker, 10.0), "vLLM's worker outlived it"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models")

    port = free_port()
    url = backend.start(Path("/jobs/job-7/merged"), None, port)
    try:
        assert json.loads(logged(backend.log_path.read_text(), "argv ")) == [
            "serve", "/jobs/job-7/merged", "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", "job-7",
            "--dtype", "auto", "--gpu-memory-utilization", "0.9", "--max-model-len", "512",
        ]  # fmt: skip
        assert [m["id"] for m in httpx.get(url + "/models").json()["data"]] == ["job-7"]
    finally:
        backend.stop()


def test_vllm_backend_launch_that_dies_is_reported_and_can_be_retried(vllm_executable: str, tmp_path: Path) -> None:
    template = VllmConfig(model="", served_name="x", executable=vllm_executable, extra_args=["--double-exit-code", "1"])
    backend = VllmBackend("job-8", template=template, log_dir=tmp_path, ready_timeout_s=60)
    with pytest.raises(ServerExitedError, match="exited with code 1") as info:
        backend.start(Path("/models/base"), None, free_port())
    assert "CUDA out of memory" in str(info.value)
    assert not backend.healthy()
    backend.template = template.model_copy(update={"extra_args": []})
    url = backend.start(Path("/models/base"), None, free_port())  # not "already serving": the failed launch is gone
    try:
        assert backend.healthy() and httpx.get(url + "/models").status_code == 200
    finally:
        backend.stop()


SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_a_server_left_by_a_killed_deployer_is_stopped_when_its_job_is_served_again(tmp_path: Path) -> None:
    """No record is needed: the server carries its mark from exec on (a deployer can die before writing anything)."""
    job = tmp_path / "deployments" / "job-1"
    left = subprocess.Popen(  # what a deployer SIGKILLed right after starting the rev-1 server leaves behind
        SLEEPER, env={**os.environ, SERVER_MARK: str(job / "rev1" / "logs" / "cpu-server.log")}, start_new_session=True
    )
    other = subprocess.Popen(
        SLEEPER, env={**os.environ, SERVER_MARK: str(tmp_path / "deployments" / "job-10" / "rev1" / "logs" / "x.log")}
    )
    try:
        assert stop_leftovers(job) == 1
        assert left.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None, "another job's server was stopped"
        assert stop_leftovers(job) == 0
    finally:
        for process in (left, other):
            process.kill()
            process.wait()


def test_starting_a_server_stops_the_one_a_past_life_left_on_the_same_log(tmp_path: Path) -> None:
    first = ManagedProcess(SLEEPER, "http://127.0.0.1:9/health", tmp_path / "rev1" / "cpu-server.log")
    first.start()  # then "forgotten", as by a deployer that was SIGKILLed
    second = ManagedProcess(SLEEPER, "http://127.0.0.1:9/health", tmp_path / "rev1" / "cpu-server.log")
    second.start()
    try:
        deadline = time.monotonic() + 10
        while first.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not first.is_running() and second.is_running()
    finally:
        first.stop()
        second.stop()
