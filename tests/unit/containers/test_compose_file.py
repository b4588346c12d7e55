"""docker-compose.yml checked against the code, since no container engine runs here: each service runs a real
entry point, sets only variables its settings read (and they validate), mounts what those settings point at, publishes
the ports its processes listen on, and NATS is the version the tests run."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from stratos_shared.contracts.job import JobSpec
from stratos_shared.embedded import find_nats_server
from stratos_shared.settings import StratosSettings, TeacherClientSettings
from stratos_shared.teacher.simulator import build_parser, load_config
from tests.compose import (
    AUTH_VOLUME,
    COMPOSE,
    COMPOSE_TEXT,
    ROOT,
    SERVICES,
    STRATOS,
    defaults,
    environment,
    host_path,
    mounts,
    run_nats_auth,
)

DOCKERFILE = (ROOT / "docker" / "service.Dockerfile").read_text(encoding="utf-8")
NOT_SETTINGS = {"OTEL_EXPORTER_OTLP_ENDPOINT": ROOT / "shared" / "stratos_shared" / "telemetry.py"}
"""Variables a library reads rather than a settings class, and the file that hands them on."""


def settings_class(name: str) -> type[StratosSettings]:
    module = importlib.import_module(f"stratos_{name.replace('-', '_')}.settings")
    found = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    settings = [c for c in found if issubclass(c, StratosSettings)]
    assert len(settings) == 1, f"{module.__name__} should define one settings class, found {settings}"
    return settings[0]


def image_env(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", DOCKERFILE)
    assert match, f"{name} is not set in docker/service.Dockerfile"
    return match.group(1)


ServiceEnv = Callable[[dict[str, Any]], dict[str, str]]


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ServiceEnv:
    """Set exactly a service's environment (the image's STRATOS_HOME, then the compose file's), with its NATS
    password file read from what the `nats-auth` service's command wrote."""
    run_nats_auth(tmp_path)

    def apply(service: dict[str, Any]) -> dict[str, str]:
        for key in list(os.environ):
            if key.startswith(("STRATOS_", "NATS_", "TEACHER_KEY_")):
                monkeypatch.delenv(key)
        env = {"STRATOS_HOME": image_env("STRATOS_HOME"), **environment(service)}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        if "STRATOS_NATS_PASSWORD_FILE" in env:
            found = host_path(service, PurePosixPath(env["STRATOS_NATS_PASSWORD_FILE"]), {AUTH_VOLUME: tmp_path})
            assert found is not None, f"{env['STRATOS_NATS_PASSWORD_FILE']} is not on the {AUTH_VOLUME} volume"
            monkeypatch.setenv("STRATOS_NATS_PASSWORD_FILE", str(found))
        return env

    return apply


@pytest.mark.parametrize("name", sorted(STRATOS))
def test_each_service_runs_its_packages_entry_point(name: str) -> None:
    service = STRATOS[name]
    assert service["build"]["args"]["SERVICE"] == name
    assert 'exec stratos-$SERVICE"]' in DOCKERFILE
    scripts = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts[f"stratos-{name}"].split(":")
    source = ROOT / "services" / name / (module.replace(".", "/") + ".py")
    defined = {node.name for node in ast.parse(source.read_text()).body if isinstance(node, ast.FunctionDef)}
    assert function in defined, f"{scripts[f'stratos-{name}']} is not defined"


@pytest.mark.parametrize("name", sorted(STRATOS))
def test_each_variable_is_one_the_services_settings_read_and_the_values_validate(
    name: str, service_env: ServiceEnv
) -> None:
    cls = settings_class(name)
    env = service_env(STRATOS[name])
    read = {f"STRATOS_{field.upper()}" for field in cls.model_fields} | {"NATS_URL"}
    for key in env:
        if key in NOT_SETTINGS:
            assert key in NOT_SETTINGS[key].read_text(), f"{key} is not read by {NOT_SETTINGS[key].name}"
        elif key.startswith("TEACHER_KEY_"):
            assert any(key.startswith(p) for p in cls().secret_env_prefixes), f"{key}: not a resolvable key"
        else:
            assert key in read, f"{name}: {key} is not a setting of {cls.__name__}"
    cls()  # the values as the service reads them at start-up (a worker's server id, the port range, JSON lists)


