"""Task state changes: create, claim, heartbeat, start, complete, fail, release, cancel, retry, reap.

Every public mutation is one write transaction that appends one audit event per
task it changes. Lease operations present (owner, lease_epoch); a mismatch
raises LeaseLost naming the epoch that holds the task now.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pydantic import BaseModel, Field, field_validator

from aictl.audit.events import append_event, canonical_json
from aictl.audit.redact import redact
from aictl.domain.errors import (
    AictlError,
    AILimitReached,
    CycleError,
    IllegalTransition,
    LeaseLost,
    NotFound,
    UsageError,
)
from aictl.domain.models import Lease, Task
from aictl.domain.status import HOLDING_LOCKS, LEASED, TaskStatus, check_transition
from aictl.store.base import Store, Tx
from aictl.tasks import conflicts, dag
from aictl.tasks.backoff import backoff_delay
from aictl.tasks.sql import CLAIM_ORDER, HELD, as_json_list, claimable_where, deps_of, in_list, row_to_task

T = TypeVar("T")
S = TaskStatus
_PG_CLAIM_LOCK = 727274002  # advisory lock key: claims that could conflict through locks
_PG_AI_LOCK = 727274003  # with hashtext(ai id): claims for one AI, so its concurrency limit holds


class TaskSpec(BaseModel):
    """What a user gives to create a task."""

    model_config = {"extra": "forbid"}

    title: str = Field(min_length=1)
    description: str = ""
    type: str = "task"
    priority: int = 0
    labels: list[str] = Field(default_factory=list)
    required_capabilities: list[str] = Field(default_factory=list)
    depends_on: list[int | str] = Field(default_factory=list)
    lock_paths: list[str] = Field(default_factory=list)
    exclusive: bool = False
    max_attempts: int | None = Field(None, ge=1)
    command: str | None = None  # what the `command` connector runs
    verify: str | None = None  # verification run after the agent (e.g. "pytest -q")
    key: str | None = None  # local name inside a batch file, for depends_on

    @field_validator("labels", "required_capabilities")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        return sorted({s.strip() for s in v if s.strip()})


class _DryRun(Exception):
    def __init__(self, result: Any):
        self.result = result


class _ClaimRace(Exception):
    """PostgreSQL only: a concurrent claim took a conflicting lock first; try again."""


class _Refused(Exception):
    """The policy refused an action: roll back, then keep the decision record."""

    def __init__(self, record: Any):
        self.record = record


@dataclass
class ClaimResult:
    lease: Lease
    task: Task


class TaskService:
    def __init__(self, store: Store, settings: Any, *, clock: Callable[[], float] = time.time,
                 policy: Any = None):
        self.store = store
        self.settings = settings
        self.actor: str = settings.actor
        self.clock = clock
        self.policy = policy  # aictl.policy.gate.PolicyGate, or None: no enforcement

    # -- plumbing -----------------------------------------------------------

    def _write(self, fn: Callable[[Tx, float], T], dry_run: bool = False) -> T:
        """Run fn in one write transaction; a dry run does all the work, then rolls back."""
        try:
            with self.store.write() as tx:
                result = fn(tx, self.clock())
                if dry_run:
                    raise _DryRun(result)
                return result
        except _DryRun as d:
            return d.result
        except _Refused as refused:
            self._keep_record(refused.record, dry_run)
            from aictl.policy.gate import denied_error

            raise denied_error(refused.record) from None

    def _keep_record(self, record: Any, dry_run: bool) -> None:
        if dry_run:
            return
        from aictl.policy.records import write_record

        with self.store.write() as tx:
            write_record(tx, record)

    def _enforce(self, tx: Tx, action: str, row: dict[str, Any], owner: str | None, *,
                 ai: str | None = None, ai_labels: list[str] | None = None, extra_check: Any = None,
                 before: str | None = None) -> Any:
        """Ask the policy about `action` on this task; keep the record, or refuse (rolling back)."""
        if self.policy is None:
            return None
        from aictl.policy.records import write_record

        facts = task_facts(row)
        if before is not None:
            facts["status"] = before  # the policy judges the task as it is when asked, not after the change
        record = self.policy.check(action, ai=ai or owner, actor=owner or self.actor, ai_labels=ai_labels,
                                   task=facts, epoch=row["lease_epoch"] or None)
        if record.effect == "allow" and extra_check is not None:
            extra_check(record)
        if record.effect != "allow":
            raise _Refused(record)
        write_record(tx, record)
        return record

    def _row(self, tx: Tx, task_id: int) -> dict[str, Any]:
        row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task_id})
        if row is None:
            raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
        return row

    def _task(self, tx: Tx, row: dict[str, Any]) -> Task:
        return row_to_task(row, deps_of(tx, [row["id"]]).get(row["id"], []))

    def _event(self, tx: Tx, now: float, action: str, row: dict[str, Any], before: str | None,
               actor: str | None = None, **data: Any) -> None:
        after = {"status": row["status"]}
        if row["status"] in HOLDING_LOCKS or action == "claim":
            after["owner"] = row["owner"]
        append_event(
            tx, ts=now, actor=actor or self.actor, action=action, task_id=row["id"],
            lease_epoch=row["lease_epoch"] or None,
            before=None if before is None else {"status": before},
            after=after, data={k: v for k, v in data.items() if v is not None} or None,
        )
        if action not in _QUIET_ACTIONS:
            notify_daemons(tx)

    # -- create ---------------------------------------------------------------

    def create(self, spec: TaskSpec, *, dry_run: bool = False) -> Task:
        return self.create_many([spec], dry_run=dry_run)[0]

    def create_many(self, specs: list[TaskSpec], *, dry_run: bool = False) -> list[Task]:
        """Create tasks in one transaction; depends_on may name earlier or later keys of the batch."""
        created = self._write(self._creator(specs), dry_run)
        if len(specs) >= 200 and not dry_run and self.store.dialect == "postgresql":
            # A bulk load leaves the planner without statistics until autovacuum runs (up to a
            # minute); without them it sorts the whole queue on every claim instead of reading
            # the claim index in order.
            with self.store.write() as tx:
                tx.run("ANALYZE tasks")
        return created

    def create_in(self, tx: Tx, now: float, specs: list[TaskSpec]) -> list[Task]:
        """Create tasks inside the caller's write transaction (a schedule firing moves its schedule in the same one)."""
        return self._creator(specs)(tx, now)

    def _creator(self, specs: list[TaskSpec]) -> Callable[[Tx, float], list[Task]]:
        """Check a batch, and return the function that inserts it in a transaction."""
        from aictl.tasks.globs import GlobError, normalize_patterns

        keys = [s.key for s in specs if s.key]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise UsageError(f"duplicate task key(s) in batch: {', '.join(dupes)}")
        by_key = {s.key: i for i, s in enumerate(specs) if s.key}
        local_edges: dict[str, list[str]] = {}
        for i, s in enumerate(specs):
            for d in s.depends_on:
                if isinstance(d, str) and not d.isdigit():
                    if d not in by_key:
                        raise UsageError(f"task {s.key or s.title!r} depends on unknown key {d!r}")
                    local_edges.setdefault(s.key or f"#{i}", []).append(d)
        cycle = dag.find_cycle(local_edges)
        if cycle:
            raise CycleError(f"dependency cycle in batch: {dag.format_cycle(cycle)}")
        locks = []
        for s in specs:
            try:
                locks.append(normalize_patterns(s.lock_paths))
            except GlobError as e:
                raise UsageError(f"invalid lock path for task {s.title!r}: {e}") from None

        def run(tx: Tx, now: float) -> list[Task]:
            ids: dict[int, int] = {}
            # Insert in dependency order so every dependency exists first.
            order = _topo_order(specs, by_key)
            for i in order:
                s = specs[i]
                dep_ids = []
                for d in s.depends_on:
                    dep_ids.append(ids[by_key[d]] if isinstance(d, str) and not d.isdigit() else int(d))
                dep_ids = sorted(set(dep_ids))
                for d in dep_ids:
                    self._row(tx, d)  # NotFound names a missing dependency
                undone = [
                    r["id"] for r in tx.all(
                        f"SELECT id FROM tasks WHERE status != 'done' AND id IN ({in_list(tx, 'ids')}) ORDER BY id",
                        {"ids": as_json_list(dep_ids)}
                    )
                ] if dep_ids else []
                status = S.BLOCKED if undone else S.QUEUED
                row = tx.one(
                    "INSERT INTO tasks (title, description, type, priority, status, labels, required_capabilities,"
                    " lock_paths, exclusive, max_attempts, command, verify, created_at, updated_at)"
                    " VALUES (:title, :description, :type, :priority, :status, :labels, :caps, :locks, :excl,"
                    " :max_attempts, :command, :verify, :now, :now) RETURNING *",
                    {
                        "title": s.title, "description": s.description, "type": s.type, "priority": s.priority,
                        "status": status.value, "labels": as_json_list(s.labels),
                        "caps": as_json_list(s.required_capabilities), "locks": as_json_list(locks[i]),
                        "excl": int(s.exclusive), "max_attempts": s.max_attempts or self.settings.max_attempts,
                        "command": s.command, "verify": s.verify, "now": now,
                    },
                )
                ids[i] = row["id"]
                for d in dep_ids:
                    tx.run("INSERT INTO task_deps (task_id, depends_on) VALUES (:t, :d)", {"t": row["id"], "d": d})
                conflicts.index(tx, row["id"], locks[i])
                self._event(tx, now, "create", row, None, title=s.title, priority=s.priority,
                            depends_on=dep_ids or None, lock_paths=locks[i] or None,
                            waiting_on=undone or None)
            return [self._task(tx, self._row(tx, ids[i])) for i in range(len(specs))]

        return run

    def add_dependency(self, task_id: int, depends_on: int, *, dry_run: bool = False) -> Task:
        def run(tx: Tx, now: float) -> Task:
            row = self._row(tx, task_id)
            dep = self._row(tx, depends_on)
            if row["status"] not in (S.QUEUED, S.BLOCKED):
                raise IllegalTransition(
                    f"cannot add a dependency to task {task_id}: it is {row['status']}",
                    hint="dependencies can change only while a task waits (queued or blocked)",
                )
            edges = _reachable_edges(tx, depends_on)
            cycle = dag.cycle_through_new_edge(edges, task_id, depends_on)
            if cycle:
                raise CycleError(
                    f"task {task_id} cannot depend on {depends_on}: that closes the cycle {dag.format_cycle(cycle)}",
                    details={"cycle": cycle},
                )
            tx.run("INSERT INTO task_deps (task_id, depends_on) VALUES (:t, :d) ON CONFLICT DO NOTHING",
                   {"t": task_id, "d": depends_on})
            before = row["status"]
            if dep["status"] != S.DONE and before == S.QUEUED:
                check_transition(task_id, S.QUEUED, S.BLOCKED, "block")
                row = tx.one("UPDATE tasks SET status = 'blocked', updated_at = :now WHERE id = :id RETURNING *",
                             {"now": now, "id": task_id})
            self._event(tx, now, "add_dependency", row, before, depends_on=depends_on)
            return self._task(tx, row)

        return self._write(run, dry_run)

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
        """Atomically claim the best ready task (or `task_id`); None when nothing is claimable.

        With a policy, a task the policy refuses to this AI is skipped (its decision
        record kept) and the next one is tried; the refusal stands until the task
        or the policy changes.

        With `ai`, the claim is made for that AI: the task records it (tasks.ai), its
        `ai:<x>` labels must name the AI or one of `ai_labels`, and with `ai_limit`
        the AI may hold at most that many tasks — counted inside this transaction
        (PostgreSQL: under an advisory lock per AI), so racing claimers cannot exceed it.
        """
        ttl = ttl or self.settings.lease_ttl
        for_ai = ai
        ai = ai or owner
        for _ in range(100):
            try:
                with self.store.write() as tx:
                    result = self._claim(tx, self.clock(), owner, capabilities, labels, task_id, ttl, ai, ai_labels,
                                         for_ai, ai_limit)
                    if dry_run:
                        raise _DryRun(result)
                    return result
            except _DryRun as d:
                return d.result
            except _ClaimRace:
                continue
            except _Refused as refused:
                self._keep_record(refused.record, dry_run)
                if task_id is not None or dry_run:
                    from aictl.policy.gate import denied_error

                    raise denied_error(refused.record) from None
        raise AictlError("could not claim: too much contention on conflicting locks or policy refusals; try again")

    def _claim(self, tx: Tx, now: float, owner: str, caps: list[str] | None, labels: list[str] | None,
               task_id: int | None, ttl: float, ai: str, ai_labels: list[str] | None,
               for_ai: str | None = None, ai_limit: int | None = None) -> ClaimResult | None:
        self._reap(tx, now)
        if for_ai is not None and ai_limit is not None and not self._ai_has_room(tx, for_ai, ai_limit, task_id):
            return None
        refused_for = (ai, self.policy.digest) if self.policy is not None and task_id is None else None
        where, params = claimable_where(tx, capabilities=caps, labels=labels, task_id=task_id,
                                        refused_for=refused_for,
                                        for_ai=(for_ai, ai_labels or []) if for_ai is not None else None)
        skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
        row = tx.one(
            "UPDATE tasks SET status = 'claimed', owner = :owner, lease_epoch = lease_epoch + 1,"
            " lease_expires_at = :expires, heartbeat_at = :now, updated_at = :now, ai = :for_ai, activity = NULL"
            f" WHERE id = (SELECT t.id FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT 1{skip})"
            " AND status = 'queued' RETURNING *",
            {**params, "owner": owner, "expires": now + ttl, "now": now, "for_ai": for_ai},
        )
        if row is None:
            if task_id is not None:
                self._explain_unclaimable(tx, task_id, caps, for_ai, ai_labels)
            return None
        if for_ai is not None:
            tx.run("UPDATE ais SET last_assigned_at = :now WHERE id = :ai", {"now": now, "ai": for_ai})
        patterns = json.loads(row["lock_paths"])
        if tx.dialect == "postgresql":
            self._pg_recheck(tx, row, bool(patterns))
        self._enforce(tx, "claim", row, owner, ai=ai, ai_labels=ai_labels, before=S.QUEUED.value)
        for p in patterns + (["**"] if row["exclusive"] else []):
            tx.run(
                "INSERT INTO locks (task_id, pattern, owner, lease_epoch, acquired_at)"
                " VALUES (:t, :p, :o, :e, :now)",
                {"t": row["id"], "p": p, "o": owner, "e": row["lease_epoch"], "now": now},
            )
        self._event(tx, now, "claim", row, S.QUEUED, actor=owner, ttl=ttl, ai=for_ai)
        lease = Lease(task_id=row["id"], owner=owner, lease_epoch=row["lease_epoch"],
                      lease_expires_at=row["lease_expires_at"])
        return ClaimResult(lease=lease, task=self._task(tx, row))

    def _pg_recheck(self, tx: Tx, row: dict[str, Any], has_locks: bool) -> None:
        """PostgreSQL's snapshot may miss a concurrent claim of a conflicting task.

        Claims that take locks (or are exclusive) serialize on an exclusive
        advisory lock; plain claims take it shared. After it is granted, a
        fresh statement sees every committed claim, so a conflict is caught here.
        """
        exclusive = bool(row["exclusive"])
        if has_locks or exclusive:
            tx.one(f"SELECT pg_advisory_xact_lock({_PG_CLAIM_LOCK})")
        else:
            tx.one(f"SELECT pg_advisory_xact_lock_shared({_PG_CLAIM_LOCK})")
        clash = tx.one(
            f"SELECT x.id FROM tasks x WHERE x.id != :id AND x.status IN {HELD}"
            " AND (x.exclusive = 1 OR :excl = 1) LIMIT 1",
            {"id": row["id"], "excl": int(exclusive)},
        )
        if clash is None and has_locks:
            clash = tx.one(
                "SELECT c.other_id AS id FROM task_conflicts c JOIN locks l ON l.task_id = c.other_id"
                " WHERE c.task_id = :id LIMIT 1",
                {"id": row["id"]},
            )
        if clash is not None:
            raise _ClaimRace()

    def _ai_has_room(self, tx: Tx, ai: str, limit: int, task_id: int | None) -> bool:
        """Does `ai` hold fewer than `limit` tasks? Counted under a per-AI lock, so concurrent claims queue here."""
        if tx.dialect == "postgresql":
            # Held until commit: the next claimer for this AI counts after this claim is visible.
            tx.one(f"SELECT pg_advisory_xact_lock({_PG_AI_LOCK}, hashtext(:ai))", {"ai": ai})
        held = tx.one(f"SELECT COUNT(*) AS n FROM tasks WHERE ai = :ai AND status IN {HELD}", {"ai": ai})["n"]
        if held < limit:
            return True
        if task_id is not None:
            raise AILimitReached(f"AI {ai!r} is at its concurrency limit: {held}/{limit} tasks held",
                                 hint=f"wait for one to finish, or raise it: aictl ai register {ai} … "
                                      "--max-concurrency N --replace",
                                 details={"ai": ai, "held": held, "limit": limit})
        return False

    def _explain_unclaimable(self, tx: Tx, task_id: int, caps: list[str] | None = None, for_ai: str | None = None,
                             ai_labels: list[str] | None = None) -> None:
        from aictl.tasks.queries import reasons_not_ready
        from aictl.tasks.sql import ai_label_values

        row = self._row(tx, task_id)
        if row["status"] != S.QUEUED:
            check_transition(task_id, row["status"], S.CLAIMED, "claim")
        reasons = reasons_not_ready(tx, [row], self.clock(), capabilities=caps).get(task_id) or []
        if for_ai is not None:
            accepts = set(ai_label_values(for_ai, ai_labels))
            unmet = [x for x in json.loads(row["labels"]) if x.startswith("ai:") and x not in accepts]
            if unmet:
                reasons.append(f"it wants {', '.join(unmet)}, and AI {for_ai} is not that")
        reasons = reasons or ["it is not claimable"]
        from aictl.domain.errors import LockConflict

        raise LockConflict(f"cannot claim task {task_id}: {'; '.join(reasons)}",
                           hint=f"see why with: aictl task ready", details={"reasons": reasons})

    def _lease_update(self, tx: Tx, task_id: int, owner: str, epoch: int, verb: str,
                      allowed_from: frozenset[TaskStatus], set_sql: str, params: dict[str, Any]) -> tuple[dict, str]:
        """UPDATE guarded by (owner, epoch, status); on a miss, say exactly why."""
        before = tx.one("SELECT status FROM tasks WHERE id = :id AND owner = :owner AND lease_epoch = :epoch",
                        {"id": task_id, "owner": owner, "epoch": epoch})
        row = tx.one(
            f"UPDATE tasks SET {set_sql} WHERE id = :id AND owner = :owner AND lease_epoch = :epoch"
            f" AND status IN ({', '.join(repr(s.value) for s in allowed_from)}) RETURNING *",
            {**params, "id": task_id, "owner": owner, "epoch": epoch},
        )
        if row is None:
            self._lease_lost(tx, task_id, owner, epoch, verb)
        return row, before["status"]

    def _lease_lost(self, tx: Tx, task_id: int, owner: str, epoch: int, verb: str) -> None:
        cur = self._row(tx, task_id)
        if cur["lease_epoch"] != epoch:
            holder = f" by {cur['owner']}" if cur["status"] in LEASED else ""
            raise LeaseLost(
                f"lease lost: task {task_id} is at lease epoch {cur['lease_epoch']} ({cur['status']}{holder});"
                f" you presented epoch {epoch}",
                hint=f"your result is stale; see the task with: aictl task get {task_id}",
                details={"task_id": task_id, "presented_epoch": epoch, "current_epoch": cur["lease_epoch"],
                         "current_owner": cur["owner"], "status": cur["status"]},
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
        check_transition(task_id, cur["status"], _VERB_TARGET.get(verb, cur["status"]), verb)
        raise IllegalTransition(f"cannot {verb} task {task_id}: it is {cur['status']}")

    def heartbeat(self, task_id: int, owner: str, epoch: int, *, ttl: float | None = None) -> Lease:
        """Extend the lease. Not an audit event: heartbeats change no state a reader cares about."""
        ttl = ttl or self.settings.lease_ttl

        def run(tx: Tx, now: float) -> Lease:
            row, _ = self._lease_update(tx, task_id, owner, epoch, "heartbeat", LEASED,
                                        "lease_expires_at = :exp, heartbeat_at = :now", {"exp": now + ttl, "now": now})
            return Lease(task_id=task_id, owner=owner, lease_epoch=epoch, lease_expires_at=row["lease_expires_at"])

        return self._write(run)

    def start(self, task_id: int, owner: str, epoch: int, *, ai: str | None = None, dry_run: bool = False) -> Task:
        def run(tx: Tx, now: float) -> Task:
            row, before = self._lease_update(tx, task_id, owner, epoch, "start", frozenset({S.CLAIMED}),
                                             "status = 'running', heartbeat_at = :now, updated_at = :now",
                                             {"now": now})
            self._enforce(tx, "start", row, owner, ai=ai, before=before)
            self._event(tx, now, "start", row, before, actor=owner)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def complete(self, task_id: int, owner: str, epoch: int, *, result: Any = None, ai: str | None = None,
                 dry_run: bool = False) -> Task:
        def run(tx: Tx, now: float) -> Task:
            row, before = self._lease_update(
                tx, task_id, owner, epoch, "complete", LEASED,
                "status = 'done', lease_expires_at = NULL, next_run_at = NULL, result = :result, updated_at = :now",
                {"now": now, "result": None if result is None else canonical_json(redact(result))},
            )
            self._enforce(tx, "complete", row, owner, ai=ai, before=before,
                          extra_check=lambda record: _require_evidence(tx, record, task_id, epoch))
            self._free_locks(tx, task_id)
            self._event(tx, now, "complete", row, before, actor=owner)
            self._unblock_dependents(tx, now, task_id)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def fail(self, task_id: int, owner: str, epoch: int, *, reason: str = "", retryable: bool = False,
             dry_run: bool = False) -> Task:
        """Fail an attempt. A retryable failure requeues with backoff while attempts remain."""

        def run(tx: Tx, now: float) -> Task:
            cur = self._row(tx, task_id)
            attempts = cur["attempts"] + 1
            again = retryable and attempts < cur["max_attempts"]
            delay = backoff_delay(attempts, base=self.settings.backoff_base, cap=self.settings.backoff_max)
            row, before = self._lease_update(
                tx, task_id, owner, epoch, "fail", LEASED,
                "status = :st, attempts = attempts + 1, lease_expires_at = NULL, next_run_at = :nra,"
                " result = :result, updated_at = :now",
                {"st": S.QUEUED.value if again else S.FAILED.value, "nra": now + delay if again else None,
                 "now": now, "result": canonical_json(redact({"error": reason, "retryable": retryable}))},
            )
            self._free_locks(tx, task_id)
            self._event(tx, now, "fail", row, before, actor=owner, reason=reason, retryable=retryable,
                        retry_in_s=round(delay, 3) if again else None)
            if not again:
                self._dependency_failed(tx, now, task_id)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def release(self, task_id: int, owner: str, epoch: int, *, reason: str = "", ai: str | None = None,
                dry_run: bool = False) -> Task:
        """Give the task back to the queue without counting an attempt."""

        def run(tx: Tx, now: float) -> Task:
            row, before = self._lease_update(tx, task_id, owner, epoch, "release", LEASED,
                                             "status = 'queued', lease_expires_at = NULL, updated_at = :now",
                                             {"now": now})
            self._enforce(tx, "release", row, owner, ai=ai, before=before)
            self._free_locks(tx, task_id)
            self._event(tx, now, "release", row, before, actor=owner, reason=reason or None)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def await_approval(self, task_id: int, owner: str, epoch: int, *, record: Any = None,
                       reason: str = "") -> Task:
        """The policy wants a human: park the task (lease and locks given up) until approved or rejected."""

        def run(tx: Tx, now: float) -> Task:
            row, before = self._lease_update(tx, task_id, owner, epoch, "await approval", LEASED,
                                             "status = 'awaiting_approval', lease_expires_at = NULL,"
                                             " updated_at = :now", {"now": now})
            if record is not None:
                from aictl.policy.records import write_record

                write_record(tx, record)
            self._free_locks(tx, task_id)
            self._event(tx, now, "await_approval", row, before, actor=owner, reason=reason or None,
                        decision_id=getattr(record, "decision_id", None))
            return self._task(tx, row)

        return self._write(run)

    # -- administrative changes (no lease needed) -----------------------------

    def approve(self, task_id: int, *, comment: str = "", dry_run: bool = False) -> Task:
        """A human approves a parked task: it goes back to the queue, and the approval is on record."""
        return self._decide_approval(task_id, "approve", S.QUEUED, comment, dry_run)

    def reject(self, task_id: int, *, comment: str = "", dry_run: bool = False) -> Task:
        return self._decide_approval(task_id, "reject", S.FAILED, comment, dry_run)

    def _decide_approval(self, task_id: int, verb: str, target: TaskStatus, comment: str, dry_run: bool) -> Task:
        def run(tx: Tx, now: float) -> Task:
            cur = self._row(tx, task_id)
            if cur["status"] != S.AWAITING_APPROVAL:
                raise IllegalTransition(f"cannot {verb} task {task_id}: it is {cur['status']}, not awaiting approval",
                                        hint="see the approval inbox: aictl task list --status awaiting_approval")
            if self.policy is not None:  # who may approve is itself a policy question
                record = self.policy.check("approve", ai=self.actor, actor=self.actor, task=task_facts(cur),
                                           context={"verdict": verb}, now=now)
                if record.effect != "allow":
                    raise _Refused(record)
                from aictl.policy.records import write_record

                write_record(tx, record)
            result = canonical_json({"error": f"rejected by {self.actor}: {comment}"}) if target == S.FAILED else None
            row = tx.one("UPDATE tasks SET status = :st, result = COALESCE(:res, result), updated_at = :now"
                         " WHERE id = :id RETURNING *", {"st": target.value, "res": result, "now": now, "id": task_id})
            self._event(tx, now, verb, row, cur["status"], comment=comment or None)
            if target == S.FAILED:
                self._dependency_failed(tx, now, task_id)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def store_status(self, task_id: int) -> str:
        """The task's current status (a cheap read, polled by running executors)."""
        with self.store.read() as tx:
            return self._row(tx, task_id)["status"]

    def approved_since(self, task_id: int, since: float) -> dict[str, Any] | None:
        """The latest approval of a task at or after `since` (who and why), if any."""
        with self.store.read() as tx:
            row = tx.one("SELECT actor, ts, data FROM events WHERE task_id = :t AND action = 'approve' AND ts >= :s"
                         " ORDER BY id DESC LIMIT 1", {"t": task_id, "s": since})
        if row is None:
            return None
        return {"by": row["actor"], "at": row["ts"], "comment": (json.loads(row["data"]) or {}).get("comment")
                if row["data"] else None}

    def cancel(self, task_id: int, *, reason: str = "", dry_run: bool = False) -> Task:
        def run(tx: Tx, now: float) -> Task:
            cur = self._row(tx, task_id)
            check_transition(task_id, cur["status"], S.CANCELLED, "cancel")
            row = tx.one("UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = :now"
                         " WHERE id = :id RETURNING *", {"now": now, "id": task_id})
            self._free_locks(tx, task_id)
            self._event(tx, now, "cancel", row, cur["status"], reason=reason or None)
            self._dependency_failed(tx, now, task_id)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def retry(self, task_id: int, *, dry_run: bool = False) -> Task:
        """Send a failed or cancelled task back to the queue with a fresh attempt budget."""

        def run(tx: Tx, now: float) -> Task:
            cur = self._row(tx, task_id)
            undone = tx.one(
                "SELECT COUNT(*) AS n FROM task_deps d JOIN tasks p ON p.id = d.depends_on"
                " WHERE d.task_id = :id AND p.status != 'done'", {"id": task_id})["n"]
            target = S.BLOCKED if undone else S.QUEUED
            check_transition(task_id, cur["status"], target, "retry")
            row = tx.one("UPDATE tasks SET status = :st, attempts = 0, next_run_at = NULL, result = NULL,"
                         " updated_at = :now WHERE id = :id RETURNING *",
                         {"st": target.value, "now": now, "id": task_id})
            conflicts.index(tx, task_id, json.loads(row["lock_paths"]))
            self._event(tx, now, "retry", row, cur["status"])
            self._revive_failed_dependents(tx, now, task_id)
            return self._task(tx, row)

        return self._write(run, dry_run)

    def reap(self) -> list[Task]:
        """Sweep expired leases now (claims do this too, before they pick)."""
        return self._write(lambda tx, now: [self._task(tx, r) for r in self._reap(tx, now)])

    # -- internals --------------------------------------------------------------

    def _reap(self, tx: Tx, now: float) -> list[dict[str, Any]]:
        lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
        expired = tx.all(
            "SELECT id, status FROM tasks WHERE status IN ('claimed', 'running') AND lease_expires_at < :now"
            f" ORDER BY id{lock}", {"now": now},
        )
        if not expired:
            return []
        old_status = {r["id"]: r["status"] for r in expired}
        rows = tx.all(
            "UPDATE tasks SET"
            " status = CASE WHEN attempts + 1 >= max_attempts THEN 'failed' ELSE 'queued' END,"
            " attempts = attempts + 1, lease_expires_at = NULL, updated_at = :now,"
            " result = CASE WHEN attempts + 1 >= max_attempts THEN :res ELSE result END"
            f" WHERE id IN ({in_list(tx, 'ids')}) AND status IN ('claimed', 'running') AND lease_expires_at < :now"
            " RETURNING *",
            {"now": now, "ids": as_json_list(old_status), "res": canonical_json({"error": "lease expired; attempts exhausted"})},
        )
        from aictl.logging import get_logger

        get_logger("aictl.tasks").info("reaped expired leases", tasks=[r["id"] for r in rows])
        for row in rows:
            self._free_locks(tx, row["id"])
            self._event(tx, now, "lease_expired", row, old_status[row["id"]], owner=row["owner"],
                        attempts=row["attempts"])
            if row["status"] == S.FAILED:
                self._dependency_failed(tx, now, row["id"])
        return rows

    def _free_locks(self, tx: Tx, task_id: int) -> None:
        tx.run("DELETE FROM locks WHERE task_id = :id", {"id": task_id})

    def _lock_dependents(self, tx: Tx, task_id: int) -> None:
        # PostgreSQL: lock dependents before reading their other dependencies, so two
        # dependencies finishing at once cannot both miss each other (write skew).
        if tx.dialect == "postgresql":
            tx.all("SELECT id FROM tasks WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on = :id)"
                   " ORDER BY id FOR UPDATE", {"id": task_id})

    def _unblock_dependents(self, tx: Tx, now: float, task_id: int) -> None:
        self._lock_dependents(tx, task_id)
        rows = tx.all(
            "UPDATE tasks SET status = 'queued', updated_at = :now WHERE status = 'blocked'"
            " AND id IN (SELECT task_id FROM task_deps WHERE depends_on = :id)"
            " AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks p ON p.id = d.depends_on"
            "   WHERE d.task_id = tasks.id AND p.status != 'done') RETURNING *",
            {"now": now, "id": task_id},
        )
        for row in rows:
            self._event(tx, now, "unblock", row, S.BLOCKED, dependency=task_id)

    def _dependency_failed(self, tx: Tx, now: float, task_id: int) -> None:
        """Dependents of a failed/cancelled task stay blocked, or fail too, as settings say."""
        if self.settings.on_dependency_failure != "fail":
            return
        self._lock_dependents(tx, task_id)
        rows = tx.all(
            "UPDATE tasks SET status = 'failed', result = :res, updated_at = :now WHERE status = 'blocked'"
            " AND id IN (SELECT task_id FROM task_deps WHERE depends_on = :id) RETURNING *",
            {"now": now, "id": task_id, "res": canonical_json({"error": f"dependency #{task_id} did not finish"})},
        )
        for row in rows:
            self._event(tx, now, "dependency_failed", row, S.BLOCKED, dependency=task_id)
            self._dependency_failed(tx, now, row["id"])

    def _revive_failed_dependents(self, tx: Tx, now: float, task_id: int) -> None:
        """Undo the cascade of on_dependency_failure=fail when the dependency is retried."""
        if self.settings.on_dependency_failure != "fail":
            return
        marker = canonical_json({"error": f"dependency #{task_id} did not finish"})
        rows = tx.all(
            "UPDATE tasks SET status = 'blocked', result = NULL, updated_at = :now WHERE status = 'failed'"
            " AND result = :res AND id IN (SELECT task_id FROM task_deps WHERE depends_on = :id) RETURNING *",
            {"now": now, "id": task_id, "res": marker},
        )
        for row in rows:
            self._event(tx, now, "dependency_retried", row, S.FAILED, dependency=task_id)
            self._revive_failed_dependents(tx, now, row["id"])


# After these no task can have become claimable, so no daemon needs waking.
_QUIET_ACTIONS = frozenset({"claim", "start", "add_dependency"})


def notify_daemons(tx: Tx) -> None:
    """PostgreSQL: wake the LISTENing daemons (aictl.daemon.wakeup) when this transaction commits; once per tx."""
    if tx.dialect == "postgresql" and not getattr(tx, "_aictl_notified", False):
        tx._aictl_notified = True  # type: ignore[attr-defined]
        tx.run("NOTIFY aictl_tasks")


def task_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What a policy sees of a task (resource.task)."""
    return {
        "id": row["id"], "title": row["title"], "type": row["type"], "priority": row["priority"],
        "status": row["status"], "labels": json.loads(row["labels"]),
        "required_capabilities": json.loads(row["required_capabilities"]),
        "lock_paths": json.loads(row["lock_paths"]), "exclusive": bool(row["exclusive"]),
        "attempts": row["attempts"], "max_attempts": row["max_attempts"],
    }


def _require_evidence(tx: Tx, record: Any, task_id: int, epoch: int) -> None:
    """limits.require_evidence: this attempt must carry each named kind (a test report must pass)."""
    needed = record.limits.get("require_evidence") or []
    if not needed:
        return
    from aictl.audit.evidence import evidence_by_kind

    have = evidence_by_kind(tx, task_id, epoch)
    missing = [k for k in needed if k not in have]
    failing = [k for k in needed if k == "test_report" and k in have and not any(s.get("ok") for s in have[k])]
    if missing or failing:
        record.effect = "deny"
        if missing:
            record.reasons.append(f"completion requires evidence: {', '.join(missing)} (none attached to epoch {epoch})")
        if failing:
            record.reasons.append("completion requires a passing test_report; the attached report has failures")


_VERB_TARGET = {"start": S.RUNNING, "complete": S.DONE, "fail": S.FAILED, "release": S.QUEUED,
                "heartbeat": S.RUNNING}


def _topo_order(specs: list[TaskSpec], by_key: dict[str | None, int]) -> list[int]:
    """Indices of specs so that batch-local dependencies come first (cycles were rejected before)."""
    done: list[int] = []
    seen: set[int] = set()

    def visit(i: int) -> None:
        if i in seen:
            return
        seen.add(i)
        for d in specs[i].depends_on:
            if isinstance(d, str) and not d.isdigit():
                visit(by_key[d])
        done.append(i)

    for i in range(len(specs)):
        visit(i)
    return done


def _reachable_edges(tx: Tx, start: int) -> dict[int, list[int]]:
    """Dependency edges reachable from `start` (one recursive query)."""
    rows = tx.all(
        "WITH RECURSIVE up(id) AS (SELECT CAST(:start AS BIGINT) UNION SELECT d.depends_on FROM task_deps d JOIN up ON d.task_id = up.id)"
        " SELECT d.task_id, d.depends_on FROM task_deps d JOIN up ON d.task_id = up.id",
        {"start": start},
    )
    edges: dict[int, list[int]] = {}
    for r in rows:
        edges.setdefault(r["task_id"], []).append(r["depends_on"])
    return edges
