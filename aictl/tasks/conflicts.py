"""Index which live tasks' lock globs overlap, so a claim can check it in SQL.

Overlap of two glob sets is decided symbolically (aictl.tasks.globs), once per
distinct pair of glob sets, when a task enters the queue (create, retry).
"""

from __future__ import annotations

import json

from aictl.store.base import Tx
from aictl.tasks.sql import LIVE


def index(tx: Tx, task_id: int, patterns: list[str]) -> int:
    """Record conflicts between task_id and every live task whose globs overlap; returns pairs added."""
    if not patterns:
        return 0
    from aictl.tasks.globs import patterns_overlap

    groups = tx.all(
        f"SELECT lock_paths FROM tasks WHERE id != :id AND lock_paths != '[]' AND status IN {LIVE} GROUP BY lock_paths",
        {"id": task_id},
    )
    overlapping = [g["lock_paths"] for g in groups if patterns_overlap(patterns, json.loads(g["lock_paths"]))]
    added = 0
    for lock_paths in overlapping:
        others = tx.all(
            f"SELECT id FROM tasks WHERE id != :id AND lock_paths = :lp AND status IN {LIVE}",
            {"id": task_id, "lp": lock_paths},
        )
        for o in others:
            for a, b in ((task_id, o["id"]), (o["id"], task_id)):
                added += tx.run(
                    "INSERT INTO task_conflicts (task_id, other_id) VALUES (:a, :b) ON CONFLICT DO NOTHING",
                    {"a": a, "b": b},
                )
    return added
