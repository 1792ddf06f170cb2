"""Who runs a task: the planner claims (or adopts) it and returns a Plan — the claim, the connector, the AI.

Without --ai or --connector a task with a `command` runs it, and any other task is
claimed for the AI the router ranks first (aictl.tasks.claims does every claim).
Dependencies are passed in; the planner reaches into nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aictl.domain.errors import AictlError, NotFound, UsageError
from aictl.tasks.claims import Claimed, ClaimRequest

if TYPE_CHECKING:
    from aictl.agents.registry import Registry
    from aictl.audit.evidence import EvidenceStore
    from aictl.domain.models import AIRecord, Task
    from aictl.execution.outcome import ExecuteOptions
    from aictl.store.base import Store
    from aictl.tasks.claims import Claims


@dataclass(frozen=True)
class Plan:
    """A held claim and who works on it: a connector, and the registered AI behind it (None for commands)."""

    claim: Claimed
    connector: str
    resume_session: str | None = None

    @property
    def task(self) -> Task:
        return self.claim.task

    @property
    def epoch(self) -> int:
        return self.claim.lease.lease_epoch

    @property
    def ai(self) -> AIRecord | None:
        return self.claim.ai

    @property
    def routed(self) -> bool:  # chosen by the router, not pinned: a rate limit hands the task to the next AI
        return self.claim.routed


class Planner:
    def __init__(self, store: Store, *, claims: Claims, registry: Registry, evidence: EvidenceStore):
        from aictl.tasks.queries import TaskQueries

        self.store, self.claims, self.registry, self.evidence = store, claims, registry, evidence
        self.queries = TaskQueries(store)

    def plan(self, task_id: int | None, opts: ExecuteOptions) -> Plan:
        """Claim (or adopt) the task, and decide who runs it: a pinned AI, a connector, or the router's pick."""
        plan = self._plan(task_id, opts)
        if plan.connector == "command" and not (opts.command or plan.task.command) and opts.epoch is None:
            # the caller's mistake, found before anything ran: give the claim back, no attempt counted
            self.claims.svc.release(plan.task.id, opts.owner, plan.epoch, reason="no command to run")
            raise UsageError(
                f"task {plan.task.id} has no command for the command connector",
                hint=f"give one: aictl task execute {plan.task.id} --command 'make fmt'",
            )
        return plan

    def _plan(self, task_id: int | None, opts: ExecuteOptions) -> Plan:
        pinned = self.registry.find(opts.ai) if opts.ai else None
        if pinned is not None and opts.connector not in (None, pinned.connector):
            raise UsageError(
                f"AI {pinned.id} runs on connector {pinned.connector}, not {opts.connector}",
                hint="leave out --connector, or register another AI for that connector",
            )
        session = None
        if opts.resume or opts.message:
            previous = self.previous_session(task_id, required=opts.resume)
            if previous is not None:
                session = previous["session_id"]
                if pinned is None and opts.connector is None and previous.get("ai"):
                    pinned = self.registry.find(previous["ai"])  # a session lives in one agent: resume it there
        if opts.epoch is not None:
            return self._adopt(task_id, opts, pinned, session)
        if pinned is not None:
            claimed = self.claims.claim(ClaimRequest(owner=opts.owner, task_id=task_id, ttl=opts.ttl, ai=pinned))
            if claimed is None:
                raise NotFound(
                    f"nothing to execute for AI {pinned.id}: no ready task it can take, or it is at its "
                    f"concurrency limit ({pinned.max_concurrency})",
                    hint="see why with: aictl task ready",
                )
            return Plan(claimed, pinned.connector, session)
        plain = opts.connector is not None or (opts.ai is not None and task_id is None)
        if not plain and opts.ai and task_id is not None:
            if not self.queries.get(task_id).command:
                raise NotFound(
                    f"AI {opts.ai!r} is not registered, and task {task_id} has no command to run",
                    hint=f"register it: aictl ai register {opts.ai} --connector claude-code",
                )
            plain = True
        if plain:  # an unregistered --ai name is who the policy judges
            claimed = self.claims.claim(ClaimRequest(owner=opts.owner, task_id=task_id, ttl=opts.ttl, ai=opts.ai))
            if claimed is None:
                raise NotFound("nothing to execute: no task is ready", hint="see why with: aictl task ready")
            return Plan(claimed, opts.connector or "command", session)
        claimed = self.claims.claim(
            ClaimRequest(owner=opts.owner, task_id=task_id, ttl=opts.ttl, routed=True, commands=True)
        )
        if claimed is None:
            raise NotFound(
                "nothing to execute: no task is ready, or no AI can take the ready ones",
                hint="see why with: aictl task ready",
            )
        if claimed.ai is None:
            return Plan(claimed, "command")
        return Plan(claimed, claimed.ai.connector, session)

    def _adopt(self, task_id: int | None, opts: ExecuteOptions, pinned: AIRecord | None, session: str | None) -> Plan:
        """Run a claim the caller already holds (the daemon claims, then hands the epoch to a worker)."""
        if task_id is None:
            raise UsageError("adopting a claim (--epoch) needs the task id")
        assert opts.epoch is not None
        lease = self.claims.svc.heartbeat(task_id, opts.owner, opts.epoch, ttl=opts.ttl)
        task = self.queries.get(task_id)
        ai = pinned or (self.registry.find(task.ai) if task.ai and opts.connector is None else None)
        claimed = Claimed(lease, task, ai, routed=bool(opts.routed and ai is not None))
        return Plan(claimed, opts.connector or (ai.connector if ai else "command"), session)

    def previous_session(self, task_id: int | None, *, required: bool) -> dict[str, Any] | None:
        """The latest run.json of the task that has an agent session (for --resume / --message)."""
        if task_id is None:
            raise UsageError("--resume and --message need the task id", hint="aictl task execute 7 --resume")
        with self.store.read() as tx:
            rows = tx.all(
                "SELECT digest FROM evidence WHERE task_id = :t AND kind = 'run' ORDER BY id DESC", {"t": task_id}
            )
        for row in rows:
            try:
                run = json.loads(self.evidence.get(row["digest"]))
            except (AictlError, ValueError):
                continue
            if run.get("session_id"):
                return dict(run)
        if required:
            raise UsageError(
                f"task {task_id} has no earlier agent session to resume",
                hint=f"run it without --resume: aictl task execute {task_id}",
            )
        return None


__all__ = ["Plan", "Planner"]
