"""The GPU path in one short script: a bf16 LoRA step, then vLLM serving the LoRA student with a key, probed.

Run on a GPU machine from the repository root (about a minute when vLLM is installed; the step alone takes seconds):

    PYTHONPATH=shared:services/deployer python3 -m bench.gpu_check [--cpu]

1. one LoRA training step in bf16 on the GPU (the tiny student built from its config: no download), checking the
   loss is finite and only the adapter's weights moved;
2. `vllm serve` on that base with the adapter (`VllmBackend`, the deployer's own launcher), with a key: a request
   without it must get 401, one with it an answer, and the deployer's latency probe must complete.
Step 2 is reported as skipped, with the reason, where vLLM is not installed (it pins its own torch: its own
environment or image). `--cpu` runs step 1 in float32 on the CPU, to check the script itself. Prints one line
per check and exits non-zero when any fails.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from stratos_deployer.serving.backend import VllmBackend
from stratos_deployer.serving.probe import probe_latency
from stratos_deployer.serving.vllm import VllmConfig
from stratos_shared.embedded import free_port
from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer


def lora_step(base: Path, out: Path, device: str) -> str:
    """One optimiser step; the adapter saved to ``out``. Returns the check's line."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device)  # type: ignore[arg-type]
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    tokenizer = load_tokenizer(base)
    batch = tokenizer(["What is 12 + 7? 19"] * 4, return_tensors="pt").to(device)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    optimiser = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
    loss = peft_model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    optimiser.step()
    moved = {n for n, p in peft_model.named_parameters() if not torch.equal(p.detach(), before[n])}
    if not torch.isfinite(loss) or not moved or any("lora_" not in n for n in moved):
        raise AssertionError(f"loss {loss.item()}, moved {sorted(moved)[:4]}")
    peft_model.save_pretrained(str(out))
    return f"ok   LoRA step on {device} ({dtype}): loss {loss.item():.3f}, {len(moved)} adapter tensors moved"


def vllm_serving(base: Path, adapter: Path, logs: Path) -> str:
    if shutil.which("vllm") is None:
        return "skip vLLM: the `vllm` command is not installed here (it needs its own environment or image)"
    key = secrets.token_urlsafe(32)
    backend = VllmBackend(
        "student", template=VllmConfig(model="", served_name="student", max_model_len=512), log_dir=logs
    )
    url = backend.start(base, adapter, free_port(), api_key=key)
    try:
        messages = [{"role": "user", "content": "What is 2+3?"}]
        body = {"model": "student", "messages": messages, "max_tokens": 8}
        refused = httpx.post(url + "/chat/completions", json=body, timeout=60).status_code
        answered = httpx.post(url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
        latency = probe_latency(url, "student", [messages], n_requests=8, concurrency=4, api_key=key)
    finally:
        backend.stop()
    if refused != 401 or answered.status_code != 200:
        raise AssertionError(f"without the key: {refused}; with it: {answered.status_code}")
    return f"ok   vLLM served the LoRA student with a key: p50 {latency.e2e_p50 * 1000:.0f} ms over 8 requests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run the LoRA step on the CPU (checks the script)")
    args = parser.parse_args()
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("fail no CUDA device visible to torch", file=sys.stderr)
        return 1
    base = ensure_tiny_model("tiny-1m")
    failed = False
    with tempfile.TemporaryDirectory(prefix="stratos-gpu-check-") as tmp:
        checks: list[tuple[str, Callable[[], str]]] = [
            ("LoRA step", partial(lora_step, base, Path(tmp) / "adapter", device)),
            ("vLLM", partial(vllm_serving, base, Path(tmp) / "adapter", Path(tmp) / "logs")),
        ]
        for name, check in checks:
            try:
                print(check(), flush=True)
            except Exception as exc:  # every check reports, the next still runs
                failed = True
                print(f"fail {name}: {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
