"""`stratos report`: download a job's report and plots; write the Markdown and a standalone HTML page of it."""

from __future__ import annotations

import json
from pathlib import Path

from stratos_cli import client
from stratos_cli.reportpage import to_html
from stratos_shared.artifacts import NatsArtifactStore, get_file
from stratos_shared.errors import StratosError
from stratos_shared.report import JobReport, render_markdown


class ReportError(StratosError):
    """A fetched report that cannot be written safely."""


async def fetch_report(report_uri: str, folder: Path, nats_url: str | None) -> Path:
    async with client.connect(nats_url) as (_, js):
        store = NatsArtifactStore(js)
        report = JobReport.model_validate(json.loads(await store.get_bytes(report_uri)))
        plots: dict[str, Path] = {}
        for name, uri in report.plots.items():
            plots[name] = plot_path(folder, name)
            await get_file(store, uri, plots[name])
    (folder / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    markdown = render_markdown(report.model_copy(update={"plots": {n: p.name for n, p in plots.items()}}))
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    (folder / "report.html").write_text(to_html(report, plots), encoding="utf-8")
    return folder


def plot_path(folder: Path, name: str) -> Path:
    """Where plot `name` is written: ``<folder>/<name>.png``, refused unless it stays inside `folder` and is not
    a symbolic link (JobReport already admits only plain names; this holds whatever reached us)."""
    target = folder / f"{name}.png"
    if target.parent != folder or target.is_symlink() or not target.resolve().is_relative_to(folder.resolve()):
        raise ReportError(f"report plot name {name[:80]!r} would be written outside the report folder {folder}")
    return target