@pytest.mark.parametrize("name", sorted(STRATOS))
def test_the_paths_the_settings_use_are_mounted(name: str, service_env: ServiceEnv) -> None:
    service_env(STRATOS[name])
    settings = settings_class(name)()
    service, declared = STRATOS[name], set(COMPOSE.get("volumes") or {})
    paths = [settings.home]
    if catalog := getattr(settings, "catalog", None):
        paths.append(catalog)
    for path in (PurePosixPath(p) for p in paths):
        targets = [t for t in mounts(service) if t == path or t in path.parents]
        assert targets, f"{name}: {path} is not on a volume (its contents would vanish or not exist)"
    if name == "selector":  # admission reads a job's data file (once; stages use its snapshot)
        data_root = PurePosixPath(settings.data_root)
        assert any(data_root in (t, *t.parents) for t in mounts(service)), f"nothing is mounted under {data_root}"
    for source in mounts(service).values():
        assert (ROOT / source).exists() if source.startswith("./") else source in declared, source
    if isinstance(settings, TeacherClientSettings):  # it resolves teacher keys: file references need the files
        assert service.get("secrets") and [str(d) for d in settings.secrets_dirs or []] == ["/run/secrets"], name
    for secret in service.get("secrets", []):
        assert (ROOT / defaults(COMPOSE["secrets"][secret]["file"])).is_file(), secret


def test_the_example_jobs_data_is_where_the_selector_looks() -> None:
    selector = STRATOS["selector"]
    data_root = PurePosixPath(environment(selector)["STRATOS_DATA_ROOT"])
    for spec_file in sorted((ROOT / "examples").rglob("*.yaml")):
        task = yaml.safe_load(spec_file.read_text()).get("task") or {}
        if task.get("path"):
            found = host_path(selector, data_root / JobSpec.from_yaml(spec_file).task.path)  # type: ignore[operator]
            assert found is not None and found.is_file(), f"{spec_file.name}: {task['path']} is not mounted"


def test_the_teacher_simulator_service_serves_the_examples_config_on_its_published_port() -> None:
    sim = SERVICES["teacher-sim"]
    command = sim["command"]
    assert command[:3] == ["python", "-m", "stratos_shared.teacher.simulator"]
    assert importlib.util.find_spec(command[2]) is not None
    args = build_parser().parse_args(command[3:])
    config = host_path(sim, PurePosixPath(args.config))
    assert config is not None and load_config(config).models, args.config
    assert [p.split(":")[-1] for p in sim["ports"]] == [str(args.port)]
    url = f"http://teacher-sim:{args.port}/v1"
    assert f"--teacher-url {url}" in COMPOSE_TEXT  # the documented command reaches it
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml").with_teachers(base_url=url)
    models = {t.model for t in spec.teachers}
    assert models <= set(load_config(config).models), f"the simulator does not serve {models}"


def test_published_ports_are_the_ones_the_processes_listen_on() -> None:
    scrape = yaml.safe_load((ROOT / "observability" / "prometheus" / "prometheus.yml").read_text())
    target = scrape["scrape_configs"][0]["dns_sd_configs"][0]
    metrics = {
        n: e["STRATOS_METRICS_PORT"] for n, s in STRATOS.items() if "STRATOS_METRICS_PORT" in (e := environment(s))
    }
    assert set(target["names"]) == set(metrics) == set(STRATOS)
    assert set(metrics.values()) == {str(target["port"])}
    deployer = environment(STRATOS["deployer"])
    assert STRATOS["deployer"]["ports"] == [
        f"127.0.0.1:{deployer['STRATOS_SERVING_PORTS']}:" + deployer["STRATOS_SERVING_PORTS"]
    ]
    nats = SERVICES["nats"]
    monitor = nats["command"][nats["command"].index("-m") + 1]
    assert f"localhost:{monitor}/healthz" in nats["healthcheck"]["test"][-1]
    assert nats["ports"] == ["127.0.0.1:4222:4222", f"127.0.0.1:{monitor}:{monitor}"]  # no auth: this host only


def test_nats_is_the_version_the_tests_run() -> None:
    version = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True, check=True).stdout
    wheel = re.search(r"v(\d+\.\d+\.\d+)", version)
    assert wheel is not None, version
    images = {s["image"] for s in SERVICES.values() if str(s.get("image", "")).startswith("nats:")}
    assert images == {f"nats:{wheel.group(1)}-alpine"}


