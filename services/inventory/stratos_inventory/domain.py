"""Inventory rules, free of messaging: heartbeat deadlines and up/down transitions."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratos_shared.contracts.servers import ServerRecord, ServerSpec


@dataclass
class HeartbeatTracker:
    """Last heartbeat per server; reports servers whose silence exceeded the timeout."""

    timeout_s: float
    last_seen: dict[str, float] = field(default_factory=dict)

    def beat(self, server_id: str, now: float) -> None:
        self.last_seen[server_id] = now

    def silent(self, now: float) -> list[str]:
        """Servers silent for longer than the timeout (each reported until it beats again or is forgotten)."""
        return sorted(sid for sid, seen in self.last_seen.items() if now - seen > self.timeout_s)

    def forget(self, server_id: str) -> None:
        self.last_seen.pop(server_id, None)


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
    """Down -> up (or first heartbeat of an up server: now monitored); None when nothing changes."""
    if current is None:
        return None
    if current.status == "up" and (current.monitored or not monitored):
        return None
    return ServerRecord(spec=current.spec, status="up", monitored=current.monitored or monitored)
