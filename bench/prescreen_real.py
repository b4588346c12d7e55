"""Pre-screen with a real pretrained candidate: SmolLM2-135M-Instruct against the tiny local students.

The pre-screen gives each candidate base ``k`` verified teacher traces in context and measures few-shot
accuracy on held-out items, before any training. With only 1M-10M-parameter bases built from scratch it could
not rank anything (none learns in context: ``docs/results.md``); this measures whether it separates a model
that can. Same shots, items and grader (the task's, strict then flexible extraction) for every candidate;
the trainer service's own ``prescreen`` function; strict-only accuracy is printed beside it.

    python bench/prescreen_real.py [--task math] [--generator '{"max_steps": 1}'] [--items 32] [--shots 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from stratos_shared.models import resolve_model
from stratos_shared.tasks import build_task
from stratos_trainer.domain.config import PrescreenConfig
from stratos_trainer.domain.prescreen import prescreen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="math")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--candidates", default="tiny-1m,tiny-4m,smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", default="{}", help='task generator options as JSON, e.g. {"max_steps": 1}')
    a = parser.parse_args(argv)
    torch.set_num_threads(2)
    task = build_task(a.task, seed=a.seed, size=a.items + a.shots, generator=json.loads(a.generator))
    examples = list(task.examples())
    shot_examples, held = examples[: a.shots], examples[a.shots : a.shots + a.items]
    shots = [
        [*task.student_prompt(e), {"role": "assistant", "content": task.reference_trace(e)}] for e in shot_examples
    ]
    by_id = {e.id: e for e in held}
    items = [(task.student_prompt(e), e.id) for e in held]
    refs = {name: name if not name.startswith("tiny-") else f"tiny:{name}" for name in a.candidates.split(",")}
    paths = {name: resolve_model(ref) for name, ref in refs.items()}
    cfg = PrescreenConfig(k_shots=a.shots, n_eval=a.items, threshold=0.1, seed=a.seed, batch_size=16)

    strict: list[bool] = []  # the same outputs graded strictly, in call order (candidates run one after another)

    def grade(output: str, example_id: str) -> object:
        strict.append(task.grade_strict(output, by_id[example_id]).correct)
        return task.grade(output, by_id[example_id])

    start = time.monotonic()
    result = prescreen(list(paths.values()), shots, items, grade, cfg)  # type: ignore[arg-type]
    seconds = time.monotonic() - start
    names = {path: name for name, path in paths.items()}
    print(f"{a.task} {a.generator}: {a.shots} shots, {len(items)} items, {seconds:.0f} s for {len(paths)} candidates")
    order = list(paths.values())
    for score in result.scores:
        i = order.index(score.path)
        strict_acc = sum(strict[i * len(items) : (i + 1) * len(items)]) / len(items)
        print(
            f"  {names[score.path]:<14} {score.num_parameters / 1e6:7.1f}M params  few-shot {score.accuracy:6.1%}"
            f"  (strict Answer: line only {strict_acc:6.1%})"
        )
    chosen = names[result.chosen.path] if result.chosen else None
    print(f"chosen: {chosen} ({result.reason})")


if __name__ == "__main__":
    main()
