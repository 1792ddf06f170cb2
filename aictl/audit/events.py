"""Append audit events inside the caller's transaction, hash-chained at commit.

Events are buffered on the transaction and written by one hook just before
COMMIT: it locks the chain head (one row, `audit_head`), numbers the events
after the last one and sets ``hash = sha256(prev_hash || canonical_json(event))``.
Taking the head lock last keeps it out of every lock-order cycle on
PostgreSQL, and makes event ids gapless and in commit order on both backends.
"""

from __future__ import annotations

from typing import Any

from aictl.store.base import Tx
from aictl.store.rowhash import GENESIS, HASHED_FIELDS, canonical_json, event_hash

# The hashing of a stored row lives with the store (its migration backfills the chain); callers import it here too.
__all__ = ["GENESIS", "HASHED_FIELDS", "append_event", "canonical_json", "event_hash"]


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
) -> None:
    """Queue one event; it is written (redacted, numbered, chained) when the transaction commits."""
    from aictl.audit.redact import redact

    pending = getattr(tx, "_aictl_events", None)
    if pending is None:
        pending = tx._aictl_events = []  # type: ignore[attr-defined]
        tx.before_commit.append(_flush)
    pending.append(
        {
            "ts": ts,
            "actor": redact(actor),
            "action": action,
            "task_id": task_id,
            "lease_epoch": lease_epoch,
            "before": None if before is None else canonical_json(redact(before)),
            "after": None if after is None else canonical_json(redact(after)),
            "data": None if data is None else canonical_json(redact(data)),
        }
    )


def _flush(tx: Tx) -> None:
    pending = tx._aictl_events  # type: ignore[attr-defined]
    if not pending:
        return
    lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
    head = tx.one(f"SELECT last_id, last_hash FROM audit_head WHERE id = 1{lock}")
    assert head is not None  # the first migration inserts the single head row
    last_id, prev = head["last_id"], head["last_hash"]
    for ev in pending:
        last_id += 1
        record = {**ev, "id": last_id}
        h = event_hash(prev, record)
        tx.run(
            "INSERT INTO events (id, ts, actor, action, task_id, lease_epoch, before, after, data, prev_hash, hash)"
            " VALUES (:id, :ts, :actor, :action, :task_id, :lease_epoch, :before, :after, :data, :prev, :hash)",
            {**record, "prev": prev, "hash": h},
        )
        prev = h
    tx.run("UPDATE audit_head SET last_id = :id, last_hash = :h WHERE id = 1", {"id": last_id, "h": prev})
    pending.clear()
