"""TaskService: the task plane's one entry point for changes, a facade over the job modules.

Every public mutation is one write transaction that appends one audit event per
task it changes. Lease operations present (owner, lease_epoch); a mismatch
raises LeaseLost naming the epoch that holds the task now.

Where each job lives (all in aictl/tasks/):

=============  ===============================================================
txn.py         the shared write transaction, policy checks, audit events
spec.py        TaskSpec, the fields a user gives, checked without pydantic
create.py      batch create with the DAG, add_dependency
leases.py      the atomic claim, heartbeat/start/complete/fail/release/
               await_approval
fence.py       the one fencing check (check_fence), also used by evidence
approvals.py   approve / reject a parked task
recovery.py    reap, cancel, retry, and the dependency cascades
queries.py     the one reader of tasks (TaskQueries and helpers)
=============  ===============================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aictl.domain.models import Lease, Task
from aictl.domain.status import TaskStatus
from aictl.store.base import Store, Tx
from aictl.tasks import approvals, create, leases, merging, recovery
from aictl.tasks.leases import ClaimResult
from aictl.tasks.queries import task_row
from aictl.tasks.spec import TaskSpec
from aictl.tasks.txn import TaskPlane, load_row, notify_daemons, task_facts


class TaskService:
    """TaskService(store, settings, *, clock=time.time, policy=None): see the module docstring.

    It holds a TaskPlane (store, settings, clock, policy gate: what every job module
    takes) and forwards each public method to the module that owns the job.
    """

    def __init__(self, store: Store, settings: Any, *, clock: Callable[[], float] = time.time, policy: Any = None):
        self._p = TaskPlane(store, settings, clock=clock, policy=policy)
        self.store, self.settings, self.actor = store, settings, self._p.actor
        self.clock, self.policy = clock, policy

    # -- create ---------------------------------------------------------------

    def create(self, spec: TaskSpec, *, dry_run: bool = False) -> Task:
        return create.create_many(self._p, [spec], dry_run=dry_run)[0]

    def create_many(self, specs: list[TaskSpec], *, dry_run: bool = False) -> list[Task]:
        """Create tasks in one transaction; depends_on may name earlier or later keys of the batch."""
        return create.create_many(self._p, specs, dry_run=dry_run)

    def create_in(self, tx: Tx, now: float, specs: list[TaskSpec]) -> list[Task]:
        """Create tasks inside the caller's write transaction (a schedule firing moves its schedule in the same one)."""
        return create.creator(self._p, specs)(tx, now)

    def add_dependency(self, task_id: int, depends_on: int, *, dry_run: bool = False) -> Task:
        return create.add_dependency(self._p, task_id, depends_on, dry_run=dry_run)

    # -- claim and lease ------------------------------------------------------

    def claim(
        self,
        owner: str,
        *,
        capabilities: list[str] | None = None,
        labels: list[str] | None = None,
        task_id: int | None = None,
        ttl: float | None = None,
        ai: str | None = None,
        ai_labels: list[str] | None = None,
        ai_limit: int | None = None,
        dry_run: bool = False,
    ) -> ClaimResult | None:
        """Atomically claim the best ready task (or `task_id`); None when nothing is claimable (leases.claim)."""
        return leases.claim(
            self._p,
            owner,
            capabilities=capabilities,
            labels=labels,
            task_id=task_id,
            ttl=ttl,
            ai=ai,
            ai_labels=ai_labels,
            ai_limit=ai_limit,
            dry_run=dry_run,
        )

    def heartbeat(self, task_id: int, owner: str, epoch: int, *, ttl: float | None = None) -> Lease:
        """Extend the lease. Not an audit event: heartbeats change no state a reader cares about."""
        return leases.heartbeat(self._p, task_id, owner, epoch, ttl=ttl)

    def start(self, task_id: int, owner: str, epoch: int, *, ai: str | None = None, dry_run: bool = False) -> Task:
        return leases.start(self._p, task_id, owner, epoch, ai=ai, dry_run=dry_run)

    def complete(
        self, task_id: int, owner: str, epoch: int, *, result: Any = None, ai: str | None = None, dry_run: bool = False
    ) -> Task:
        return leases.complete(self._p, task_id, owner, epoch, result=result, ai=ai, dry_run=dry_run)

    def fail(
        self, task_id: int, owner: str, epoch: int, *, reason: str = "", retryable: bool = False, dry_run: bool = False
    ) -> Task:
        """Fail an attempt. A retryable failure requeues with backoff while attempts remain."""
        return leases.fail(self._p, task_id, owner, epoch, reason=reason, retryable=retryable, dry_run=dry_run)

    def release(
        self, task_id: int, owner: str, epoch: int, *, reason: str = "", ai: str | None = None, dry_run: bool = False
    ) -> Task:
        """Give the task back to the queue without counting an attempt."""
        return leases.release(self._p, task_id, owner, epoch, reason=reason, ai=ai, dry_run=dry_run)

    def await_approval(
        self,
        task_id: int,
        owner: str,
        epoch: int,
        *,
        record: Any = None,
        reason: str = "",
        stage: str | None = None,
        pending: dict[str, Any] | None = None,
        result: Any = None,
    ) -> Task:
        """The policy wants a human: park the task (lease and locks given up) until approved or rejected."""
        return leases.await_approval(
            self._p, task_id, owner, epoch, record=record, reason=reason, stage=stage, pending=pending, result=result
        )

    # -- administrative changes (no lease needed) -----------------------------

    def approve(self, task_id: int, *, comment: str = "", dry_run: bool = False) -> Task:
        """A human approves a parked task: it goes back to the queue, and the approval is on record."""
        return approvals.approve(self._p, task_id, comment=comment, dry_run=dry_run)

    def reject(self, task_id: int, *, comment: str = "", dry_run: bool = False) -> Task:
        return approvals.reject(self._p, task_id, comment=comment, dry_run=dry_run)

    def approved_since(self, task_id: int, since: float) -> dict[str, Any] | None:
        """The latest approval of a task at or after `since` (who and why), if any."""
        return approvals.approved_since(self._p, task_id, since)

    def verdict_since(self, task_id: int, since: float) -> dict[str, Any] | None:
        """The latest approve or reject of a task at or after `since` (for a parked merge), if any."""
        return approvals.verdict_since(self._p, task_id, since)

    def cancel(self, task_id: int, *, reason: str = "", dry_run: bool = False) -> Task:
        return recovery.cancel(self._p, task_id, reason=reason, dry_run=dry_run)

    def cancel_in(self, tx: Tx, now: float, task_id: int, *, reason: str = "") -> bool:
        """Cancel a live task inside the caller's transaction (a workflow run ending); False if it had finished."""
        from aictl.domain.status import can_transition

        cur = load_row(tx, task_id)
        if not can_transition(cur["status"], TaskStatus.CANCELLED):
            return False
        recovery.cancel_in(self._p, tx, now, cur, reason)
        return True

    def retry(self, task_id: int, *, dry_run: bool = False) -> Task:
        """Send a failed or cancelled task back to the queue with a fresh attempt budget."""
        return recovery.retry(self._p, task_id, dry_run=dry_run)

    def mark_merged(self, task_id: int, *, commit: str, into: str, chain_head: str | None = None) -> Task:
        """The merge queue landed the task's work on `into` as `commit`: done -> merged."""
        return merging.mark_merged(self._p, task_id, commit=commit, into=into, chain_head=chain_head)

    def send_back(self, task_id: int, *, evidence: dict[str, Any]) -> Task:
        """The merge queue refused the task's work (conflict, failed verify): done -> queued, evidence kept."""
        return merging.send_back(self._p, task_id, evidence=evidence)

    def reap(self) -> list[Task]:
        """Sweep expired leases now (claims do this too, before they pick)."""
        return recovery.reap(self._p)

    def store_status(self, task_id: int) -> str:
        """The task's current status (a cheap read, polled by running executors)."""
        with self.store.read() as tx:
            return task_row(tx, task_id)["status"]


__all__ = ["ClaimResult", "TaskService", "TaskSpec", "notify_daemons", "task_facts"]
