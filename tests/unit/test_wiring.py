"""The wiring is made from the handlers' declarations, and every copy that cannot be made from them is checked.

Generated (`make wiring`, `tools/wiring.py`): the wiring table that the NATS permissions and `stratos up` read, and the
events table of docs/architecture.md. Checked here because generating them would read worse than the files do:
docker-compose.yml (each service's environment and mounts are its own), the Prometheus targets, the Makefile's
packages and mypy's path.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from stratos_shared.bus.permissions import EVENT_PUBLISHERS, publish_subjects
from stratos_shared.bus.wiring_table import SERVICES as WIRING
from tests.compose import STRATOS, environment
from tools import wiring

ROOT = Path(__file__).resolve().parents[2]
DECLARED = wiring.declarations()
NAMES = [service.name for service in WIRING]


def test_the_wiring_table_is_what_the_handlers_declare() -> None:
    assert wiring.TABLE.read_text(encoding="utf-8") == wiring.render_table(DECLARED), "run `make wiring`"


def test_the_documents_events_table_is_what_the_handlers_declare() -> None:
    document = wiring.DOCS.read_text(encoding="utf-8")
    assert wiring.with_events(document, wiring.render_events(DECLARED)) == document, "run `make wiring`"


def test_every_service_folder_is_wired() -> None:
    folders = {path.parent.name for path in (ROOT / "services").glob("*/pyproject.toml")}
    assert folders == set(wiring.SERVICES) == set(NAMES)


def test_each_service_may_publish_what_it_declares_and_no_more() -> None:
    """The permissions are made from the table: a service that declares nothing new may publish nothing new."""
    assert {user: EVENT_PUBLISHERS[user] for user in NAMES} == {s.name: publish_subjects(s) for s in WIRING}
    assert set(EVENT_PUBLISHERS) == {*NAMES, "cli", "agent"}


def test_docker_compose_runs_every_service_as_itself() -> None:
    assert set(STRATOS) == set(NAMES)
    for service in WIRING:
        env = environment(STRATOS[service.name])
        if service.runs == "control":
            assert env["STRATOS_NATS_USER"] == service.name, service.name
        else:  # a server's worker: it logs in as its server and speaks only for it
            assert env["STRATOS_NATS_USER"] == f"server-{env['STRATOS_SERVER_ID']}", service.name


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((ROOT / "observability" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "stratos"]
    assert [name for sd in job["dns_sd_configs"] for name in sd["names"]] == NAMES


def test_every_service_is_installed_and_type_checked() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    packages = re.search(r"^PACKAGES := (.*?[^\\])$", makefile, flags=re.M | re.S)
    assert packages is not None
    installed = re.findall(r"-e services/([a-z-]+)", packages.group(1))
    mypy_path = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["mypy_path"]
    assert installed == NAMES and [p.removeprefix("services/") for p in mypy_path.split(":")[2:]] == NAMES
