"""Capped exponential backoff with jitter, for retries of transient failures."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1 = first retry).

    "Equal jitter": half the capped exponential delay is fixed, the other half
    random, so retries of many tasks spread out but never retry immediately.
    """
    if attempt < 1 or base <= 0:
        return 0.0
    exp = min(cap, base * (2 ** (attempt - 1)))
    r = (rng or random).random()
    return exp / 2 + r * exp / 2
