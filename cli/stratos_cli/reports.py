"""`stratos report`: download a job's report and plots; write the Markdown and a standalone HTML page of it."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from markdown_it import MarkdownIt

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
        plots: dict[str, Path] = {}
        for name, uri in report.plots.items():
            plots[name] = plot_path(folder, name)
            await get_file(store, uri, plots[name])
    (folder / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    markdown = render_markdown(report.model_copy(update={"plots": {n: p.name for n, p in plots.items()}}))
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    (folder / "report.html").write_text(to_html(report, plots), encoding="utf-8")
    return folder


STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}"
    "th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}code{background:#f3f3f3;padding:0 .2em}"
    "figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{text-align:center;color:#555}"
)


def to_html(report: JobReport, plots: dict[str, Path]) -> str:
    """One standalone page: the report's Markdown rendered by markdown-it (tables as tables) with the plots embedded
    as data URIs, so the file alone can be mailed or archived. Raw HTML in the Markdown is escaped, not kept: the
    report holds names and reasons written by users and teachers."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = renderer.render(render_markdown(report.model_copy(update={"plots": {}})))
    figures = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" '
        f'alt="{html.escape(name)} plot"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, path in plots.items()
    )
    plots_section = f"<h2>Plots</h2>{figures}" if figures else ""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Stratos report {html.escape(report.name)} ({html.escape(report.job_id)})</title>"
        f"<style>{STYLE}</style></head><body>{body}{plots_section}</body></html>"
    )


def plot_path(folder: Path, name: str) -> Path:
    """Where plot `name` is written: ``<folder>/<name>.png``, refused unless it stays inside `folder` and is not
    a symbolic link (JobReport already admits only plain names; this holds whatever reached us)."""
    target = folder / f"{name}.png"
    if target.parent != folder or target.is_symlink() or not target.resolve().is_relative_to(folder.resolve()):
        raise ReportError(f"report plot name {name[:80]!r} would be written outside the report folder {folder}")
    return target
