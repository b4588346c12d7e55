"""Inventory rules, free of messaging: heartbeat deadlines and up/down transitions."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratos_shared.contracts.servers import ServerLiveness, ServerRecord, ServerSpec, WorkerBeat

HEARTBEAT_TIMEOUT = "heartbeat-timeout"


@dataclass
class HeartbeatTracker:
    """Last heartbeat per server and worker (wall-clock time, so it can be stored and outlive the process).

    Seeded from the ``stratos-liveness`` bucket at start-up: an inventory restarted while a server dies
    still knows when that server last spoke, and reports it a full timeout after it started listening.
    """

    timeout_s: float
    servers: dict[str, ServerLiveness] = field(default_factory=dict)
    watching_since: float = 0.0
    """When this tracker began to listen. Beats sent while no inventory ran were heard by no one, so that silence
    is not the server's: every server gets a full timeout from here (as a new Nomad leader resets every node's
    timer), and a restarted inventory declares no healthy server down."""

    def beat(self, server_id: str, worker: str, service: str, jobs: list[str], now: float) -> ServerLiveness:
        before = self.servers.get(server_id)
        workers = {
            name: w for name, w in (before.workers if before else {}).items() if now - w.seen_at <= 10 * self.timeout_s
        }
        workers[worker] = WorkerBeat(service=service, jobs=jobs, seen_at=now)
        record = ServerLiveness(server_id=server_id, last_seen=now, workers=workers)
        self.servers[server_id] = record
        return record

    def load(self, record: ServerLiveness) -> None:
        current = self.servers.get(record.server_id)
        if current is None or current.last_seen < record.last_seen:
            self.servers[record.server_id] = record

    def silent(self, now: float) -> list[str]:
        """Servers silent for longer than the timeout (each reported until it beats again)."""
        heard = self.watching_since
        return sorted(sid for sid, seen in self.servers.items() if now - max(seen.last_seen, heard) > self.timeout_s)


def registered(spec: ServerSpec, current: ServerRecord | None) -> ServerRecord | None:
    """The record after loading `spec` from a catalog: new servers come up; known ones keep their status."""
    if current is None:
        return ServerRecord(spec=spec)
    if current.spec == spec:
        return None
    return current.model_copy(update={"spec": spec})


def mark_down(current: ServerRecord | None, reason: str) -> ServerRecord | None:
    """Up -> down; None (no write, no event) when unknown or already down, so only one ServerDown is published."""
    if current is None or current.status == "down":
        return None
    return ServerRecord(spec=current.spec, status="down", reason=reason, monitored=current.monitored)


def mark_up(current: ServerRecord | None, monitored: bool) -> ServerRecord | None:
    """Down -> up (or first heartbeat of an up server: now monitored); None when nothing changes.

    A heartbeat (`monitored`) brings back only a server that went down from silence: one an operator
    drained stays down while its workers keep beating, until `stratos server up`.
    """
    if current is None:
        return None
    if current.status == "up" and (current.monitored or not monitored):
        return None
    if current.status == "down" and monitored and current.reason != HEARTBEAT_TIMEOUT:
        return None
    return ServerRecord(spec=current.spec, status="up", monitored=current.monitored or monitored)
