"""Leases: the atomic claim, and the operations a lease holder performs under its fence.

* `claim` picks the best claimable task (aictl.tasks.sql.claimable_where, in
  CLAIM_ORDER) and takes it in one `UPDATE … RETURNING`, bumping lease_epoch,
  then inserts its lock rows and one `claim` event.
* `heartbeat`, `start`, `complete`, `fail`, `release`, `await_approval` present
  (owner, lease_epoch). Each is one UPDATE guarded by the fence (`fence_sql`);
  when it matches nothing, `check_fence` says why: LeaseLost naming the epoch and
  owner that hold the task now, or IllegalTransition (aictl.tasks.fence, which
  evidence attachment in aictl.audit.evidence calls too).

PostgreSQL claim protocol (SQLite needs none: BEGIN IMMEDIATE serializes writers).
A claim's snapshot may miss a concurrent claim, so:
* every claim first takes the claim advisory lock, shared, in the same statement
  that probes for expired leases. A claim of an exclusive task needs the floor
  empty: it rolls back and claims again holding that lock exclusively, so every
  other claim has committed (and is visible) or waits.
* a claim of a task with lock globs then takes a second advisory lock
  exclusively and re-checks glob conflicts in a fresh statement (which sees
  every claim committed before it), retrying on a clash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aictl.audit.events import canonical_json
from aictl.domain.errors import AictlError, AILimitReached, LeaseLost, LockConflict, UsageError
from aictl.domain.models import Lease, Task
from aictl.domain.redact import redact
from aictl.domain.status import LEASED, TaskStatus, check_transition
from aictl.store.base import Tx
from aictl.tasks.backoff import backoff_delay
from aictl.tasks.fence import check_fence, fence_sql
from aictl.tasks.recovery import dependency_failed, expired_probe, reap_in, unblock_dependents
from aictl.tasks.sql import CLAIM_ORDER, ai_label_values, claimable_where, returning_task
from aictl.tasks.txn import DryRun, Refused, TaskPlane, free_locks, load_row, to_task

S = TaskStatus
_PG_CLAIM_LOCK = 727274002  # every claim: shared; exclusively by a claim that takes an exclusive task
_PG_AI_LOCK = 727274003  # with hashtext(ai id): claims for one AI, so its concurrency limit holds
_PG_GLOB_LOCK = 727274004  # claims of tasks with lock globs, to re-check glob conflicts one at a time


@dataclass
class ClaimResult:
    lease: Lease
    task: Task


class _ClaimRace(Exception):
    """PostgreSQL only: a concurrent claim took a conflicting lock first; try again."""


class _NeedsFloor(Exception):
    """PostgreSQL only: the claim picked an exclusive task; claim again holding the claim lock exclusively."""


def lease_ttl(p: TaskPlane, ttl: float | None) -> float:
    """The TTL to use; UsageError for one outside TTL_MIN..TTL_MAX (0 or inf would double-run or never expire)."""
    from aictl.domain.limits import check_ttl

    try:
        return check_ttl(ttl) or p.settings.lease_ttl
    except ValueError as e:
        raise UsageError(str(e)) from None


# -- claim ---------------------------------------------------------------------------------


def claim(
    p: TaskPlane,
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
    ttl = lease_ttl(p, ttl)
    want = _Want(owner, capabilities, labels, task_id, ttl, ai or owner, ai_labels, ai, ai_limit)
    floor = False
    for _ in range(100):
        try:
            with p.store.write() as tx:
                row = _claim(p, tx, p.clock(), want, floor)
                if dry_run:
                    raise DryRun(row)
            return _claimed(row)
        except DryRun as d:
            return _claimed(d.result)
        except _NeedsFloor:
            floor = True
        except _ClaimRace:
            continue
        except Refused as refused:
            p.keep_record(refused.record, dry_run)
            if task_id is not None or dry_run:
                from aictl.policy.gate import denied_error

                raise denied_error(refused.record) from None
    raise AictlError("could not claim: too much contention on conflicting locks or policy refusals; try again")


@dataclass
class _Want:
    owner: str
    caps: list[str] | None
    labels: list[str] | None
    task_id: int | None
    ttl: float
    ai: str  # who the policy judges: the AI, else the owner
    ai_labels: list[str] | None
    for_ai: str | None  # the registered AI the claim is made for (tasks.ai)
    ai_limit: int | None


def _claimed(row: dict[str, Any] | None) -> ClaimResult | None:
    if row is None:
        return None
    lease = Lease(
        task_id=row["id"], owner=row["owner"], lease_epoch=row["lease_epoch"], lease_expires_at=row["lease_expires_at"]
    )
    return ClaimResult(lease=lease, task=to_task(row))


def _claim(p: TaskPlane, tx: Tx, now: float, w: _Want, floor: bool) -> dict[str, Any] | None:
    """The claim transaction; returns the claimed row (the lease and Task are built after commit)."""
    pg = tx.dialect == "postgresql"
    lock = f"pg_advisory_xact_lock{'' if floor else '_shared'}({_PG_CLAIM_LOCK}) AS claim_lock, " if pg else ""
    if tx.row(f"SELECT {lock}{expired_probe(tx)}", {"now": now})["expired"]:
        reap_in(p, tx, now)
    if w.for_ai is not None and w.ai_limit is not None and not _ai_has_room(tx, w.for_ai, w.ai_limit, w.task_id):
        return None
    refused_for = (w.ai, p.policy.digest) if p.policy is not None and w.task_id is None else None
    where, params = claimable_where(
        tx,
        capabilities=w.caps,
        labels=w.labels,
        task_id=w.task_id,
        refused_for=refused_for,
        for_ai=(w.for_ai, w.ai_labels or []) if w.for_ai is not None else None,
    )
    skip = " FOR UPDATE SKIP LOCKED" if pg else ""
    row = tx.one(
        "UPDATE tasks SET status = 'claimed', owner = :owner, lease_epoch = lease_epoch + 1,"
        " lease_expires_at = :expires, heartbeat_at = :now, updated_at = :now, ai = :for_ai, activity = NULL"
        f" WHERE id = (SELECT t.id FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT 1{skip})"
        f" AND status = 'queued' {returning_task(tx)}",
        {**params, "owner": w.owner, "expires": now + w.ttl, "now": now, "for_ai": w.for_ai},
    )
    if row is None:
        if w.task_id is not None:
            _explain_unclaimable(tx, now, w)
        return None
    patterns = json.loads(row["lock_paths"])
    if pg and not floor:
        if row["exclusive"]:
            raise _NeedsFloor()
        if patterns:
            _pg_recheck_globs(tx, row["id"])
    if w.for_ai is not None:
        tx.run("UPDATE ais SET last_assigned_at = :now WHERE id = :ai", {"now": now, "ai": w.for_ai})
    p.enforce(tx, "claim", row, w.owner, ai=w.ai, ai_labels=w.ai_labels, before=S.QUEUED.value)
    held = patterns + (["**"] if row["exclusive"] else [])
    if held:
        values = ", ".join(f"(:t, :p{i}, :o, :e, :now)" for i in range(len(held)))
        tx.run(
            f"INSERT INTO locks (task_id, pattern, owner, lease_epoch, acquired_at) VALUES {values}",
            {
                "t": row["id"],
                "o": w.owner,
                "e": row["lease_epoch"],
                "now": now,
                **{f"p{i}": pat for i, pat in enumerate(held)},
            },
        )
    p.event(tx, now, "claim", row, S.QUEUED, actor=w.owner, ttl=w.ttl, ai=w.for_ai)
    return row


def _pg_recheck_globs(tx: Tx, task_id: int) -> None:
    """After the glob lock is granted, a fresh statement sees every committed claim: catch a clash here."""
    tx.one(f"SELECT pg_advisory_xact_lock({_PG_GLOB_LOCK})")
    clash = tx.one(
        "SELECT c.other_id AS id FROM task_conflicts c JOIN locks l ON l.task_id = c.other_id"
        " WHERE c.task_id = :id LIMIT 1",
        {"id": task_id},
    )
    if clash is not None:
        raise _ClaimRace()


def _ai_has_room(tx: Tx, ai: str, limit: int, task_id: int | None) -> bool:
    """Does `ai` hold fewer than `limit` tasks? Counted under a per-AI lock, so concurrent claims queue here."""
    if tx.dialect == "postgresql":
        # Held until commit: the next claimer for this AI counts after this claim is visible.
        tx.one(f"SELECT pg_advisory_xact_lock({_PG_AI_LOCK}, hashtext(:ai))", {"ai": ai})
    from aictl.tasks.queries import held_by_ai

    held = len(held_by_ai(tx, ai))
    if held < limit:
        return True
    if task_id is not None:
        raise AILimitReached(
            f"AI {ai!r} is at its concurrency limit: {held}/{limit} tasks held",
            hint=f"wait for one to finish, or raise it: aictl ai register {ai} … --max-concurrency N --replace",
            details={"ai": ai, "held": held, "limit": limit},
        )
    return False


def _explain_unclaimable(tx: Tx, now: float, w: _Want) -> None:
    from aictl.tasks.queries import reasons_not_ready

    assert w.task_id is not None
    row = load_row(tx, w.task_id)
    if row["status"] != S.QUEUED:
        check_transition(w.task_id, row["status"], S.CLAIMED, "claim")
    reasons = reasons_not_ready(tx, [row], now, capabilities=w.caps).get(w.task_id) or []
    if w.for_ai is not None:
        accepts = set(ai_label_values(w.for_ai, w.ai_labels))
        unmet = [x for x in json.loads(row["labels"]) if x.startswith("ai:") and x not in accepts]
        if unmet:
            reasons.append(f"it wants {', '.join(unmet)}, and AI {w.for_ai} is not that")
    reasons = reasons or ["it is not claimable"]
    raise LockConflict(
        f"cannot claim task {w.task_id}: {'; '.join(reasons)}",
        hint="see why with: aictl task ready",
        details={"reasons": reasons},
    )


# -- fenced updates ------------------------------------------------------------------------


def _lease_update(
    tx: Tx,
    task_id: int,
    owner: str,
    epoch: int,
    verb: str,
    allowed: frozenset[TaskStatus],
    set_sql: str,
    params: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """One UPDATE guarded by the fence; returns (new row with has_dependents, status before).

    PostgreSQL reads the status before in the same statement (a subquery sees the
    statement's snapshot, not its own change); SQLite, in process, reads it first.
    """
    keys = {"id": task_id, "owner": owner, "epoch": epoch}
    if tx.dialect == "postgresql":
        before_sql, before = "(SELECT b.status FROM tasks b WHERE b.id = tasks.id)", None
    else:
        found = tx.one("SELECT status FROM tasks WHERE id = :id", {"id": task_id})
        before_sql, before = "NULL", found and found["status"]
    row = tx.one(
        f"UPDATE tasks SET {set_sql} WHERE {fence_sql(allowed)} {returning_task(tx)}, {before_sql} AS before,"
        " EXISTS (SELECT 1 FROM task_deps WHERE depends_on = tasks.id) AS has_dependents",
        {**params, **keys},
    )
    if row is None:
        check_fence(tx, task_id, owner, epoch, verb=verb, allowed=allowed)
        raise LeaseLost(f"lease lost: task {task_id} changed while being updated; try again")  # not reached
    return row, before or row["before"]


# -- lease operations ----------------------------------------------------------------------


def heartbeat(p: TaskPlane, task_id: int, owner: str, epoch: int, *, ttl: float | None = None) -> Lease:
    """Extend the lease. Not an audit event: heartbeats change no state a reader cares about."""
    ttl = lease_ttl(p, ttl)

    def run(tx: Tx, now: float) -> Lease:
        row = tx.one(
            f"UPDATE tasks SET lease_expires_at = :exp, heartbeat_at = :now WHERE {fence_sql()}"
            " RETURNING lease_expires_at",
            {"exp": now + ttl, "now": now, "id": task_id, "owner": owner, "epoch": epoch},
        )
        if row is None:
            check_fence(tx, task_id, owner, epoch, verb="heartbeat")
            raise LeaseLost(f"lease lost: task {task_id} changed while being updated; try again")  # not reached
        return Lease(task_id=task_id, owner=owner, lease_epoch=epoch, lease_expires_at=row["lease_expires_at"])

    return p.write(run)


def start(p: TaskPlane, task_id: int, owner: str, epoch: int, *, ai: str | None = None, dry_run: bool = False) -> Task:
    def run(tx: Tx, now: float) -> dict[str, Any]:
        row, before = _lease_update(
            tx,
            task_id,
            owner,
            epoch,
            "start",
            frozenset({S.CLAIMED}),
            "status = 'running', heartbeat_at = :now, updated_at = :now",
            {"now": now},
        )
        p.enforce(tx, "start", row, owner, ai=ai, before=before)
        p.event(tx, now, "start", row, before, actor=owner)
        return row

    return p.write(run, dry_run, then=to_task)


def complete(
    p: TaskPlane,
    task_id: int,
    owner: str,
    epoch: int,
    *,
    result: Any = None,
    ai: str | None = None,
    dry_run: bool = False,
) -> Task:
    def run(tx: Tx, now: float) -> dict[str, Any]:
        row, before = _lease_update(
            tx,
            task_id,
            owner,
            epoch,
            "complete",
            LEASED,
            "status = 'done', lease_expires_at = NULL, next_run_at = NULL, result = :result, updated_at = :now",
            {"now": now, "result": None if result is None else canonical_json(redact(result))},
        )
        p.enforce(
            tx,
            "complete",
            row,
            owner,
            ai=ai,
            before=before,
            extra_check=lambda record: _require_evidence(tx, record, task_id, epoch),
        )
        free_locks(tx, row)
        p.event(tx, now, "complete", row, before, actor=owner)
        if row["has_dependents"]:
            unblock_dependents(p, tx, now, task_id)
        return row

    return p.write(run, dry_run, then=to_task)


def fail(
    p: TaskPlane,
    task_id: int,
    owner: str,
    epoch: int,
    *,
    reason: str = "",
    retryable: bool = False,
    dry_run: bool = False,
) -> Task:
    """Fail an attempt. A retryable failure requeues with backoff while attempts remain."""

    def run(tx: Tx, now: float) -> Task:
        cur = check_fence(tx, task_id, owner, epoch, verb="fail")
        attempts = cur["attempts"] + 1
        again = retryable and attempts < cur["max_attempts"]
        delay = backoff_delay(attempts, base=p.settings.backoff_base, cap=p.settings.backoff_max)
        row, _before = _lease_update(
            tx,
            task_id,
            owner,
            epoch,
            "fail",
            LEASED,
            "status = :st, attempts = attempts + 1, lease_expires_at = NULL, next_run_at = :nra,"
            " result = :result, updated_at = :now",
            {
                "st": S.QUEUED.value if again else S.FAILED.value,
                "nra": now + delay if again else None,
                "now": now,
                "result": canonical_json(redact({"error": reason, "retryable": retryable})),
            },
        )
        free_locks(tx, row)
        p.event(
            tx,
            now,
            "fail",
            row,
            cur["status"],
            actor=owner,
            reason=reason,
            retryable=retryable,
            retry_in_s=round(delay, 3) if again else None,
        )
        if not again:
            dependency_failed(p, tx, now, task_id)
        return to_task(row)

    return p.write(run, dry_run)


def release(
    p: TaskPlane,
    task_id: int,
    owner: str,
    epoch: int,
    *,
    reason: str = "",
    ai: str | None = None,
    dry_run: bool = False,
) -> Task:
    """Give the task back to the queue without counting an attempt."""

    def run(tx: Tx, now: float) -> Task:
        row, before = _lease_update(
            tx,
            task_id,
            owner,
            epoch,
            "release",
            LEASED,
            "status = 'queued', lease_expires_at = NULL, updated_at = :now",
            {"now": now},
        )
        p.enforce(tx, "release", row, owner, ai=ai, before=before)
        free_locks(tx, row)
        p.event(tx, now, "release", row, before, actor=owner, reason=reason or None)
        return to_task(row)

    return p.write(run, dry_run)


def await_approval(
    p: TaskPlane,
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
    """The policy wants a human: park the task (lease and locks given up) until approved or rejected.

    `stage`: where the run stopped: "tool" (a call it wanted to make: `pending`, granted to the next
    attempt by an approval) or "result" (its finished `result`, which an approval completes).
    """

    def run(tx: Tx, now: float) -> Task:
        row, before = _lease_update(
            tx,
            task_id,
            owner,
            epoch,
            "await approval",
            LEASED,
            "status = 'awaiting_approval', lease_expires_at = NULL, updated_at = :now,"
            " result = COALESCE(:result, result)",
            {"now": now, "result": None if result is None else canonical_json(redact(result))},
        )
        if record is not None:
            from aictl.policy.records import write_record

            write_record(tx, record)
        free_locks(tx, row)
        p.event(
            tx,
            now,
            "await_approval",
            row,
            before,
            actor=owner,
            reason=reason or None,
            decision_id=getattr(record, "decision_id", None) or (pending or {}).get("decision_id"),
            stage=stage,
            pending=pending,
        )
        return to_task(row)

    return p.write(run)


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
            record.reasons.append(
                f"completion requires evidence: {', '.join(missing)} (none attached to epoch {epoch})"
            )
        if failing:
            record.reasons.append("completion requires a passing test_report; the attached report has failures")
