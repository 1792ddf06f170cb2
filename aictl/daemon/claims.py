"""What the daemon claims next for an idle worker: a command task, or an AI task through the router.

Whichever kind heads the queue is tried first, so priorities hold across both kinds.
Command tasks are claimed here rather than through the router so that a policy
refusal is recorded once per worker and then skipped (`refused_for`), not asked
again on every poll. Every claim is the task service's one atomic statement; the
reads before it only choose what to try.
"""

from __future__ import annotations

import time
from typing import Any

from aictl.daemon.worker import Job
from aictl.domain.errors import Conflict, PolicyDenied


class Claimer:
    def __init__(self, settings: Any, *, ttl: float, ai_ids: list[str] | None):
        self.settings, self.ttl, self.ai_ids = settings, ttl, ai_ids
        self.gate: Any = None
        self._router: Any = None
        self._router_store: Any = None

    def set_gate(self, gate: Any) -> None:
        self.gate = gate
        self._router = None

    def ready_now(self, store: Any) -> tuple[bool, float | None]:
        """A cheap read before any write: is some queued task due now? If not, when is the next one due."""
        now = time.time()
        with store.read() as tx:
            row = tx.one("SELECT id FROM tasks WHERE status = 'queued' AND (next_run_at IS NULL OR next_run_at <= :now)"
                         " LIMIT 1", {"now": now})
            if row is not None:
                return True, None
            due = tx.one("SELECT MIN(next_run_at) AS due FROM tasks WHERE status = 'queued' AND next_run_at > :now",
                         {"now": now})
        return False, (due["due"] if due and due["due"] is not None else None)

    def claim(self, store: Any, owner: str) -> Job | None:
        kinds = [self._claim_ai, self._claim_command]
        if self._head_is_command(store, owner):
            kinds.reverse()
        for claim in kinds:
            job = claim(store, owner)
            if job is not None:
                return job
        return None

    def _refused_for(self, owner: str) -> tuple[str, str] | None:
        return (owner, self.gate.digest) if self.gate is not None else None

    def _head_is_command(self, store: Any, owner: str) -> bool:
        from aictl.tasks.sql import CLAIM_ORDER, claimable_where

        with store.read() as tx:
            where, params = claimable_where(tx, capabilities=None, labels=None, task_id=None,
                                            refused_for=self._refused_for(owner))
            row = tx.one(f"SELECT t.command FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT 1",
                         {**params, "now": time.time()})
        return bool(row and row["command"])

    def _claim_ai(self, store: Any, owner: str) -> Job | None:
        from aictl.agents.router import Router

        if self._router is None or self._router_store is not store:
            self._router, self._router_store = Router(store, self.settings, policy=self.gate), store
        got = self._router.claim_next(owner, ai_ids=self.ai_ids, ttl=self.ttl, commands=False)
        if got is None:
            return None
        claim, ai = got
        return Job(task_id=claim.task.id, epoch=claim.lease.lease_epoch, title=claim.task.title, owner=owner,
                   connector=ai.connector, ai=ai.id)

    def _claim_command(self, store: Any, owner: str) -> Job | None:
        """The best ready task that carries a command (the command connector runs it; no AI needed)."""
        from aictl.tasks.service import TaskService
        from aictl.tasks.sql import CLAIM_ORDER, claimable_where

        with store.read() as tx:
            where, params = claimable_where(tx, capabilities=None, labels=None, task_id=None,
                                            refused_for=self._refused_for(owner))
            rows = tx.all(f"SELECT t.id FROM tasks t WHERE {where} AND t.command IS NOT NULL {CLAIM_ORDER} LIMIT 8",
                          {**params, "now": time.time()})
        svc = TaskService(store, self.settings, policy=self.gate)
        for r in rows:
            try:  # the claim re-checks everything atomically; losing a race just means the next one
                claim = svc.claim(owner, task_id=r["id"], ttl=self.ttl)
            except (Conflict, PolicyDenied):
                continue
            if claim is not None:
                return Job(task_id=claim.task.id, epoch=claim.lease.lease_epoch, title=claim.task.title, owner=owner)
        return None
