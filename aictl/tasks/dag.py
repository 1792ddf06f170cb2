"""Dependency graph checks: find the cycle a new edge would close."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


def find_path(edges: Mapping[N, Iterable[N]], start: N, goal: N) -> list[N] | None:
    """Shortest path start → … → goal following `edges` (node → its dependencies)."""
    parent: dict[N, N | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for nxt in edges.get(node, ()):
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def cycle_through_new_edge(edges: Mapping[N, Iterable[N]], task: N, dep: N) -> list[N] | None:
    """If adding `task depends on dep` closes a cycle, the cycle as task → dep → … → task."""
    if task == dep:
        return [task, task]
    back = find_path(edges, dep, task)
    return None if back is None else [task, *back]


def find_cycle(edges: Mapping[N, Iterable[N]]) -> list[N] | None:
    """Any cycle in the whole graph, as a closed list of nodes (first == last)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color: dict[N, int] = {}
    for root in list(edges):
        if color.get(root, WHITE) != WHITE:
            continue
        stack: list[tuple[N, Iterable[N]]] = [(root, iter(edges.get(root, ())))]
        path = [root]
        color[root] = GREY
        while stack:
            node, it = stack[-1]
            for nxt in it:
                c = color.get(nxt, WHITE)
                if c == GREY:
                    return [*path[path.index(nxt) :], nxt]
                if c == WHITE:
                    color[nxt] = GREY
                    path.append(nxt)
                    stack.append((nxt, iter(edges.get(nxt, ()))))
                    break
            else:
                color[node] = BLACK
                path.pop()
                stack.pop()
    return None


def format_cycle(cycle: list) -> str:
    return " → ".join(f"#{n}" if isinstance(n, int) else str(n) for n in cycle)
