from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aictl.tasks.backoff import backoff_delay
from aictl.tasks.dag import cycle_through_new_edge, find_cycle, format_cycle


def test_find_cycle():
    assert find_cycle({1: [2], 2: [3], 3: []}) is None
    cyc = find_cycle({1: [2], 2: [3], 3: [1]})
    assert cyc[0] == cyc[-1] and set(cyc) == {1, 2, 3}
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_new_edge_cycle_is_named_in_order():
    edges = {2: [1], 3: [2]}  # 3 → 2 → 1
    assert cycle_through_new_edge(edges, 1, 3) == [1, 3, 2, 1]
    assert format_cycle([1, 3, 2, 1]) == "#1 → #3 → #2 → #1"
    assert cycle_through_new_edge(edges, 4, 3) is None
    assert cycle_through_new_edge(edges, 5, 5) == [5, 5]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 8), st.lists(st.integers(0, 8), max_size=3), max_size=9))
def test_find_cycle_agrees_with_brute_force(edges):
    def reachable(a, b):
        seen, stack = set(), [a]
        while stack:
            n = stack.pop()
            for m in edges.get(n, []):
                if m == b:
                    return True
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return False

    has_cycle = any(reachable(n, n) for n in edges)
    cyc = find_cycle(edges)
    assert (cyc is not None) == has_cycle
    if cyc:
        assert all(b in edges.get(a, []) for a, b in itertools.pairwise(cyc))


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(1)
    delays = [backoff_delay(n, base=2, cap=30, rng=rng) for n in range(1, 9)]
    for n, d in enumerate(delays, start=1):
        exp = min(30, 2 * 2 ** (n - 1))
        assert exp / 2 <= d <= exp
    assert max(delays) <= 30
    assert len({round(backoff_delay(3, base=2, cap=30), 6) for _ in range(20)}) > 1  # jitter
    assert backoff_delay(0, base=2, cap=30) == 0 and backoff_delay(5, base=0, cap=30) == 0
