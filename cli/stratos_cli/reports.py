"""`stratos report`: download a job's report and plots, and write an HTML page beside the Markdown."""

from __future__ import annotations

import html
import json
from pathlib import Path

from stratos_cli import client
from stratos_shared.artifacts import NatsArtifactStore, get_file
from stratos_shared.errors import StratosError
from stratos_shared.report import JobReport, render_markdown


class ReportError(StratosError):
    """A fetched report that cannot be written safely."""


async def fetch_report(report_uri: str, folder: Path, nats_url: str | None) -> Path:
    async with client.connect(nats_url) as (_, js):
        store = NatsArtifactStore(js)
        report = JobReport.model_validate(json.loads(await store.get_bytes(report_uri)))
        images: dict[str, str] = {}
        for name, uri in report.plots.items():
            await get_file(store, uri, plot_path(folder, name))
            images[name] = f"{name}.png"
    (folder / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    markdown = render_markdown(report.model_copy(update={"plots": images}))
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    (folder / "report.html").write_text(to_html(report, markdown, images), encoding="utf-8")
    return folder


def to_html(report: JobReport, markdown: str, images: dict[str, str]) -> str:
    """A standalone page: the Markdown as preformatted text plus the plots inline."""
    figures = "".join(
        f'<figure><img src="{html.escape(p)}" alt="{html.escape(n)}"></figure>' for n, p in images.items()
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>Stratos report {html.escape(report.job_id)}</title>"
        "<style>body{font:14px system-ui;max-width:60em;margin:2em auto}pre{white-space:pre-wrap}"
        "figure{display:inline-block;margin:.5em}</style>"
        f"<pre>{html.escape(markdown)}</pre>{figures}"
    )


def plot_path(folder: Path, name: str) -> Path:
    """Where plot `name` is written: ``<folder>/<name>.png``, refused unless it stays inside `folder` and is not
    a symbolic link (JobReport already admits only plain names; this holds whatever reached us)."""
    target = folder / f"{name}.png"
    if target.parent != folder or target.is_symlink() or not target.resolve().is_relative_to(folder.resolve()):
        raise ReportError(f"report plot name {name[:80]!r} would be written outside the report folder {folder}")
    return target
