"""The chain head anchored outside the database, in git: ``refs/aictl/audit-head``.

The ref points at a blob ``aictl audit head\\nevent <id>\\nhash <sha256>\\n``, rewritten after
each task run (aictl.execution.executor) and by `aictl audit anchor`. Deleting the tail of
the log together with its head row leaves a self-consistent chain in the database; the
anchor still names an event that is gone (or whose hash changed), so `audit verify` reports
it without needing an exported copy. The git side is WorkspaceManager.write_anchor/read_anchor;
this module only reads the head and checks an anchor against the log.
"""

from __future__ import annotations

import re

from aictl.domain.errors import UsageError
from aictl.store.base import Store

ANCHOR_REF = "refs/aictl/audit-head"
_TEXT = re.compile(r"aictl audit head\nevent (\d+)\nhash ([0-9a-f]{64})\n?")


def head(store: Store) -> tuple[int, str] | None:
    """(last event id, its hash) from the chain head, or None before the first event (or if the head is gone)."""
    with store.read() as tx:
        row = tx.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
    if row is None or not row["last_id"]:
        return None
    return int(row["last_id"]), str(row["last_hash"])


def anchor_text(event_id: int, event_hash: str) -> str:
    return f"aictl audit head\nevent {event_id}\nhash {event_hash}\n"


def parse_anchor(text: str) -> tuple[int, str]:
    m = _TEXT.fullmatch(text)
    if m is None:
        raise UsageError(
            f"{ANCHOR_REF} does not hold an aictl audit anchor", hint="rewrite it with: aictl audit anchor"
        )
    return int(m.group(1)), m.group(2)


def check_anchor(store: Store, event_id: int, event_hash: str) -> str | None:
    """Why the log no longer holds the anchored event unchanged (None: it does)."""
    with store.read() as tx:
        row = tx.one("SELECT hash FROM events WHERE id = :id", {"id": event_id})
    if row is None:
        return (
            f"event {event_id}, anchored in git ({ANCHOR_REF}), is no longer in the log: "
            "the log was truncated (its tail deleted, with or without the head)"
        )
    if row["hash"] != event_hash:
        return f"event {event_id} differs from its hash anchored in git ({ANCHOR_REF}): the chain was rewritten"
    return None
