"""Bounds on what users may give aictl, in one place.

Every value a command accepts must be usable by every other command: a title that
fills a terminal, a TTL that never expires or overflows a timestamp, or an integer
that does not fit the store's 64-bit columns would break `task list` for everyone.
The CLI's option converters, TaskSpec and the lease functions all check these.
"""

from __future__ import annotations

import math

TITLE_MAX = 500  # characters; one line in `task list`, a commit subject
DESCRIPTION_MAX = 64 * 1024  # characters; the prompt's task text
LABEL_MAX = 64  # characters per label or capability
LABELS_MAX = 64  # labels (or capabilities, or lock globs) per task
PRIORITY_MIN, PRIORITY_MAX = -1_000_000, 1_000_000
TTL_MIN, TTL_MAX = 1.0, 7 * 24 * 3600.0  # lease seconds: shorter expires before a heartbeat, longer hides a dead run
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # ids, epochs: the store's BIGINT columns


def check_ttl(ttl: float | None) -> float | None:
    """ttl itself, or ValueError naming the valid range (None means the default)."""
    if ttl is None:
        return None
    if not math.isfinite(ttl) or not TTL_MIN <= ttl <= TTL_MAX:
        raise ValueError(f"lease TTL {ttl}: must be {TTL_MIN:g} to {TTL_MAX:g} seconds")
    return ttl