def test_the_cluster_profile_is_three_routed_nodes_the_services_can_use() -> None:
    nodes = {n: s for n, s in SERVICES.items() if "cluster" in s.get("profiles", [])}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    for name, node in nodes.items():
        command = node["command"]
        assert command[command.index("-n") + 1] == name and command[command.index("--cluster_name") + 1] == "stratos"
        routes = set(command[command.index("--routes") + 1].split(","))
        assert routes == {f"nats://{other}:6222" for other in nodes if other != name}
        assert mounts(node)[PurePosixPath("/data")] == name and name in COMPOSE["volumes"]
    documented = re.search(r"COMPOSE_NATS_URL=(\S+) COMPOSE_REPLICAS=(\d)", COMPOSE_TEXT)
    assert documented is not None
    assert documented.group(1) == ",".join(f"nats://{n}:4222" for n in sorted(nodes)) and documented.group(2) == "3"
    env = STRATOS["selector"]["environment"]
    assert env["NATS_URL"].startswith("${COMPOSE_NATS_URL:-") and env["STRATOS_REPLICAS"].startswith(
        "${COMPOSE_REPLICAS:-"
    )
    StratosSettings(nats_url=documented.group(1), replicas=int(documented.group(2)))


def test_the_workers_server_is_in_the_catalog_the_inventory_loads() -> None:
    from stratos_shared.catalog import load_catalog

    inventory = STRATOS["inventory"]
    catalog = host_path(inventory, PurePosixPath(environment(inventory)["STRATOS_CATALOG"]))
    assert catalog is not None, "the catalog is not mounted from the repository"
    ids = {server.id for server in load_catalog(catalog)}
    for name in ("trainer", "deployer"):
        assert environment(STRATOS[name])["STRATOS_SERVER_ID"] in ids, name


def test_each_service_logs_in_as_a_user_that_nats_auth_writes_and_nats_reads(tmp_path: Path) -> None:
    args = run_nats_auth(tmp_path)
    users = {path.name for path in (tmp_path / "users").iterdir()}
    servers = args[args.index("--servers") + 1 :]
    assert servers == sorted({environment(STRATOS[n])["STRATOS_SERVER_ID"] for n in ("trainer", "deployer")})
    for name, service in STRATOS.items():
        env = environment(service)
        expected = f"server-{env['STRATOS_SERVER_ID']}" if "STRATOS_SERVER_ID" in env else name
        assert env["STRATOS_NATS_USER"] == expected and expected in users, name  # a worker speaks for its server
        assert mounts(service)[PurePosixPath("/run/nats")] == AUTH_VOLUME
        assert env["STRATOS_NATS_PASSWORD_FILE"] == f"/run/nats/users/{expected}"
    assert "cli" in users  # what the CLI on the host logs in as (the header says how to read it)
    assert re.search(r"--uid (\d+)", DOCKERFILE).group(1) == args[args.index("--owner") + 1]  # type: ignore[union-attr]
    config = (ROOT / "observability" / "nats" / "stratos.conf").read_text()
    included = PurePosixPath(re.search(r'include "([^"]+)"', config).group(1))  # type: ignore[union-attr]
    for name in ("nats", "nats-1", "nats-2", "nats-3"):
        node = SERVICES[name]
        conf = PurePosixPath(node["command"][node["command"].index("-c") + 1])
        found = host_path(node, conf.parent / included, {AUTH_VOLUME: tmp_path})
        assert found is not None and found.is_file(), f"{name}: {conf.parent / included} is not the auth volume's"
        assert node["depends_on"]["nats-auth"] == {"condition": "service_completed_successfully"}


def test_nats_auth_keeps_the_passwords_it_wrote(tmp_path: Path) -> None:
    run_nats_auth(tmp_path)
    first = {path.name: path.read_text() for path in (tmp_path / "users").iterdir()}
    run_nats_auth(tmp_path)
    assert {path.name: path.read_text() for path in (tmp_path / "users").iterdir()} == first
    assert all(oct(path.stat().st_mode & 0o777) == "0o600" for path in (tmp_path / "users").iterdir())


def test_a_password_file_that_cannot_be_read_stops_the_service_saying_which(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=f"nats_password_file {tmp_path / 'nope'}: No such file or directory"):
        StratosSettings(nats_user="selector", nats_password_file=tmp_path / "nope")
    (tmp_path / "pw").write_text("s3cret\n")
    assert StratosSettings(nats_password_file=tmp_path / "pw").nats_password == "s3cret"
    assert StratosSettings(nats_password="given", nats_password_file=tmp_path / "pw").nats_password == "given"
