"""Structured logs: JSON records carry service, trace, span and job ids; `stratos logs` merges them per job."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from typer.testing import CliRunner

from stratos_cli.app import app
from stratos_cli.logview import LogLine, parse_line, read_logs, select
from stratos_shared.logs import ContextFilter, JsonFormatter, TextFormatter, current_job_id, job_context
from stratos_shared.settings import StratosSettings


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter("trainer"))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.structured")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_inside_a_job_and_span_carries_their_ids(captured) -> None:
    logger, stream, _ = captured
    tracer = TracerProvider().get_tracer("test")
    with job_context("job-42"), tracer.start_as_current_span("stage") as span:
        logger.info("training %s", "started")
    (entry,) = records(stream)
    ctx = span.get_span_context()
    assert entry["message"] == "training started"
    assert entry["service"] == "trainer" and entry["level"] == "INFO" and entry["logger"] == "test.structured"
    assert entry["job_id"] == "job-42"
    assert entry["trace_id"] == f"{ctx.trace_id:032x}" and entry["span_id"] == f"{ctx.span_id:016x}"


def test_ids_are_left_out_outside_a_job_and_reset_after_it(captured) -> None:
    logger, stream, _ = captured
    with job_context("job-1"):
        pass
    logger.warning("idle")
    (entry,) = records(stream)
    assert "job_id" not in entry and "trace_id" not in entry
    assert current_job_id.get() is None


async def test_the_job_id_follows_work_into_threads_and_does_not_leak_between_tasks(captured) -> None:
    logger, stream, _ = captured

    async def handle(job_id: str) -> None:
        with job_context(job_id):
            await asyncio.sleep(0.01)
            await asyncio.to_thread(logger.info, "in a worker thread")

    await asyncio.gather(handle("a"), handle("b"))
    assert sorted(str(e["job_id"]) for e in records(stream)) == ["a", "b"]


def test_exceptions_are_kept_in_the_record(captured) -> None:
    logger, stream, _ = captured
    try:
        raise ValueError("bad shard")
    except ValueError:
        logger.exception("upload failed")
    (entry,) = records(stream)
    assert "ValueError: bad shard" in str(entry["exception"])


def test_text_format_shows_the_same_ids_on_one_line() -> None:
    record = logging.LogRecord("stratos.x", logging.INFO, __file__, 1, "hello", None, None)
    ContextFilter("selector").filter(record)
    record.job_id = "j-9"
    assert TextFormatter().format(record).endswith("INFO    selector stratos.x: hello [job=j-9]")


def test_settings_choose_the_format_and_refuse_unknown_levels(monkeypatch) -> None:
    monkeypatch.setenv("STRATOS_LOG_FORMAT", "text")
    monkeypatch.setenv("STRATOS_LOG_LEVEL", "debug")
    settings = StratosSettings()
    assert settings.log_format == "text" and settings.log_level == "DEBUG"
    monkeypatch.setenv("STRATOS_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="log_level"):
        StratosSettings()


def write_logs(folder: Path) -> None:
    folder.mkdir()
    (folder / "selector.log").write_text(
        '{"ts": "2026-11-29T10:00:01.000+00:00", "level": "INFO", "service": "selector", "message": "placed",'
        ' "job_id": "j1"}\n'
        '{"ts": "2026-11-29T10:00:02.000+00:00", "level": "INFO", "service": "selector", "message": "placed",'
        ' "job_id": "j2"}\n'
    )
    (folder / "trainer.log").write_text(
        '{"ts": "2026-11-29T10:00:00.500+00:00", "level": "DEBUG", "service": "trainer", "message": "tick",'
        ' "job_id": "j1"}\n'
        '{"ts": "2026-11-29T10:00:03.000+00:00", "level": "ERROR", "service": "trainer", "message": "oom",'
        ' "job_id": "j1"}\n'
        "Traceback (most recent call last): a library printing to stderr\n"
    )


def test_logs_merge_services_in_time_order_and_filter_by_job_and_level(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")
    lines = list(read_logs(tmp_path / "logs"))
    assert [line.message for line in select(lines, "j1", min_level="INFO")] == ["placed", "oom"]
    assert [line.message for line in select(lines, "j1")] == ["tick", "placed", "oom"]
    assert [line.service for line in select(lines, services={"trainer"}, min_level="INFO")] == ["trainer", "trainer"]
    raw = [line for line in lines if not line.level]
    assert raw and raw[0].ts == "2026-11-29T10:00:03.000+00:00", "a raw line keeps its place after the line before"
    assert parse_line("   \n", "x") is None


def test_stratos_logs_command(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")
    result = CliRunner().invoke(app, ["logs", "j1", "--log-dir", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    assert "placed" in result.output and "oom" in result.output and "tick" not in result.output
    missing = CliRunner().invoke(app, ["logs", "nope", "--log-dir", str(tmp_path / "logs")])
    assert missing.exit_code == 1 and "no log lines for job 'nope'" in missing.output


def test_stratos_logs_json_is_one_log_line_object_per_line(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")
    result = CliRunner().invoke(app, ["logs", "j1", "--json", "--level", "DEBUG", "--log-dir", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    lines = [LogLine(**json.loads(raw)) for raw in result.stdout.splitlines()]
    assert [(line.service, line.level, line.message) for line in lines] == [
        ("trainer", "DEBUG", "tick"),
        ("selector", "INFO", "placed"),
        ("trainer", "ERROR", "oom"),
    ]
    assert {line.job_id for line in lines} == {"j1"}
