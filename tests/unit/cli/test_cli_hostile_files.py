"""The CLI reads and writes files a user named: spec files are read bounded with one-line errors, an export never
writes through a link or into a folder that holds something else, a report never writes outside its folder and
is printed as text."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from stratos_cli import app as cli_app
from stratos_cli import reports
from stratos_cli.exporting import target_problem
from stratos_shared.contracts.job import MAX_SPEC_BYTES
from stratos_shared.jobs import JobState
from stratos_shared.report import JobReport
from tests.reports import LEGACY_REPORT


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stratos(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRATOS_HOME": str(home), "NATS_URL": f"nats://127.0.0.1:{closed_port()}", "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "stratos_cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.timeout(60)
def test_spec_files_that_are_not_small_regular_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "huge.yaml").write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    cases = {
        "/dev/zero": "is not a regular file (a device)",
        str(tmp_path / "pipe.yaml"): "is not a regular file (a FIFO)",
        str(tmp_path / "folder.yaml"): "is not a regular file (a directory)",
        str(tmp_path / "huge.yaml"): f"is larger than {MAX_SPEC_BYTES} bytes",
    }
    for path, phrase in cases.items():
        line = one_error_line(stratos("submit", path, home=tmp_path))
        assert line.startswith("error: job spec") and phrase in line, (path, line)


def test_a_yaml_error_is_one_line_naming_line_and_column(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\ntask:\n  kind: [math\n  size: 3\n")
    line = one_error_line(stratos("submit", str(spec), home=tmp_path))
    assert line.startswith(f"error: {spec}:") and "not valid YAML" in line, line
    location = line.removeprefix(f"error: {spec}:").split(":")[:2]
    assert all(part.isdigit() for part in location), line


def test_export_refuses_links_and_folders_that_hold_something(tmp_path: Path) -> None:
    assert target_problem(tmp_path / "new", force=False) is None
    assert target_problem(tmp_path, force=False) is None  # empty
    (tmp_path / "other.txt").write_text("mine")
    assert "is not empty" in (target_problem(tmp_path, force=False) or "")
    assert target_problem(tmp_path, force=True) is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    assert "symbolic link" in (target_problem(tmp_path / "link", force=True) or "")
    (tmp_path / "model").symlink_to(elsewhere)
    assert "model is a symbolic link" in (target_problem(tmp_path, force=True) or "")


def test_report_plot_names_stay_inside_the_report_folder(tmp_path: Path) -> None:
    for name in ("../../evil", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(ValidationError, match="plot name"):
            JobReport.model_validate({**REPORT, "plots": {name: "nats-obj://b/o"}})
    with pytest.raises(reports.ReportError, match="outside the report folder"):
        reports.plot_path(tmp_path, "../evil")
    (tmp_path / "loss.png").symlink_to(tmp_path.parent / "x.png")
    with pytest.raises(reports.ReportError):
        reports.plot_path(tmp_path, "loss")
    assert reports.plot_path(tmp_path, "accuracy") == tmp_path / "accuracy.png"


REPORT: dict[str, Any] = json.loads(LEGACY_REPORT.read_text(encoding="utf-8"))


def test_report_prints_markdown_as_text_not_rich_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    markdown = "# report [bold red]not markup[/] and [link=http://x]y[/link]\n"

    async def state(job_id: str, url: str | None) -> JobState:
        return JobState(job_id=job_id, report_uri="nats-obj://stratos-artifacts/j/report.json")

    async def fetch(uri: str, folder: Path, url: str | None) -> Path:
        folder.mkdir(parents=True)
        (folder / "report.md").write_text(markdown)
        return folder

    monkeypatch.setattr(cli_app, "_get_state", state)
    monkeypatch.setattr(reports, "fetch_report", fetch)
    done = CliRunner().invoke(cli_app.app, ["report", "j", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert markdown.strip() in done.output
