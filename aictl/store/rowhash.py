"""How an `events` row is hashed into the audit chain: ``hash = sha256(prev_hash || canonical_json(event))``.

In the store, not in audit/, because migration 2 backfills the chain of the rows written before it; the
audit log (aictl.audit.events, aictl.audit.chain) hashes and verifies with the same two functions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("id", "ts", "actor", "action", "task_id", "lease_epoch", "before", "after", "data")


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """The chain link of one stored event row (JSON columns as their stored text)."""
    body = canonical_json({k: record.get(k) for k in HASHED_FIELDS})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()
