"""The fence: does the lease a caller presents (owner, lease_epoch) still hold the task?

One check for every lease holder's write: the lease operations in
aictl.tasks.leases guard their UPDATE with `fence_sql` and, when it matches
nothing, call `check_fence` to say why; evidence attachment
(aictl.audit.evidence, opened through `fenced_evidence`) calls `check_fence` before it stores anything; the
executor's activity line is written with `write_activity`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl.domain.errors import IllegalTransition, LeaseLost
from aictl.domain.status import LEASED, TaskStatus, check_transition
from aictl.store.base import Store, Tx
from aictl.tasks.txn import load_row

if TYPE_CHECKING:
    from aictl.audit.evidence import EvidenceStore

S = TaskStatus
_VERB_TARGET = {"start": S.RUNNING, "complete": S.DONE, "fail": S.FAILED, "release": S.QUEUED, "heartbeat": S.RUNNING}


@cache
def fence_sql(allowed: frozenset[TaskStatus] = LEASED) -> str:
    """The fence as a WHERE clause (bind :id, :owner, :epoch): the lease presented still holds the task."""
    return (
        f"id = :id AND owner = :owner AND lease_epoch = :epoch"
        f" AND status IN ({', '.join(repr(s.value) for s in sorted(allowed))})"
    )


def check_fence(
    tx: Tx,
    task_id: int,
    owner: str,
    epoch: int,
    *,
    verb: str,
    allowed: frozenset[TaskStatus] = LEASED,
    transition: bool = True,
) -> dict[str, Any]:
    """The task's row if (owner, epoch) holds it in an `allowed` status; else raise why not.

    LeaseLost names the epoch and owner that hold the task now (or says the lease
    expired). With the lease intact but the status wrong: IllegalTransition for
    `verb` when `transition`, else LeaseLost. PostgreSQL: the row stays locked.
    """
    cur = load_row(tx, task_id, for_update=True)
    if cur["lease_epoch"] == epoch and cur["owner"] == owner and cur["status"] in allowed:
        return cur
    if cur["lease_epoch"] != epoch:
        holder = f" by {cur['owner']}" if cur["status"] in LEASED else ""
        raise LeaseLost(
            f"lease lost: task {task_id} is at lease epoch {cur['lease_epoch']} ({cur['status']}{holder});"
            f" you presented epoch {epoch}",
            hint=f"your result is stale; see the task with: aictl task get {task_id}",
            details={
                "task_id": task_id,
                "presented_epoch": epoch,
                "current_epoch": cur["lease_epoch"],
                "current_owner": cur["owner"],
                "status": cur["status"],
            },
        )
    if cur["owner"] != owner:
        raise LeaseLost(
            f"lease lost: task {task_id} epoch {epoch} belongs to {cur['owner']}, not {owner}",
            details={"task_id": task_id, "current_owner": cur["owner"], "presented_owner": owner},
        )
    if cur["status"] in (S.QUEUED, S.FAILED) and cur["lease_expires_at"] is None:
        raise LeaseLost(
            f"lease lost: the lease of task {task_id} (epoch {epoch}) expired and the task went back to "
            f"{cur['status']}",
            hint=f"claim it again: aictl task claim --id {task_id}",
            details={"task_id": task_id, "current_epoch": epoch, "status": cur["status"]},
        )
    if not transition:
        raise LeaseLost(
            f"lease lost: cannot {verb} task {task_id} with epoch {epoch}: it is {cur['status']}",
            details={
                "task_id": task_id,
                "presented_epoch": epoch,
                "current_epoch": cur["lease_epoch"],
                "current_owner": cur["owner"],
                "status": cur["status"],
            },
        )
    check_transition(task_id, cur["status"], _VERB_TARGET.get(verb, cur["status"]), verb)
    raise IllegalTransition(f"cannot {verb} task {task_id}: it is {cur['status']}")


def write_activity(tx: Tx, task_id: int, owner: str, epoch: int, line: str | None) -> bool:
    """Set the task's one-line activity while (owner, epoch) still holds it; False when the lease is gone."""
    from aictl.domain.redact import redact_text

    return (
        tx.run(
            f"UPDATE tasks SET activity = :a WHERE {fence_sql()}",
            {"a": None if line is None else redact_text(line), "id": task_id, "owner": owner, "epoch": epoch},
        )
        > 0
    )


def fenced_evidence(store: Store, home: Path | None, *, actor: str) -> EvidenceStore:
    """The evidence store with this lease check wired in: how every writer of task evidence opens it."""
    from aictl.audit.evidence import EvidenceStore

    return EvidenceStore(store, home, actor=actor, fence=check_fence)
