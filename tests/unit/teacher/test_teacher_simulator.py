"""The teacher simulator: accuracy, determinism, reverse prompts, HTTP endpoints, config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from stratos_shared.tasks import Task, build_task
from stratos_shared.teacher.simulator import (
    ModelSpec,
    Simulator,
    SimulatorConfig,
    load_config,
    main,
    running_simulator,
)

ACCURACY = {"math": 0.9, "mahjong-winning-tiles": 0.6, "custom-rules": 0.1}
CONFIG = SimulatorConfig(
    seed=3,
    models={"big": ModelSpec(accuracy=ACCURACY, sloppy_rate=0.3), "small": ModelSpec(default_accuracy=0.0)},
)
TASKS: dict[str, Task] = {kind: build_task(kind, seed=11, size=1000) for kind in ACCURACY}


def accuracy(sim: Simulator, model: str, task: Task, examples: Sequence[object] | None = None) -> float:
    exs = task.examples()
    right = sum(task.grade(sim.answer(model, task.prompt(ex), 0), ex).correct for ex in exs)
    return right / len(exs)


@pytest.mark.parametrize("kind", list(ACCURACY))
def test_accuracy_matches_setting_over_1000_questions(kind: str) -> None:
    sim = Simulator(CONFIG)
    # 4 standard deviations of a binomial over 1,000 draws is at most 0.064.
    assert accuracy(sim, "big", TASKS[kind]) == pytest.approx(ACCURACY[kind], abs=0.064)
    assert accuracy(sim, "small", TASKS[kind]) == 0.0


def test_wrong_answers_are_plausible_traces() -> None:
    sim = Simulator(CONFIG)
    task = TASKS["math"]
    ex = task.examples()[0]
    wrong = next(t for i in range(200) if not task.grade(t := sim.answer("small", task.prompt(ex), i), ex).correct)
    assert wrong.rstrip().splitlines()[-1].startswith("Answer: ") and len(wrong.splitlines()) >= 2


def test_deterministic_per_seed_model_question_sample() -> None:
    task = TASKS["custom-rules"]
    msgs = task.prompt(task.examples()[5])
    a, b = Simulator(CONFIG), Simulator(CONFIG)
    samples = [a.answer("big", msgs, i) for i in range(30)]
    assert samples == [b.answer("big", msgs, i) for i in range(30)]
    assert len(set(samples)) > 1  # different sample indices can differ
    other_seed = Simulator(CONFIG.model_copy(update={"seed": 4}))
    assert [other_seed.answer("big", msgs, i) for i in range(30)] != samples


@pytest.mark.parametrize("kind", list(ACCURACY))
def test_reverse_prompt_reaches_given_answer_or_is_sloppy(kind: str) -> None:
    sim = Simulator(CONFIG)
    task = TASKS[kind]
    sloppy = 0
    for ex in task.examples()[:300]:
        trace = sim.answer("big", task.reverse_prompt(ex), 0)
        assert task.grade(trace, ex).correct
        sloppy += not task.check_steps(trace, ex).ok
    assert sloppy / 300 == pytest.approx(0.3, abs=0.1)


def test_unknown_prompt_gets_an_honest_non_answer() -> None:
    out = Simulator(CONFIG).answer("big", [{"role": "user", "content": "What is love?"}], 0)
    assert out.endswith("Answer: unknown")


def test_dataset_lookup_for_questions_it_cannot_solve(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    path.write_text('{"question": "A hard question?", "answer": "It takes 6*7=<<6*7=42>>42.\\n#### 42"}\n')
    config = SimulatorConfig(datasets=[{"kind": "math", "path": str(path)}])
    task = build_task("math", path=str(path))
    out = Simulator(config).answer("teacher-sim", task.prompt(task.examples()[0]), 0)
    assert task.grade(out, task.examples()[0]).correct and task.check_steps(out, task.examples()[0]).ok


def test_http_endpoints_and_stats() -> None:
    with running_simulator(CONFIG) as running, httpx.Client(base_url=running.base_url.removesuffix("/v1")) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["big", "small"]
        task = TASKS["math"]
        body = {"model": "big", "messages": task.prompt(task.examples()[0]), "n": 3, "seed": 1}
        reply = http.post("/v1/chat/completions", json=body).json()
        assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
        assert reply["usage"]["completion_tokens"] == sum(
            len(c["message"]["content"].split()) for c in reply["choices"]
        )
        assert http.post("/v1/chat/completions", json={**body, "model": "nope"}).status_code == 404
        assert http.post("/v1/chat/completions", content=b"{").status_code == 400
        assert http.get("/stats").json()["requests"] == {"big": 1, "nope": 1}
        http.post("/stats/reset")
        assert http.get("/stats").json()["total"] == 0


def test_yaml_config_and_cli_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "seed: 2\nlatency_ms: 50\nmodels:\n  teacher-large:\n    accuracy: {math: 0.9, custom-rules: 0.1}\n"
        "faults: {rate_429: 0.1, retry_after_s: 1}\n"
    )
    config = load_config(path)
    assert config.models["teacher-large"].accuracy_for("custom-rules") == 0.1
    assert config.faults.rate_429 == 0.1 and config.latency_ms == 50
    served: list[tuple[SimulatorConfig, str, int]] = []
    monkeypatch.setattr("stratos_shared.teacher.simulator.serve", lambda c, h, p: served.append((c, h, p)))
    main(["--port", "8123", "--config", str(path)])
    assert served == [(config, "127.0.0.1", 8123)]
