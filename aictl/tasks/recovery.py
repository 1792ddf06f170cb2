"""Recovery: reap expired leases, cancel and retry, and the dependency cascades they (and completion) start.

* `reap` returns expired claimed/running tasks to the queue (or fails them when
  their attempts are used up); `reap_if_expired` is the claim's cheap version,
  which sweeps only when the lease-expiry index says something expired.
* `cancel` / `retry` are administrative: no lease needed.
* Cascades along task_deps: `unblock_dependents` (a dependency is done),
  `dependency_failed` (with on_dependency_failure=fail, blocked dependents fail
  too, transitively), `revive_failed_dependents` (a retry undoes that).
"""

from __future__ import annotations

import json
from typing import Any

from aictl.audit.events import canonical_json
from aictl.domain.errors import IllegalTransition
from aictl.domain.models import Task
from aictl.domain.status import TaskStatus, check_transition
from aictl.store.base import Tx
from aictl.tasks import conflicts
from aictl.tasks.sql import as_json_list, in_list, returning_task
from aictl.tasks.txn import TaskPlane, free_locks, load_row, to_task

S = TaskStatus
EXPIRED = "status IN ('claimed', 'running') AND lease_expires_at < :now"  # served by ix_tasks_lease_expiry


def reap(p: TaskPlane) -> list[Task]:
    """Sweep expired leases now (claims do this too, before they pick)."""
    return p.write(lambda tx, now: [to_task(r) for r in reap_in(p, tx, now)])


def reap_in(p: TaskPlane, tx: Tx, now: float) -> list[dict[str, Any]]:
    """Requeue (or fail, attempts used up) every expired lease no other transaction is reaping."""
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    expired = tx.all(f"SELECT id, status FROM tasks WHERE {EXPIRED} ORDER BY id{lock}", {"now": now})
    if not expired:
        return []
    old_status = {r["id"]: r["status"] for r in expired}
    rows = tx.all(
        "UPDATE tasks SET"
        " status = CASE WHEN attempts + 1 >= max_attempts THEN 'failed' ELSE 'queued' END,"
        " attempts = attempts + 1, lease_expires_at = NULL, updated_at = :now,"
        " result = CASE WHEN attempts + 1 >= max_attempts THEN :res ELSE result END"
        f" WHERE id IN ({in_list(tx, 'ids')}) AND {EXPIRED} {returning_task(tx)}",
        {
            "now": now,
            "ids": as_json_list(old_status),
            "res": canonical_json({"error": "lease expired; attempts exhausted"}),
        },
    )
    rows.sort(key=lambda r: r["id"])
    from aictl.logging import get_logger

    get_logger("aictl.tasks").info("reaped expired leases", tasks=[r["id"] for r in rows])
    for row in rows:
        free_locks(tx, row)
        p.event(tx, now, "lease_expired", row, old_status[row["id"]], owner=row["owner"], attempts=row["attempts"])
        if row["status"] == S.FAILED:
            dependency_failed(p, tx, now, row["id"])
    return rows


def expired_probe(tx: Tx) -> str:
    """A select-list item true when some lease has expired (bind :now); cheap on the expiry index."""
    return f"EXISTS (SELECT 1 FROM tasks WHERE {EXPIRED}) AS expired"


def cancel(p: TaskPlane, task_id: int, *, reason: str = "", dry_run: bool = False) -> Task:
    def run(tx: Tx, now: float) -> Task:
        cur = load_row(tx, task_id)
        check_transition(task_id, cur["status"], S.CANCELLED, "cancel")
        return to_task(cancel_in(p, tx, now, cur, reason))

    return p.write(run, dry_run)


def cancel_in(p: TaskPlane, tx: Tx, now: float, cur: dict[str, Any], reason: str) -> dict[str, Any]:
    """Cancel a task (its row as read, in a cancellable state) inside the caller's transaction."""
    row = tx.row(
        "UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = :now"
        f" WHERE id = :id {returning_task(tx)}",
        {"now": now, "id": cur["id"]},
    )
    free_locks(tx, row)
    p.event(tx, now, "cancel", row, cur["status"], reason=reason or None)
    dependency_failed(p, tx, now, cur["id"])
    return row


