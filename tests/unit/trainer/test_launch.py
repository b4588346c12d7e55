"""Launch arguments for a server's GPUs: training under torchrun / accelerate, vLLM tensor parallelism."""

from __future__ import annotations

from pathlib import Path

from stratos_deployer.serving.backend import VllmBackend, choose_backend
from stratos_deployer.serving.vllm import VllmConfig, build_vllm_command
from stratos_trainer.domain.launch import training_command


def test_one_gpu_trains_in_one_process_and_several_under_a_launcher() -> None:
    assert training_command(1, "job.train", ["--x"], python="py") == ["py", "-m", "job.train", "--x"]
    assert training_command(0, "job.train", python="py") == ["py", "-m", "job.train"]
    torchrun = training_command(4, "job.train", ["--x"], python="py")
    assert torchrun[:3] == ["py", "-m", "torch.distributed.run"] and "--nproc-per-node=4" in torchrun
    assert torchrun[-3:] == ["-m", "job.train", "--x"]
    accelerate = training_command(8, "job.train", ["--x"], launcher="accelerate", python="py")
    assert accelerate[accelerate.index("--num_processes") + 1] == "8" and "--multi_gpu" in accelerate
    assert accelerate[-3:] == ["--module", "job.train", "--x"]


def test_vllm_splits_the_model_across_the_servers_gpus() -> None:
    single = build_vllm_command(VllmConfig(model="m", served_name="j"))
    assert "--tensor-parallel-size" not in single
    four = build_vllm_command(VllmConfig(model="m", served_name="j", tensor_parallel_size=4))
    assert four[four.index("--tensor-parallel-size") + 1] == "4"
    backend = choose_backend(True, served_name="j", host="10.0.0.7", gpu_count=4)
    assert isinstance(backend, VllmBackend)
    argv = build_vllm_command(backend.config_for(Path("/m"), None, 8001))
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4" and argv[argv.index("--host") + 1] == "10.0.0.7"
