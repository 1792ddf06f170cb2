"""Append audit events inside the caller's transaction, hash-chained at commit.

Events are buffered on the transaction and written by one hook just before
COMMIT: it locks the chain head (one row, `audit_head`), numbers the events
after the last one and sets ``hash = sha256(prev_hash || canonical_json(event))``.
Taking the head lock last keeps it out of every lock-order cycle on
PostgreSQL, and makes event ids gapless and in commit order on both backends.

On PostgreSQL the whole flush is one statement (one round trip): the head row is
locked and read, each event's id and hash computed from it in SQL (the event's
canonical JSON is rendered here with the id left as a gap, so SQL only inserts the
number and hashes), the events inserted, the head moved, and any NOTIFY queued by
the transaction (`tx._aictl_notify`, see aictl.tasks.txn) sent. On SQLite the first
event's INSERT reads the head the same way (BEGIN IMMEDIATE already holds the write
lock), and one UPDATE moves the head. `aictl audit
verify` recomputes every hash in Python, so the two computations are checked
against each other.
"""

from __future__ import annotations

from typing import Any

from aictl.domain.errors import AictlError
from aictl.store.base import Tx
from aictl.store.rowhash import GENESIS, HASHED_FIELDS, canonical_json, event_hash

# The hashing of a stored row lives with the store (its migration backfills the chain); callers import it here too.
__all__ = ["GENESIS", "HASHED_FIELDS", "ChainHeadBroken", "append_event", "canonical_json", "event_hash"]


class ChainHeadBroken(AictlError):
    """The chain head row is gone or does not fit the log: nothing more can be appended safely."""

    code = "audit_head_broken"


def _head_broken(detail: str) -> ChainHeadBroken:
    return ChainHeadBroken(
        f"the audit chain head is {detail}; no event can be appended to the log",
        hint="the store was tampered with: run `aictl audit verify` to see where the chain breaks",
    )


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
    from aictl.domain.redact import redact

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


def head_id(tx: Tx) -> int:
    """The id of the newest event (0 for an empty log): what a reader polls to learn that something changed."""
    row = tx.one("SELECT last_id FROM audit_head WHERE id = 1")
    return row["last_id"] if row else 0


def _flush(tx: Tx) -> None:
    pending = tx._aictl_events  # type: ignore[attr-defined]
    if not pending:
        return
    if tx.dialect == "postgresql":
        _flush_pg(tx, pending)
    else:
        _flush_sqlite(tx, pending)
    pending.clear()


def _flush_sqlite(tx: Tx, pending: list[dict[str, Any]]) -> None:
    """The first event is numbered and chained from the head inside its INSERT (sha256_hex is a function
    aictl.store.sqlite registers); the rest follow in Python; then the head moves."""
    import sqlite3

    first = pending[0]
    pre, suf = _body_around_id(first)
    try:
        head = tx.one(
            f"INSERT INTO events (id, {', '.join(_COLS)}, prev_hash, hash)"
            f" SELECT last_id + 1, {', '.join(':' + c for c in _COLS)}, last_hash,"
            " sha256_hex(last_hash || :pre || (last_id + 1) || :suf) FROM audit_head WHERE id = 1 RETURNING id, hash",
            {**{c: first[c] for c in _COLS}, "pre": pre, "suf": suf},
        )
    except sqlite3.IntegrityError:  # the head names an id that is taken, or holds no hash
        raise _head_broken("out of step with the log") from None
    if head is None:
        raise _head_broken("missing")
    last_id, prev = head["id"], head["hash"]
    for ev in pending[1:]:
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


_ID_GAP = -7340033  # stands for the event id in a body rendered before the id is known
_COLS = ("ts", "actor", "action", "task_id", "lease_epoch", "before", "after", "data")
_TYPES = {"ts": "double precision", "task_id": "bigint", "lease_epoch": "bigint"}


def _flush_pg(tx: Tx, pending: list[dict[str, Any]]) -> None:
    """Chain, insert and NOTIFY in one statement (see the module docstring)."""
    params: dict[str, Any] = {}
    ctes = ["h0 AS (SELECT last_id AS id, last_hash AS hash FROM audit_head WHERE id = 1 FOR UPDATE)"]
    for i, ev in enumerate(pending, 1):
        params[f"pre{i}"], params[f"suf{i}"] = _body_around_id(ev)
        params.update({f"{c}{i}": ev[c] for c in _COLS})
        ctes.append(
            f"h{i} AS (SELECT h{i - 1}.id + 1 AS id, h{i - 1}.hash AS prev, encode(sha256(convert_to("
            f"h{i - 1}.hash || :pre{i} || CAST(h{i - 1}.id + 1 AS TEXT) || :suf{i}, 'UTF8')), 'hex') AS hash"
            f" FROM h{i - 1})"
        )
    n = len(pending)
    rows = " UNION ALL ".join(
        f"SELECT h{i}.id, "
        + ", ".join(f"CAST(:{c}{i} AS {_TYPES.get(c, 'text')})" for c in _COLS)
        + f", h{i}.prev, h{i}.hash FROM h{i}"
        for i in range(1, n + 1)
    )
    ctes.append(f"ins AS (INSERT INTO events (id, {', '.join(_COLS)}, prev_hash, hash) {rows})")
    ctes.append(
        f"head AS (UPDATE audit_head SET last_id = h{n}.id, last_hash = h{n}.hash FROM h{n} WHERE audit_head.id = 1)"
    )
    channels = sorted(getattr(tx, "_aictl_notify", None) or ())
    tail = "".join(f", pg_notify('{c}', '')" for c in channels)
    try:
        got = tx.one(f"WITH {', '.join(ctes)} SELECT (SELECT count(*) FROM h{n}) AS n{tail}", params)
    except Exception as e:  # the head names an id that is taken, or holds no hash
        if type(e).__name__ in ("UniqueViolation", "NotNullViolation"):
            raise _head_broken("out of step with the log") from None
        raise
    if not got or not got["n"]:
        raise _head_broken("missing")
    if channels:
        tx._aictl_notify.clear()  # type: ignore[attr-defined]


def _body_around_id(ev: dict[str, Any]) -> tuple[str, str]:
    """The event's hashed body (canonical JSON) split where its id goes: body = pre + str(id) + suf."""
    body = canonical_json({**{k: ev.get(k) for k in HASHED_FIELDS}, "id": _ID_GAP})
    gap = f'"id":{_ID_GAP}'
    pre, suf = body.split(gap)  # keys are sorted and nested JSON is a string: "id" occurs once at the top
    return pre + '"id":', suf
