"""What `aictl task watch` shows: one cheap, read-only snapshot of the queue, and the event feed.

A snapshot is a handful of indexed queries in one read transaction: counts by
status, the next ready tasks in claim order, held tasks with their AI and latest
activity, tasks awaiting approval, and the latest failures.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field, field_serializer

from aictl.domain.models import Event, ts_to_dt
from aictl.store.base import Store, Tx
from aictl.tasks.sql import CLAIM_ORDER, HELD, claimable_where

__all__ = ["Snapshot", "events_after", "head_event_id", "snapshot"]


class WatchTask(BaseModel):
    id: int
    title: str
    status: str
    priority: int = 0
    owner: str | None = None
    ai: str | None = None
    activity: str | None = None
    since: float | None = None  # when it entered this status
    lease_expires_at: float | None = None
    reason: str | None = None  # why it failed / why it waits for approval
    schedule_id: int | None = None

    @field_serializer("since", "lease_expires_at")
    def _iso(self, v: float | None) -> str | None:
        return None if v is None else ts_to_dt(v).isoformat(timespec="milliseconds")


class Snapshot(BaseModel):
    at: float
    counts: dict[str, int] = Field(default_factory=dict)
    ready: list[WatchTask] = Field(default_factory=list)
    running: list[WatchTask] = Field(default_factory=list)
    approvals: list[WatchTask] = Field(default_factory=list)
    failures: list[WatchTask] = Field(default_factory=list)
    last_event_id: int = 0

    @field_serializer("at")
    def _iso(self, v: float) -> str:
        return ts_to_dt(v).isoformat(timespec="milliseconds")


def _task(row: dict[str, Any], **extra: Any) -> WatchTask:
    return WatchTask(
        id=row["id"],
        title=row["title"],
        status=row["status"],
        priority=row.get("priority") or 0,
        owner=row.get("owner"),
        ai=row.get("ai"),
        activity=row.get("activity"),
        since=row.get("updated_at"),
        lease_expires_at=row.get("lease_expires_at"),
        schedule_id=row.get("schedule_id"),
        **extra,
    )


def _error(result: str | None) -> str | None:
    if not result:
        return None
    try:
        value = json.loads(result)
    except ValueError:
        return result
    if isinstance(value, dict):
        return str(value.get("error") or value.get("message") or value.get("reason") or "") or None
    return str(value)


def snapshot(store: Store, *, limit: int = 10, now: float | None = None) -> Snapshot:
    now = time.time() if now is None else now
    cols = "id, title, status, priority, owner, ai, activity, updated_at, lease_expires_at, schedule_id, result"
    n = int(limit)
    with store.read() as tx:
        counts = {r["status"]: r["n"] for r in tx.all("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")}
        where, params = claimable_where(tx, capabilities=None, labels=None, task_id=None)
        ready = tx.all(
            f"SELECT t.id, t.title, t.status, t.priority, t.schedule_id FROM tasks t WHERE {where}"
            f" {CLAIM_ORDER} LIMIT {n}",
            {**params, "now": now},
        )
        running = tx.all(f"SELECT {cols} FROM tasks WHERE status IN {HELD} ORDER BY updated_at, id LIMIT {n}")
        waiting = tx.all(
            f"SELECT {cols} FROM tasks WHERE status = 'awaiting_approval' ORDER BY updated_at, id LIMIT {n}"
        )
        failed = tx.all(f"SELECT {cols} FROM tasks WHERE status = 'failed' ORDER BY updated_at DESC, id DESC LIMIT {n}")
        reasons = _approval_reasons(tx, [r["id"] for r in waiting])
        head = tx.one("SELECT last_id FROM audit_head WHERE id = 1")
    return Snapshot(
        at=now,
        counts=counts,
        ready=[_task(r) for r in ready],
        running=[_task(r) for r in running],
        approvals=[_task(r, reason=reasons.get(r["id"])) for r in waiting],
        failures=[_task(r, reason=_error(r["result"])) for r in failed],
        last_event_id=head["last_id"] if head else 0,
    )


def _approval_reasons(tx: Tx, ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for task_id in ids:  # at most `limit` tasks, each one indexed lookup
        row = tx.one(
            "SELECT data FROM events WHERE task_id = :t AND action = 'await_approval' ORDER BY id DESC LIMIT 1",
            {"t": task_id},
        )
        if row and row["data"]:
            reason = json.loads(row["data"]).get("reason")
            if reason:
                out[task_id] = reason
    return out


def head_event_id(store: Store) -> int:
    """The id of the newest audit event (0 when there is none)."""
    with store.read() as tx:
        row = tx.one("SELECT last_id FROM audit_head WHERE id = 1")
    return row["last_id"] if row else 0


def events_after(store: Store, after_id: int, limit: int = 500) -> list[Event]:
    """Audit events with id > after_id, oldest first, at most `limit`."""
    with store.read() as tx:
        rows = tx.all(f"SELECT * FROM events WHERE id > :after ORDER BY id LIMIT {int(limit)}", {"after": after_id})
    return [
        Event(
            **{
                k: (json.loads(v) if k in ("before", "after", "data") and v is not None else v)
                for k, v in r.items()
                if k in Event.model_fields
            }
        )
        for r in rows
    ]
