"""Server sources: the YAML catalog and a PPIO-style products API (recorded response, real HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stratos_inventory.domain import HeartbeatTracker, mark_down, mark_up, registered
from stratos_inventory.settings import InventorySettings
from stratos_inventory.sources.catalog import CatalogError, load_catalog
from stratos_inventory.sources.ppio import ProductsApiError, fetch_servers
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord
from stratos_shared.settings import WorkerSettings

RECORDED = Path(__file__).parent / "data" / "ppio_products.json"
ROOT = Path(__file__).parents[3]


@pytest.fixture
def products_api() -> Iterator[str]:
    """A local HTTP server replaying the recorded products response (and a 500 on /broken)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/broken":
                self.send_response(500)
                self.end_headers()
                return
            body = RECORDED.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_ppio_products_become_servers(products_api: str) -> None:
    servers = await fetch_servers(f"{products_api}/v2/products", {"us-east-1": 30.0, "eu-west-1": 95.0})
    by_id = {s.id: s for s in servers}
    assert sorted(by_id) == ["prod-4090-ap-southeast-1", "prod-a100-80g-eu-west-1", "prod-a100-80g-us-east-1"]
    a100 = by_id["prod-a100-80g-us-east-1"]
    assert a100.cost_per_hour == pytest.approx(1.89)  # 18900 / 10^4
    assert a100.gpu_memory_gb == 80 and a100.latency_ms == 30.0 and a100.capacity == 3
    assert by_id["prod-a100-80g-eu-west-1"].latency_ms == 95.0
    assert by_id["prod-4090-ap-southeast-1"].latency_ms == 100.0  # no configured latency: the documented default


async def test_ppio_errors_are_clear(products_api: str) -> None:
    with pytest.raises(ProductsApiError, match="cannot read GPU products"):
        await fetch_servers(f"{products_api}/broken", {})


def test_catalog_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "servers.yaml"
    bad.write_text("servers:\n  - {id: a, cost_per_hour: -1, latency_ms: 5}\n")
    with pytest.raises(CatalogError, match=r"servers\.yaml.*servers\.0\.cost_per_hour"):
        load_catalog(bad)
    assert len(load_catalog(ROOT / "examples" / "servers.yaml")) == 8


def test_up_down_transitions_happen_once() -> None:
    record = registered(load_catalog(ROOT / "examples" / "servers.yaml")[0], None)
    assert record is not None
    down = mark_down(record, "heartbeat-timeout")
    assert down is not None and down.status == "down"
    assert mark_down(down, "operator") is None  # already down: no second ServerDown
    up = mark_up(down, monitored=True)  # it beats again after its silence: back up
    assert isinstance(up, ServerRecord) and up.status == "up" and up.monitored
    tracker = HeartbeatTracker(timeout_s=5)
    tracker.beat("a", "trainer-1", "trainer", [], now=100.0)
    assert tracker.silent(now=104.0) == [] and tracker.silent(now=106.0) == ["a"]


def test_an_operator_drain_outlasts_the_servers_heartbeats() -> None:
    """`stratos server down` on a server whose workers still beat: it stays down until `stratos server up`."""
    record = mark_up(registered(load_catalog(ROOT / "examples" / "servers.yaml")[0], None), monitored=True)
    drained = mark_down(record, "operator")
    assert drained is not None and drained.monitored
    assert mark_up(drained, monitored=True) is None  # a heartbeat does not undo the drain
    back = mark_up(drained, monitored=False)  # the operator's `server up`
    assert back is not None and back.status == "up" and back.monitored


def test_a_restarted_tracker_keeps_the_deadline_it_loads() -> None:
    """Deadlines are wall-clock times stored in KV: a new tracker seeded with them reports the same silence."""
    first = HeartbeatTracker(timeout_s=5)
    stored = first.beat("a", "deployer-1", "deployer", ["job-1"], now=1000.0)
    second = HeartbeatTracker(timeout_s=5)
    second.load(ServerLiveness.model_validate_json(stored.model_dump_json()))
    assert second.silent(now=1004.0) == [] and second.silent(now=1006.0) == ["a"]
    assert stored.live_workers(1004.0, 5)["deployer-1"].jobs == ["job-1"]
    assert stored.live_workers(1006.0, 5) == {}


def test_a_tracker_restarted_after_a_long_gap_gives_every_server_a_full_timeout() -> None:
    """Restarted at 2000 s, an hour after the last stored beat: no server is silent before 2005 s (the beats in
    between reached no inventory), and one that really died is reported then."""
    stored = HeartbeatTracker(timeout_s=5).beat("a", "trainer-1", "trainer", [], now=1000.0)
    restarted = HeartbeatTracker(timeout_s=5, watching_since=2000.0)
    restarted.load(stored)
    assert restarted.silent(now=2000.5) == [] and restarted.silent(now=2004.0) == []
    assert restarted.silent(now=2006.0) == ["a"]
    restarted.beat("a", "trainer-1", "trainer", [], now=2001.0)
    assert restarted.silent(now=2006.0) == [] and restarted.silent(now=2006.5) == ["a"]


def test_default_timings_notice_a_dead_server_within_10_s() -> None:
    """The last beat is no later than the death; silence is noticed at most one check after the timeout."""
    worker, inventory = WorkerSettings(server_id="x"), InventorySettings()  # type: ignore[call-arg]
    assert inventory.heartbeat_timeout_s + inventory.heartbeat_check_s <= 10.0
    assert worker.heartbeat_s * 3 <= inventory.heartbeat_timeout_s  # two lost beats are not a death
    # a worker fences itself no later than the inventory declares it dead
    assert worker.fence_after_s <= inventory.heartbeat_timeout_s
