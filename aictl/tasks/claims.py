"""Claiming, with one owner: plain claims, claims for an AI, routed claims, waiting, and picking the next task.

Every claim ends in `TaskService.claim`, the one atomic statement that re-checks
everything (status, dependencies, locks, `ai:` labels, the AI's concurrency limit,
policy); the reads here only choose what to try. Layout:

- `ClaimRequest`: who claims, for which AI, and how (pinned, routed, waiting, filters).
- `Ranker` / `Ranking`: what the router answers about tasks (which AIs may take each one,
  best first, and why the others may not). It is injected, so this module needs nothing
  from aictl.agents (the router implements it).
- `Claims.claim(req) -> Claimed | None`: the one entry point of the CLI, the executor
  and the daemon; `Claims.ready(...)`: what could be claimed now, where, with AIs
  registered, "ready" means some AI can take it.

A claim that loses a race, hits a lock or the AI's limit, or is refused by the policy
raises one of `MISSED`; when Claims chose the AI it moves on to the next AI (`NEXT_AI`),
when it chose the task to the next task, and when the caller named both it raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aictl.domain.errors import (
    AictlError,
    AILimitReached,
    Conflict,
    NotFound,
    PolicyDenied,
)

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.domain.models import AIRecord, Lease, Task
    from aictl.policy.gate import PolicyGate
    from aictl.store.base import Store
    from aictl.tasks.queries import ReadyEntry

MISSED = (Conflict, PolicyDenied)  # lost a race, a lock, the AI's limit, or refused: the next task
NEXT_AI = (AILimitReached, PolicyDenied)  # this AI filled up or is refused since it was ranked: the next AI
NEXT_ROWS = 50  # claimable tasks read per pass when Claims picks the task
MAX_POLL_S = 1.0  # --wait polls at most this far apart: new work is seen within a second


@dataclass(frozen=True)
class Ranking:
    """The router's answer for one task: eligible AIs best first, and why each other one is not eligible."""

    task_id: int
    eligible: list[AIRecord] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)  # AI id -> reasons
    details: dict[str, Any] = field(default_factory=dict)  # for error details (every candidate, as JSON)

    def refusals(self) -> str:
        """'claude-1: missing capability gpu; codex-1: rate-limited until 12:00'."""
        if not self.eligible and not self.refused:
            return "no AI is registered"
        return "; ".join(f"{ai}: {', '.join(reasons)}" for ai, reasons in self.refused.items())

    def why_none(self) -> str:
        return f"no AI can take task {self.task_id}: {self.refusals()}"


class Ranker(Protocol):
    """Ranks registered AIs for tasks (aictl.agents.router.Router)."""

    def rank(self, rows: Sequence[Mapping[str, Any]], *, ai_ids: Collection[str] | None = None) -> Iterator[Ranking]:
        """One Ranking per task row, in order (lazily: a claimer may stop at the first row it gets)."""
        ...

    def find(self, ai_id: str) -> AIRecord | None:
        """The registered AI with this id, or None."""
        ...


@dataclass(frozen=True)
class ClaimRequest:
    owner: str
    task_id: int | None = None  # None: the best claimable task
    # A registered AI (or its id): its labels, capabilities and concurrency limit apply. An id that is not
    # registered claims for that name only: `ai:<x>` labels and the policy judge it.
    ai: AIRecord | str | None = None
    routed: bool = False  # no pinned AI: the ranker's best AI that still fits takes it, else the next
    commands: bool = False  # routed: a task with a command is claimed for no AI (the command connector runs it)
    ai_ids: list[str] | None = None  # routed: only these AIs
    capabilities: list[str] | None = None  # the claimer's (default: the AI's)
    labels: list[str] | None = None  # only tasks with these labels
    ai_labels: list[str] | None = None  # the AI's labels (default: its registered ones)
    ttl: float | None = None
    wait: float = 0.0  # keep trying this many seconds (math.inf: until a task comes)
    dry_run: bool = False


