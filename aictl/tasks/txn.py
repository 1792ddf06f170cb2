"""The task plane's write transaction: what every job module (create, leases, approvals, recovery) shares.

`TaskPlane` carries the store, settings, clock and policy gate. `write(fn)` runs
`fn(tx, now)` in one write transaction (a dry run does all the work, then rolls
back; a policy refusal rolls back, then keeps its decision record). `event()`
queues the one audit event a change writes; `enforce()` asks the policy.
Module functions here read one task row and free a task's locks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aictl.audit.events import append_event
from aictl.domain.errors import NotFound
from aictl.domain.models import Task
from aictl.domain.status import HOLDING_LOCKS
from aictl.store.base import Store, Tx
from aictl.tasks.sql import deps_column, row_to_task

if TYPE_CHECKING:
    from aictl.config import Settings

T = TypeVar("T")

# After these no task can have become claimable, so no daemon needs waking.
QUIET_ACTIONS = frozenset({"claim", "start", "add_dependency"})


class DryRun(Exception):
    """Carries a dry run's result out of its transaction, which then rolls back."""

    def __init__(self, result: Any):
        self.result = result


class Refused(Exception):
    """The policy refused an action: roll back, then keep the decision record."""

    def __init__(self, record: Any):
        self.record = record


class TaskPlane:
    """Store, settings, clock and policy, and the transaction plumbing the job modules share."""

    def __init__(
        self, store: Store, settings: Settings | Any, *, clock: Callable[[], float] = time.time, policy: Any = None
    ):
        self.store = store
        self.settings = settings
        self.actor: str = settings.actor
        self.clock = clock
        self.policy = policy  # aictl.policy.gate.PolicyGate, or None: no enforcement

    def write(
        self, fn: Callable[[Tx, float], Any], dry_run: bool = False, *, then: Callable[[Any], T] | None = None
    ) -> T:
        """Run fn in one write transaction; a dry run does all the work, then rolls back.

        `then` turns fn's result into the answer after the transaction ends (e.g. a row
        into a Task), so SQLite's write lock is not held while models are built.
        """
        try:
            with self.store.write() as tx:
                result = fn(tx, self.clock())
                if dry_run:
                    raise DryRun(result)
        except DryRun as d:
            result = d.result
        except Refused as refused:
            self.keep_record(refused.record, dry_run)
            from aictl.policy.gate import denied_error

            raise denied_error(refused.record) from None
        return result if then is None else then(result)

    def keep_record(self, record: Any, dry_run: bool) -> None:
        """Write a refusal's decision record in its own transaction (the refused one rolled back)."""
        if dry_run:
            return
        from aictl.policy.records import write_record

        with self.store.write() as tx:
            write_record(tx, record)

    def enforce(
        self,
        tx: Tx,
        action: str,
        row: dict[str, Any],
        owner: str | None,
        *,
        ai: str | None = None,
        ai_labels: list[str] | None = None,
        extra_check: Any = None,
        before: str | None = None,
    ) -> Any:
        """Ask the policy about `action` on this task; keep the record, or refuse (rolling back)."""
        if self.policy is None:
            return None
        from aictl.policy.records import write_record

        facts = task_facts(row)
        if before is not None:
            facts["status"] = before  # the policy judges the task as it is when asked, not after the change
        record = self.policy.check(
            action,
            ai=ai or owner,
            actor=owner or self.actor,
            ai_labels=ai_labels,
            task=facts,
            epoch=row["lease_epoch"] or None,
        )
        if record.effect == "allow" and extra_check is not None:
            extra_check(record)
        if record.effect != "allow":
            raise Refused(record)
        write_record(tx, record)
        return record

    def event(
        self,
        tx: Tx,
        now: float,
        action: str,
        row: dict[str, Any],
        before: str | None,
        actor: str | None = None,
        **data: Any,
    ) -> None:
        """Queue the audit event of one change to one task (written, chained, at commit)."""
        after = {"status": row["status"]}
        if row["status"] in HOLDING_LOCKS or action == "claim":
            after["owner"] = row["owner"]
        append_event(
            tx,
            ts=now,
            actor=actor or self.actor,
            action=action,
            task_id=row["id"],
            lease_epoch=row["lease_epoch"] or None,
            before=None if before is None else {"status": before},
            after=after,
            data={k: v for k, v in data.items() if v is not None} or None,
        )
        if action not in QUIET_ACTIONS:
            notify_daemons(tx)


def load_row(tx: Tx, task_id: int, *, for_update: bool = False) -> dict[str, Any]:
    """The task's row with its `deps`; NotFound if there is none. for_update: PostgreSQL row lock."""
    lock = " FOR UPDATE" if for_update and tx.dialect == "postgresql" else ""
    row = tx.one(f"SELECT *, {deps_column(tx)} FROM tasks WHERE id = :id{lock}", {"id": task_id})
    if row is None:
        raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
    return row


def to_task(row: dict[str, Any]) -> Task:
    """The Task of a row read with its `deps` column (load_row, or an UPDATE with returning_task)."""
    return row_to_task(row)


def free_locks(tx: Tx, row: dict[str, Any]) -> None:
    """Drop the task's lock rows; a task without globs and not exclusive never took any (claim inserts them)."""
    if row["exclusive"] or row["lock_paths"] not in ("[]", None):
        tx.run("DELETE FROM locks WHERE task_id = :id", {"id": row["id"]})


def notify_daemons(tx: Tx) -> None:
    """PostgreSQL: wake the LISTENing daemons (aictl.daemon.wakeup) when this transaction commits; once per tx.

    The NOTIFY rides in the audit chain's statement when the transaction writes events
    (aictl.audit.events), so it costs no round trip of its own.
    """
    if tx.dialect != "postgresql" or getattr(tx, "_aictl_notified", False):
        return
    tx._aictl_notified = True  # type: ignore[attr-defined]
    channels = getattr(tx, "_aictl_notify", None)
    if channels is None:
        channels = tx._aictl_notify = set()  # type: ignore[attr-defined]
        tx.before_commit.append(_notify_leftover)
    channels.add("aictl_tasks")


def _notify_leftover(tx: Tx) -> None:
    """Send the NOTIFYs the audit flush did not carry (a transaction without events)."""
    if getattr(tx, "_aictl_events", None):
        return  # the audit flush runs later in this commit and carries them
    for channel in sorted(getattr(tx, "_aictl_notify", ())):
        tx.run(f"NOTIFY {channel}")
    tx._aictl_notify.clear()  # type: ignore[attr-defined]


def task_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What a policy sees of a task (resource.task)."""
    return {
        "id": row["id"],
        "title": row["title"],
        "type": row["type"],
        "priority": row["priority"],
        "status": row["status"],
        "labels": json.loads(row["labels"]),
        "required_capabilities": json.loads(row["required_capabilities"]),
        "lock_paths": json.loads(row["lock_paths"]),
        "exclusive": bool(row["exclusive"]),
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
    }
