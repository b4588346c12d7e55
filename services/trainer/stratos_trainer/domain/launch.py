"""How a training run is launched on a server with several GPUs: by the engines that already do it.

One GPU (or none) runs in the trainer process. A server with `gpu_count` > 1 runs one process per GPU
under ``torchrun --nproc-per-node=<gpu_count>`` (PyTorch's launcher) or ``accelerate launch
--multi_gpu --num_processes <gpu_count>`` (Hugging Face's, what TRL documents); both give each process
its rank and world size, and TRL's trainers shard the batches by them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

Launcher = Literal["torchrun", "accelerate"]


def training_command(
    gpu_count: int,
    module: str,
    args: Sequence[str] = (),
    launcher: Launcher = "torchrun",
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs ``python -m module args`` on every GPU of the server."""
    if gpu_count <= 1:
        return [python, "-m", module, *args]
    if launcher == "torchrun":
        # `python -m torch.distributed.run` is `torchrun`, from the same interpreter (no PATH lookup)
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpu_count}",
                "-m", module, *args]  # fmt: skip
    return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpu_count),
            "--module", module, *args]  # fmt: skip