def retry(p: TaskPlane, task_id: int, *, dry_run: bool = False) -> Task:
    """Send a failed or cancelled task back to the queue with a fresh attempt budget."""

    def run(tx: Tx, now: float) -> Task:
        cur = load_row(tx, task_id)
        undone = tx.row(
            "SELECT COUNT(*) AS n FROM task_deps d JOIN tasks p ON p.id = d.depends_on"
            " WHERE d.task_id = :id AND p.status NOT IN ('done', 'merged')",
            {"id": task_id},
        )["n"]
        target = S.BLOCKED if undone else S.QUEUED
        if cur["status"] not in (S.FAILED, S.CANCELLED):  # done -> queued is the merge queue's move, not retry's
            raise IllegalTransition(
                f"cannot retry task {task_id}: it is {cur['status']}, not failed or cancelled",
                hint="only failed or cancelled tasks are retried",
            )
        check_transition(task_id, cur["status"], target, "retry")
        row = tx.row(
            "UPDATE tasks SET status = :st, attempts = 0, next_run_at = NULL, result = NULL,"
            f" updated_at = :now WHERE id = :id {returning_task(tx)}",
            {"st": target.value, "now": now, "id": task_id},
        )
        conflicts.index(tx, task_id, json.loads(row["lock_paths"]))
        p.event(tx, now, "retry", row, cur["status"])
        revive_failed_dependents(p, tx, now, task_id)
        return to_task(row)

    return p.write(run, dry_run)


def _lock_dependents(tx: Tx, task_id: int) -> None:
    # PostgreSQL: lock dependents before reading their other dependencies, so two
    # dependencies finishing at once cannot both miss each other (write skew).
    if tx.dialect == "postgresql":
        tx.all(
            "SELECT id FROM tasks WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on = :id)"
            " ORDER BY id FOR UPDATE",
            {"id": task_id},
        )


def unblock_dependents(p: TaskPlane, tx: Tx, now: float, task_id: int) -> None:
    """Queue every blocked dependent of task_id whose dependencies are now all done."""
    _lock_dependents(tx, task_id)
    rows = tx.all(
        "UPDATE tasks SET status = 'queued', updated_at = :now WHERE status = 'blocked'"
        " AND id IN (SELECT task_id FROM task_deps WHERE depends_on = :id)"
        " AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks p ON p.id = d.depends_on"
        "   WHERE d.task_id = tasks.id AND p.status NOT IN ('done', 'merged')) RETURNING *",
        {"now": now, "id": task_id},
    )
    for row in sorted(rows, key=lambda r: r["id"]):
        p.event(tx, now, "unblock", row, S.BLOCKED, dependency=task_id)


def dependency_failed(p: TaskPlane, tx: Tx, now: float, task_id: int) -> None:
    """Dependents of a failed/cancelled task stay blocked, or fail too, as settings say."""
    if p.settings.on_dependency_failure != "fail":
        return
    _lock_dependents(tx, task_id)
    rows = tx.all(
        "UPDATE tasks SET status = 'failed', result = :res, updated_at = :now WHERE status = 'blocked'"
        " AND id IN (SELECT task_id FROM task_deps WHERE depends_on = :id) RETURNING *",
        {"now": now, "id": task_id, "res": canonical_json({"error": f"dependency #{task_id} did not finish"})},
    )
    for row in sorted(rows, key=lambda r: r["id"]):
        p.event(tx, now, "dependency_failed", row, S.BLOCKED, dependency=task_id)
        dependency_failed(p, tx, now, row["id"])


def revive_failed_dependents(p: TaskPlane, tx: Tx, now: float, task_id: int) -> None:
    """Undo the cascade of on_dependency_failure=fail when the dependency is retried."""
    if p.settings.on_dependency_failure != "fail":
        return
    marker = canonical_json({"error": f"dependency #{task_id} did not finish"})
    rows = tx.all(
        "UPDATE tasks SET status = 'blocked', result = NULL, updated_at = :now WHERE status = 'failed'"
        " AND result = :res AND id IN (SELECT task_id FROM task_deps WHERE depends_on = :id) RETURNING *",
        {"now": now, "id": task_id, "res": marker},
    )
    for row in sorted(rows, key=lambda r: r["id"]):
        p.event(tx, now, "dependency_retried", row, S.FAILED, dependency=task_id)
        revive_failed_dependents(p, tx, now, row["id"])
