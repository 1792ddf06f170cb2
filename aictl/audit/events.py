"""Append one audit event inside the caller's transaction."""

from __future__ import annotations

import json
from typing import Any

from aictl.store.base import Tx


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def append_event(
    tx: Tx,
    *,
    ts: float,
    actor: str,
    action: str,
    task_id: int | None = None,
    lease_epoch: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    row = tx.one(
        "INSERT INTO events (ts, actor, action, task_id, lease_epoch, before, after, data)"
        " VALUES (:ts, :actor, :action, :task_id, :epoch, :before, :after, :data) RETURNING id",
        {
            "ts": ts,
            "actor": actor,
            "action": action,
            "task_id": task_id,
            "epoch": lease_epoch,
            "before": None if before is None else canonical_json(before),
            "after": None if after is None else canonical_json(after),
            "data": None if data is None else canonical_json(data),
        },
    )
    return row["id"]
