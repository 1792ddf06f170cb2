"""The `daemons` table: every daemon registers, heartbeats and signs off, so any machine sees them all.

A row whose status is running/draining but whose heartbeat is older than
`STALE_AFTER_S` belongs to a daemon that died without signing off (SIGKILL, a lost
machine); `list()` marks it stale. Its tasks need no help: their leases expire.
Start and stop are audit events too (action daemon_start / daemon_stop).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from aictl.audit.events import append_event, canonical_json
from aictl.store.base import Store

STALE_AFTER_S = 30.0
KEEP_STOPPED_S = 7 * 86400  # rows of stopped daemons are pruned after a week


class DaemonRegistry:
    def __init__(self, store: Store, *, clock: Any = time.time):
        self.store = store
        self.clock = clock

    def register(
        self,
        daemon_id: str,
        *,
        project: str | None,
        info: dict[str, Any],
        actor: str,
        pid: int | None = None,
        host: str | None = None,
    ) -> None:
        now = self.clock()
        host = host or socket.gethostname()
        pid = pid if pid is not None else os.getpid()
        with self.store.write() as tx:
            tx.run("DELETE FROM daemons WHERE status = 'stopped' AND stopped_at < :old", {"old": now - KEEP_STOPPED_S})
            tx.run(
                "INSERT INTO daemons (id, host, pid, project, status, started_at, heartbeat_at, info)"
                " VALUES (:id, :host, :pid, :project, 'running', :now, :now, :info)",
                {
                    "id": daemon_id,
                    "host": host,
                    "pid": pid,
                    "project": project,
                    "now": now,
                    "info": canonical_json(info),
                },
            )
            append_event(
                tx,
                ts=now,
                actor=actor,
                action="daemon_start",
                data={
                    "daemon": daemon_id,
                    "host": host,
                    "pid": pid,
                    "project": project,
                    "workers": info.get("workers", {}).get("total"),
                },
            )

    def heartbeat(self, daemon_id: str, *, status: str, info: dict[str, Any]) -> bool:
        """False when the row is gone or already stopped (someone declared us dead): the caller re-registers."""
        with self.store.write() as tx:
            n = tx.run(
                "UPDATE daemons SET heartbeat_at = :now, status = :st, info = :info"
                " WHERE id = :id AND status != 'stopped'",
                {"now": self.clock(), "st": status, "info": canonical_json(info), "id": daemon_id},
            )
        return n > 0

    def mark_stopped(self, daemon_id: str, *, actor: str, reason: str, info: dict[str, Any] | None = None) -> bool:
        now = self.clock()
        with self.store.write() as tx:
            row = tx.one(
                "UPDATE daemons SET status = 'stopped', stopped_at = :now, heartbeat_at = :now,"
                " info = COALESCE(:info, info) WHERE id = :id AND status != 'stopped' RETURNING id, host, pid",
                {"now": now, "id": daemon_id, "info": None if info is None else canonical_json(info)},
            )
            if row is None:
                return False
            append_event(
                tx,
                ts=now,
                actor=actor,
                action="daemon_stop",
                data={"daemon": daemon_id, "host": row["host"], "pid": row["pid"], "reason": reason},
            )
        return True

    def list(self, *, include_stopped_since: float | None = None) -> list[dict[str, Any]]:
        """Every live daemon (stale ones marked), plus those stopped after `include_stopped_since`."""
        now = self.clock()
        since = include_stopped_since if include_stopped_since is not None else now - 86400
        with self.store.read() as tx:
            rows = tx.all(
                "SELECT * FROM daemons WHERE status != 'stopped' OR stopped_at >= :since ORDER BY started_at, id",
                {"since": since},
            )
        out = []
        for r in rows:
            info = json.loads(r["info"]) if isinstance(r["info"], str) else (r["info"] or {})
            stale = r["status"] != "stopped" and now - r["heartbeat_at"] > STALE_AFTER_S
            out.append(
                {
                    "id": r["id"],
                    "host": r["host"],
                    "pid": r["pid"],
                    "project": r["project"],
                    "status": "stale" if stale else r["status"],
                    "stale": stale,
                    "started_at": r["started_at"],
                    "heartbeat_at": r["heartbeat_at"],
                    "heartbeat_age_s": round(now - r["heartbeat_at"], 1),
                    "stopped_at": r["stopped_at"],
                    "info": info,
                }
            )
        return out
