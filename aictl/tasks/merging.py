"""The merge queue's two moves on a done task: it landed (merged), or it goes back (queued, with the evidence).

Both are administrative (no lease: a done task has none) and write one audit event each; `merged`
carries the resulting commit and target, `merge_rejected` the conflict or failed verify, which
also lands in the task's result under "merge" so the next attempt (and its prompt) can see it.
"""

from __future__ import annotations

import json
from typing import Any

from aictl.audit.events import canonical_json
from aictl.domain.models import Task
from aictl.domain.status import TaskStatus, check_transition
from aictl.store.base import Tx
from aictl.tasks.sql import returning_task
from aictl.tasks.txn import TaskPlane, load_row, to_task

S = TaskStatus


def mark_merged(p: TaskPlane, task_id: int, *, commit: str, into: str, chain_head: str | None) -> Task:
    def run(tx: Tx, now: float) -> Task:
        cur = load_row(tx, task_id)
        check_transition(task_id, cur["status"], S.MERGED, "merge")
        row = tx.one(
            f"UPDATE tasks SET status = 'merged', updated_at = :now WHERE id = :id {returning_task(tx)}",
            {"now": now, "id": task_id},
        )
        assert row is not None  # load_row found it, under the write lock
        p.event(tx, now, "merged", row, cur["status"], commit=commit, into=into, chain_head=chain_head)
        return to_task(row)

    return p.write(run)


def send_back(p: TaskPlane, task_id: int, *, evidence: dict[str, Any]) -> Task:
    """done -> queued, the rejection in result["merge"]; attempts stay (the agent's work did not fail)."""

    def run(tx: Tx, now: float) -> Task:
        cur = load_row(tx, task_id)
        check_transition(task_id, cur["status"], S.QUEUED, "merge")
        result = json.loads(cur["result"]) if cur["result"] else {}
        result = {**(result if isinstance(result, dict) else {"previous": result}), "merge": evidence}
        row = tx.one(
            "UPDATE tasks SET status = 'queued', next_run_at = NULL, result = :res, updated_at = :now"
            f" WHERE id = :id {returning_task(tx)}",
            {"now": now, "id": task_id, "res": canonical_json(result)},
        )
        assert row is not None  # load_row found it, under the write lock
        p.event(tx, now, "merge_rejected", row, cur["status"], **evidence)
        return to_task(row)

    return p.write(run)