@dataclass(frozen=True)
class Claimed:
    lease: Lease
    task: Task
    ai: AIRecord | None = None  # the registered AI it was claimed for (None: plain, or an unregistered name)
    routed: bool = False  # the ranker chose the AI: a rate limit hands the task to the next AI


class Claims:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        policy: PolicyGate | None = None,
        ranker: Ranker | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from aictl.tasks.service import TaskService

        self.store, self.settings, self.policy, self.ranker = store, settings, policy, ranker
        self.clock, self.sleep = clock, sleep
        self.svc = TaskService(store, settings, policy=policy, clock=clock)

    def find_ai(self, ai_id: str) -> AIRecord | None:
        return self.ranker.find(ai_id) if self.ranker is not None else None

    def claim(self, req: ClaimRequest) -> Claimed | None:
        """Claim as `req` says; None when nothing was claimable (within `req.wait` seconds)."""
        deadline = self.clock() + req.wait
        delay = 0.05
        while True:
            got = self._once(req)
            left = deadline - self.clock()
            if got is not None or left <= 0:
                return got
            self.sleep(min(delay, left))  # short polls with backoff: idle costs ~nothing
            delay = min(MAX_POLL_S, delay * 2)

    def _once(self, req: ClaimRequest) -> Claimed | None:
        ai = self.find_ai(req.ai) if isinstance(req.ai, str) else req.ai
        if ai is not None:
            return self._for_ai(req, ai)
        if req.routed and req.ai is None:
            return self._routed(req) if req.task_id is not None else self._next(req)
        got = self.svc.claim(
            req.owner,
            capabilities=req.capabilities,
            labels=req.labels,
            task_id=req.task_id,
            ttl=req.ttl,
            ai=req.ai if isinstance(req.ai, str) else None,
            ai_labels=req.ai_labels,
            dry_run=req.dry_run,
        )
        return None if got is None else Claimed(got.lease, got.task)

    def _for_ai(
        self, req: ClaimRequest, ai: AIRecord, *, routed: bool = False, task_id: int | None = None
    ) -> Claimed | None:
        """Claim for a registered AI, with its labels, capabilities and concurrency limit."""
        task_id = req.task_id if task_id is None else task_id
        if task_id is not None and self.ranker is not None and not routed:
            ranking = next(self.ranker.rank(self._rows([task_id]), ai_ids=[ai.id]))
            # busy is decided by the claim itself (ai_limit), under the lock that makes it exact
            blocking = [r for r in ranking.refused.get(ai.id, []) if not r.startswith("busy:")]
            if blocking:
                raise Conflict(
                    f"AI {ai.id} cannot take task {task_id}: {'; '.join(blocking)}",
                    hint=f"see every AI's reasons: aictl route {task_id}",
                    details={"reasons": blocking},
                )
        got = self.svc.claim(
            req.owner,
            capabilities=ai.capabilities if req.capabilities is None else req.capabilities,
            labels=req.labels,
            task_id=task_id,
            ttl=req.ttl,
            ai=ai.id,
            ai_labels=ai.labels if req.ai_labels is None else req.ai_labels,
            ai_limit=ai.max_concurrency,
            dry_run=req.dry_run,
        )
        return None if got is None else Claimed(got.lease, got.task, ai, routed=routed)

    def _plain(self, req: ClaimRequest, task_id: int) -> Claimed | None:
        got = self.svc.claim(req.owner, task_id=task_id, ttl=req.ttl, dry_run=req.dry_run)
        return None if got is None else Claimed(got.lease, got.task)

    def _ranker(self) -> Ranker:
        if self.ranker is None:
            raise AictlError("a routed claim needs a ranker (aictl.agents.router.Router)")
        return self.ranker

    def _routed(self, req: ClaimRequest) -> Claimed | None:
        """This task, for the best eligible AI that still fits; NotFound with every AI's reasons when none can."""
        assert req.task_id is not None
        (row,) = self._rows([req.task_id])
        if row.get("command") and req.commands:
            return self._plain(req, req.task_id)
        ranking = next(self._ranker().rank([row], ai_ids=req.ai_ids))
        for ai in ranking.eligible:
            try:
                got = self._for_ai(req, ai, routed=True)
            except NEXT_AI:
                continue
            if got is not None:
                return got
        hint = (
            f"see the details with: aictl route {req.task_id}"
            if ranking.eligible or ranking.refused
            else "register one: aictl ai register claude-1 --connector claude-code (or give the task a --command)"
        )
        raise NotFound(ranking.why_none(), hint=hint, details=ranking.details)

    def _next(self, req: ClaimRequest) -> Claimed | None:
        """The first claimable task (in claim order) some eligible AI can take, claimed for it.

        With `req.commands`, a task that has a command is claimed for no AI. Tasks the policy
        refused to this owner are skipped until the task or the policy changes.
        """
        from aictl.tasks.queries import any_lease_expired
        from aictl.tasks.sql import CLAIM_ORDER, claimable_where

        refused_for = (req.owner, self.policy.digest) if self.policy is not None else None
        with self.store.read() as tx:
            expired = any_lease_expired(tx, self.clock())
        if expired and not req.dry_run:
            # A dead holder's task and its locks would stay invisible to the pick below (the claim statement
            # reaps, but only once something was picked): without a daemon sweeping, the queue behind it froze.
            self.svc.reap()
        with self.store.read() as tx:
            where, params = claimable_where(
                tx, capabilities=req.capabilities, labels=req.labels, task_id=None, refused_for=refused_for
            )
            rows = tx.all(
                f"SELECT t.* FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT {NEXT_ROWS}",
                {**params, "now": self.clock()},
            )
        agent_rows = [r for r in rows if not r.get("command")]
        rankings = self._ranker().rank(agent_rows, ai_ids=req.ai_ids) if agent_rows else iter(())
        for row in rows:
            if row.get("command"):
                if req.commands:
                    try:
                        got = self._plain(req, row["id"])
                    except MISSED:
                        continue
                    if got is not None:
                        return got
                continue
            for ai in next(rankings).eligible:
                try:
                    got = self._for_ai(req, ai, routed=True, task_id=row["id"])
                except NEXT_AI:
                    continue
                except Conflict:
                    break  # the task was taken or is locked now: the next task
                if got is not None:
                    return got
        return None

    def ready(
        self, *, capabilities: list[str] | None = None, labels: list[str] | None = None, limit: int = 20
    ) -> list[ReadyEntry]:
        """Claimable tasks in claim order, then waiting ones with reasons; with AIs registered (and no
        capabilities given) a task no AI can take is not ready, and says why."""
        from aictl.tasks.queries import TaskQueries

        entries = TaskQueries(self.store, clock=self.clock).ready(capabilities=capabilities, labels=labels, limit=limit)
        ids = [e.id for e in entries if e.ready]
        if capabilities is not None or self.ranker is None or not ids:
            return entries
        rows = [r for r in self._rows(ids) if not r.get("command")]
        by_id = {e.id: e for e in entries}
        for row, ranking in zip(rows, self.ranker.rank(rows), strict=True):
            if not ranking.eligible and ranking.refused:  # no AI registered: nothing to judge
                by_id[row["id"]].ready = False
                by_id[row["id"]].reasons = [f"no AI can take it: {ranking.refusals()}"]
        return entries

    def _rows(self, task_ids: list[int]) -> list[dict[str, Any]]:
        from aictl.tasks.sql import as_json_list, in_list

        with self.store.read() as tx:
            found = {
                r["id"]: r
                for r in tx.all(
                    f"SELECT * FROM tasks WHERE id IN ({in_list(tx, 'ids')})", {"ids": as_json_list(task_ids)}
                )
            }
        missing = [i for i in task_ids if i not in found]
        if missing:
            raise NotFound(f"task {missing[0]} not found", hint="list tasks with: aictl task list")
        return [found[i] for i in task_ids]


__all__ = ["MISSED", "NEXT_AI", "ClaimRequest", "Claimed", "Claims", "Ranker", "Ranking"]
