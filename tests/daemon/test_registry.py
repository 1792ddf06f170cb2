"""The daemons table on both backends: register, heartbeat, stale marking, sign-off, pruning, audit events."""

from __future__ import annotations

from aictl.daemon.registry import KEEP_STOPPED_S, STALE_AFTER_S, DaemonRegistry
from aictl.store import open_store


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_register_heartbeat_stale_and_stop(store_url):
    store = open_store(store_url)
    clock = Clock()
    reg = DaemonRegistry(store, clock=clock)
    info = {"workers": {"total": 2, "busy": 0, "idle": 2}}
    reg.register("d-a", project="/srv/a", info=info, actor="ops@a", pid=11, host="host-a")
    reg.register("d-b", project="/srv/b", info=info, actor="ops@b", pid=22, host="host-b")
    assert [(d["id"], d["status"], d["host"]) for d in reg.list()] == [
        ("d-a", "running", "host-a"),
        ("d-b", "running", "host-b"),
    ]
    clock.t += STALE_AFTER_S / 2
    assert reg.heartbeat("d-a", status="running", info={"workers": {"total": 2, "busy": 1, "idle": 1}})
    clock.t += STALE_AFTER_S / 2 + 1  # d-b has been silent longer than STALE_AFTER_S, d-a has not
    rows = {d["id"]: d for d in reg.list()}
    assert rows["d-a"]["status"] == "running" and not rows["d-a"]["stale"]
    assert rows["d-a"]["info"]["workers"]["busy"] == 1
    assert rows["d-b"]["status"] == "stale" and rows["d-b"]["stale"]

    assert reg.mark_stopped("d-b", actor="ops@a", reason="found dead") is True
    assert reg.mark_stopped("d-b", actor="ops@a", reason="again") is False  # already stopped: no second event
    assert reg.heartbeat("d-b", status="running", info={}) is False  # a stopped daemon is not revived
    rows = {d["id"]: d for d in reg.list()}
    assert rows["d-b"]["status"] == "stopped" and rows["d-b"]["stopped_at"] == clock.t
    assert [d["id"] for d in reg.list(include_stopped_since=clock.t + 1)] == ["d-a"]

    with store.read() as tx:
        events = tx.all("SELECT action, actor, task_id FROM events ORDER BY id")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("daemon_start", "ops@a"),
        ("daemon_start", "ops@b"),
        ("daemon_stop", "ops@a"),
    ]
    assert all(e["task_id"] is None for e in events)

    clock.t += KEEP_STOPPED_S + 1  # a week later, the next registration prunes the old stopped row
    reg.register("d-c", project="/srv/a", info=info, actor="ops@a", pid=33, host="host-a")
    with store.read() as tx:
        assert [r["id"] for r in tx.all("SELECT id FROM daemons ORDER BY id")] == ["d-a", "d-c"]
    store.close()
