"""The CPU server over real HTTP: OpenAI wire format, batching, greedy correctness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from stratos_deployer.serving.cpu_server import CpuServerConfig, RunningServer, start_in_thread

SERVED_NAME = "student-under-test"  # set by the cpu_server fixture in conftest.py
Chat = list[ChatCompletionMessageParam]


def _ask(text: str) -> Chat:
    return [{"role": "user", "content": text}]


def _multi_row_steps(server: RunningServer) -> int:
    """Decode steps so far that ran more than one request together."""
    assert server.batcher is not None
    return sum(count for size, count in server.batcher.batch_sizes.items() if size > 1)


PROMPTS = [_ask(f"What is {a} + {b}?") for a, b in [(3, 4), (12, 30), (7, 8), (25, 17)]]


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused")


def test_health_and_models(cpu_server: RunningServer) -> None:
    health = httpx.get(cpu_server.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    models = _client(cpu_server).models.list()
    assert [m.id for m in models.data] == [SERVED_NAME]


def test_openai_client_matches_model_generate(
    cpu_server: RunningServer, reference_generate: Callable[[Chat, int], str]
) -> None:
    reply = _client(cpu_server).chat.completions.create(
        model=SERVED_NAME,
        messages=PROMPTS[0],
        max_tokens=24,
        temperature=0,
    )
    choice = reply.choices[0]
    assert reply.model == SERVED_NAME
    assert choice.message.role == "assistant"
    assert choice.message.content == reference_generate(PROMPTS[0], 24)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_openai_client_streaming_equals_non_streaming(cpu_server: RunningServer) -> None:
    client = _client(cpu_server)
    full = client.chat.completions.create(model=SERVED_NAME, messages=PROMPTS[1], max_tokens=20, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=SERVED_NAME,
            messages=PROMPTS[1],
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].usage is not None and full.usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_raw_sse_wire_format(cpu_server: RunningServer) -> None:
    body = {"model": SERVED_NAME, "messages": PROMPTS[2], "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", cpu_server.url + "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block for block in raw.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_raw_httpx_non_streaming_shape(cpu_server: RunningServer) -> None:
    body = {"model": SERVED_NAME, "messages": PROMPTS[3], "max_tokens": 5, "temperature": 0}
    data = httpx.post(cpu_server.url + "/v1/chat/completions", json=body).json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["choices"][0]["message"]["role"] == "assistant"
    usage = data["usage"]
    assert usage["completion_tokens"] <= 5
    if data["choices"][0]["finish_reason"] == "length":
        assert usage["completion_tokens"] == 5


def test_concurrent_requests_are_batched_and_stay_correct(
    cpu_server: RunningServer, reference_generate: Callable[[Chat, int], str]
) -> None:
    prompts = [_ask(f"What is {i} + {2 * i + 1}?") for i in range(8)]
    before = _multi_row_steps(cpu_server)

    async def run_all() -> list[str]:
        client = openai.AsyncOpenAI(base_url=cpu_server.url + "/v1", api_key="unused")
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(model=SERVED_NAME, messages=p, max_tokens=16, temperature=0)
                for p in prompts
            )
        )
        return [r.choices[0].message.content or "" for r in replies]

    outputs = asyncio.run(run_all())
    stats = httpx.get(cpu_server.url + "/stats").json()
    after = _multi_row_steps(cpu_server)
    assert after > before, f"no decode step ran more than one request: {stats}"
    assert stats["max_batch_size_seen"] > 1
    # Left padding and batching must not change greedy results.
    assert outputs == [reference_generate(p, 16) for p in prompts]


def test_stop_string_truncates(cpu_server: RunningServer) -> None:
    client = _client(cpu_server)
    full = client.chat.completions.create(model=SERVED_NAME, messages=PROMPTS[0], max_tokens=24, temperature=0)
    text = full.choices[0].message.content or ""
    assert len(text) >= 4, f"need some output to pick a stop string from: {text!r}"
    stop = text[2:4]
    cut = client.chat.completions.create(
        model=SERVED_NAME,
        messages=PROMPTS[0],
        max_tokens=24,
        temperature=0,
        stop=[stop],
    )
    assert cut.choices[0].message.content == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_sampling_settings_are_accepted(cpu_server: RunningServer) -> None:
    reply = _client(cpu_server).chat.completions.create(
        model=SERVED_NAME,
        messages=PROMPTS[0],
        max_tokens=6,
        temperature=0.8,
        top_p=0.9,
    )
    assert reply.usage is not None and reply.usage.completion_tokens <= 6


def test_n_samples_come_back_as_n_choices_decoded_in_one_batch(
    cpu_server: RunningServer, reference_generate: Callable[[Chat, int], str]
) -> None:
    before = _multi_row_steps(cpu_server)
    greedy = _client(cpu_server).chat.completions.create(
        model=SERVED_NAME, messages=PROMPTS[1], max_tokens=16, temperature=0, n=3
    )
    assert [c.index for c in greedy.choices] == [0, 1, 2]
    # greedy samples are all the model's one greedy answer, each exactly as model.generate writes it
    assert {c.message.content for c in greedy.choices} == {reference_generate(PROMPTS[1], 16)}
    assert _multi_row_steps(cpu_server) > before  # the three rows were decoded together
    one = _client(cpu_server).chat.completions.create(
        model=SERVED_NAME, messages=PROMPTS[1], max_tokens=16, temperature=0, n=1
    )
    assert greedy.usage is not None and one.usage is not None
    assert greedy.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    assert greedy.usage.completion_tokens == 3 * one.usage.completion_tokens
    sampled = _client(cpu_server).chat.completions.create(
        model=SERVED_NAME, messages=PROMPTS[2], max_tokens=24, temperature=1.5, n=4
    )
    assert len(sampled.choices) == 4 and len({c.message.content for c in sampled.choices}) > 1


def test_bad_requests_get_400(cpu_server: RunningServer) -> None:
    url = cpu_server.url + "/v1/chat/completions"
    assert httpx.post(url, json={"model": SERVED_NAME, "messages": PROMPTS[0], "n": 0}).status_code == 400
    assert httpx.post(url, json={"model": SERVED_NAME, "messages": PROMPTS[0], "n": 17}).status_code == 400
    streamed = httpx.post(url, json={"model": SERVED_NAME, "messages": PROMPTS[0], "n": 2, "stream": True})
    assert streamed.status_code == 400 and "only n=1" in streamed.json()["error"]["message"]
    assert httpx.post(url, json={"model": SERVED_NAME, "messages": []}).status_code == 400
    bad_temp = httpx.post(url, json={"model": SERVED_NAME, "messages": PROMPTS[0], "temperature": -1})
    assert bad_temp.status_code == 400 and "temperature" in bad_temp.json()["error"]["message"]


def test_adapter_changes_greedy_output(tiny_model_path: Path, adapter_path: Path, cpu_server: RunningServer) -> None:
    messages = PROMPTS[0]
    base = _client(cpu_server).chat.completions.create(
        model=SERVED_NAME, messages=messages, max_tokens=16, temperature=0
    )
    config = CpuServerConfig(model_path=tiny_model_path, adapter_path=adapter_path, served_name="with-adapter", port=0)
    with start_in_thread(config) as tuned_server:
        tuned = _client(tuned_server).chat.completions.create(
            model="with-adapter",
            messages=messages,
            max_tokens=16,
            temperature=0,
        )
    assert tuned.choices[0].message.content != base.choices[0].message.content


def test_health_reports_load_failure(tmp_path: Path) -> None:
    config = CpuServerConfig(model_path=tmp_path / "missing-model", port=0)
    try:
        start_in_thread(config, ready_timeout_s=60)
    except RuntimeError as exc:
        assert "failed to load" in str(exc)
    else:
        raise AssertionError("a missing model directory must fail start-up")


def test_the_teacher_client_gets_n_samples_from_the_cpu_server_in_one_request(cpu_server: RunningServer) -> None:
    """Data-synth asks a teacher for n samples; Stratos' own server (serving a teacher model) answers in one go."""
    from stratos_shared.teacher import TeacherClient

    async def ask() -> tuple[int, int]:
        async with TeacherClient(cpu_server.url + "/v1", SERVED_NAME) as client:
            got = await client.complete(
                [{"role": "user", "content": "What is 2 + 2?"}], n=3, temperature=1.0, max_tokens=8
            )
        return len(got.texts), got.http_calls

    assert asyncio.run(ask()) == (3, 1)
