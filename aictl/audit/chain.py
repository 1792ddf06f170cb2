"""Verify and export the hash-chained audit log.

What is promised: any edit, deletion or reordering of stored events is
*detectable* by `verify` (the first broken entry is named). Rewriting the whole
chain from some point on, head included, is detectable only against a copy
kept elsewhere: `export` writes the chain as JSON Lines, and `verify --against`
checks that every exported event is still there, unchanged.

Rows in other tables that an event vouches for (evidence rows, decision records)
are checked against the event by *vouchers*: ``voucher(tx, events)`` gets every
chained event of its action (data parsed) and returns ``(event_id, reason)`` for the
first row that no longer matches, or None. Evidence is vouched here; the policy layer passes its decision
voucher (aictl.policy.records.vouch_decisions), since audit sits below policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from aictl.audit.events import GENESIS, HASHED_FIELDS, event_hash
from aictl.domain.errors import UsageError
from aictl.store.base import Store, Tx

EXPORT_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")


class Break(BaseModel):
    event_id: int | None
    reason: str


class VerifyReport(BaseModel):
    ok: bool
    checked: int
    last_id: int
    last_hash: str
    first_break: Break | None = None
    anchored: int = 0  # events confirmed against an exported copy
    vouched: int = 0  # rows of other tables checked against the events that carry their hashes
    anchor_id: int | None = None  # the event anchored outside the database (git), checked


Voucher = Callable[[Tx, list[dict[str, Any]]], tuple[int | None, str] | None]


def _rows(store: Store, batch: int = 5000) -> Iterator[dict[str, Any]]:
    after = -1
    while True:
        with store.read() as tx:
            rows = tx.all(f"SELECT * FROM events WHERE id > :a ORDER BY id LIMIT {batch}", {"a": after})
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1]["id"]


def verify(
    store: Store,
    *,
    against: Path | None = None,
    vouchers: Mapping[str, Voucher] | None = None,
    anchor: tuple[int, str] | None = None,
) -> VerifyReport:
    """Recompute the chain, check the anchor (event id, hash) kept outside the db and the head, then every row
    the events vouch for (evidence, plus ``vouchers``)."""
    from aictl.audit.anchor import check_anchor
    from aictl.audit.evidence import vouch_evidence

    vouchers = {"evidence": vouch_evidence, **(vouchers or {})}
    vouched: dict[str, list[dict[str, Any]]] = {action: [] for action in vouchers}
    prev, expected_id, checked, last_id = GENESIS, 1, 0, 0
    first: Break | None = None
    for row in _rows(store):
        checked += 1
        eid = row["id"]
        if row["action"] in vouched:
            vouched[row["action"]].append({**row, "data": json.loads(row["data"]) if row["data"] else {}})
        if first is None:
            if eid != expected_id:
                first = Break(
                    event_id=eid,
                    reason=f"event {expected_id} is missing: the log jumps from "
                    f"{expected_id - 1} to {eid} (deleted or reordered)",
                )
            elif row["prev_hash"] != prev:
                first = Break(
                    event_id=eid,
                    reason=f"event {eid} does not link to the event before it "
                    "(an earlier event was deleted, inserted or reordered)",
                )
            elif event_hash(prev, row) != row["hash"]:
                first = Break(event_id=eid, reason=f"event {eid} was modified: its content does not match its hash")
        prev, expected_id, last_id = row["hash"], eid + 1, eid
    if first is None and anchor is not None:
        why = check_anchor(store, *anchor)
        if why:
            first = Break(event_id=anchor[0], reason=why)
    with store.read() as tx:
        head = tx.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
    if first is None and head is None:
        first = Break(
            event_id=None,
            reason="the chain head (table audit_head) is missing: it was deleted, "
            "possibly together with events at the end of the log",
        )
    elif (
        first is None
        and head is not None
        and (head["last_id"] != last_id or head["last_hash"] != (prev if checked else GENESIS))
    ):
        first = Break(
            event_id=head["last_id"],
            reason=f"the chain head records event {head['last_id']} as the last, "
            f"but the log ends at {last_id} (events at the end were deleted or rewritten)",
        )
    report = VerifyReport(
        ok=first is None,
        checked=checked,
        last_id=last_id,
        last_hash=prev if checked else GENESIS,
        first_break=first,
        anchor_id=anchor[0] if anchor else None,
    )
    if report.ok:
        with store.read() as tx:
            for action, check in vouchers.items():
                found = check(tx, vouched[action])
                report.vouched += len(vouched[action])
                if found:
                    report.ok, report.first_break = False, Break(event_id=found[0], reason=found[1])
                    break
    if against is not None and report.ok:
        report.anchored, brk = _check_copy(store, against)
        if brk:
            report.ok, report.first_break = False, brk
    return report


def _check_copy(store: Store, path: Path) -> tuple[int, Break | None]:
    """Every event in an exported copy must still be in the log with the same hash."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    n = 0
    with store.read() as tx:
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
                eid, h = int(ev["id"]), ev["hash"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path}:{i}: not an aictl audit export line") from None
            row = tx.one("SELECT hash FROM events WHERE id = :id", {"id": eid})
            if row is None:
                return n, Break(event_id=eid, reason=f"event {eid} from {path.name} is no longer in the log")
            if row["hash"] != h:
                return n, Break(
                    event_id=eid,
                    reason=f"event {eid} differs from the copy in {path.name} "
                    "(the chain was rewritten after the export)",
                )
            n += 1
    return n, None


def export(store: Store, out: IO[str], *, since_id: int = 0) -> int:
    """Write events (with prev_hash and hash) as JSON Lines; returns the count."""
    n = 0
    for row in _rows(store):
        if row["id"] <= since_id:
            continue
        out.write(json.dumps({k: row.get(k) for k in EXPORT_FIELDS}, ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n
