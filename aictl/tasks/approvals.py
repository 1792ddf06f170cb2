"""Approvals: a human approves or rejects a task the policy parked (awaiting_approval).

A done task whose merge the policy parked (`aictl merge`, effect require_approval) is approved
the same way: the verdict is recorded as an event and the task stays done; the merge queue
reads it on its next run (aictl.merge.queue).

Parking itself is a lease operation (aictl.tasks.leases.await_approval). Approving
sends the task back to the queue — or, when it was parked at the result check with its
finished result, completes it with that result; rejecting fails it (and, with
on_dependency_failure=fail, its blocked dependents). A task parked at a tool call is
queued again, and its next attempt is granted that call (aictl.policy.runtime). With a policy, who may
approve is itself a policy question (action `approve`), and the decision is kept.
"""

from __future__ import annotations

import json
from typing import Any

from aictl.audit.events import canonical_json
from aictl.domain.errors import IllegalTransition
from aictl.domain.models import Task
from aictl.domain.status import TaskStatus
from aictl.store.base import Tx
from aictl.tasks.recovery import dependency_failed, unblock_dependents
from aictl.tasks.sql import returning_task
from aictl.tasks.txn import Refused, TaskPlane, load_row, task_facts, to_task

S = TaskStatus


def approve(p: TaskPlane, task_id: int, *, comment: str = "", dry_run: bool = False) -> Task:
    """A human approves a parked task: it goes back to the queue, and the approval is on record."""
    return _decide(p, task_id, "approve", S.QUEUED, comment, dry_run)


def reject(p: TaskPlane, task_id: int, *, comment: str = "", dry_run: bool = False) -> Task:
    return _decide(p, task_id, "reject", S.FAILED, comment, dry_run)


def _decide(p: TaskPlane, task_id: int, verb: str, target: TaskStatus, comment: str, dry_run: bool) -> Task:
    def run(tx: Tx, now: float) -> Task:
        cur = load_row(tx, task_id)
        merge_parked = cur["status"] == S.DONE and merge_waiting(tx, task_id)
        if cur["status"] != S.AWAITING_APPROVAL and not merge_parked:
            raise IllegalTransition(
                f"cannot {verb} task {task_id}: it is {cur['status']}, not awaiting approval",
                hint="see the approval inbox: aictl task list --status awaiting_approval",
            )
        if p.policy is not None:  # who may approve is itself a policy question
            record = p.policy.check(
                "approve", ai=p.actor, actor=p.actor, task=task_facts(cur), context={"verdict": verb}, now=now
            )
            if record.effect != "allow":
                raise Refused(record)
            from aictl.policy.records import write_record

            write_record(tx, record)
        if merge_parked:  # the verdict is the merge queue's to act on; the task stays done
            p.event(tx, now, verb, cur, cur["status"], comment=comment or None, merge=True)
            return to_task(cur)
        result = canonical_json({"error": f"rejected by {p.actor}: {comment}"}) if target == S.FAILED else None
        completes = target == S.QUEUED and parked_stage(tx, task_id) == "result"
        status = S.DONE if completes else target  # a finished, kept result: the approval lets it land
        row = tx.row(
            "UPDATE tasks SET status = :st, result = COALESCE(:res, result), updated_at = :now"
            f" WHERE id = :id {returning_task(tx)}",
            {"st": status.value, "res": result, "now": now, "id": task_id},
        )
        p.event(tx, now, verb, row, cur["status"], comment=comment or None, completed=completes or None)
        if target == S.FAILED:
            dependency_failed(p, tx, now, task_id)
        if completes:
            unblock_dependents(p, tx, now, task_id)
        return to_task(row)

    return p.write(run, dry_run)


def parked_stage(tx: Tx, task_id: int) -> str | None:
    """Where the task's latest run stopped for approval: "tool", "result", or None (before it ran)."""
    row = tx.one(
        "SELECT data FROM events WHERE task_id = :t AND action = 'await_approval' ORDER BY id DESC LIMIT 1",
        {"t": task_id},
    )
    if row is None or not row["data"]:
        return None
    data = json.loads(row["data"]) or {}
    return data.get("stage") if isinstance(data, dict) else None


def merge_waiting(tx: Tx, task_id: int) -> bool:
    """A merge of the task was parked for approval and no verdict has come since."""
    row = tx.one(
        "SELECT MAX(ts) AS ts FROM decisions WHERE task_id = :t AND action = 'merge' AND effect = 'require_approval'",
        {"t": task_id},
    )
    if row is None or row["ts"] is None:
        return False
    verdict = tx.one(
        "SELECT 1 AS x FROM events WHERE task_id = :t AND action IN ('approve', 'reject') AND ts >= :s LIMIT 1",
        {"t": task_id, "s": row["ts"]},
    )
    return verdict is None


def verdict_since(p: TaskPlane, task_id: int, since: float) -> dict[str, Any] | None:
    """The latest approve or reject of a task at or after `since` (verdict, who, why), if any."""
    return _latest(p, task_id, since, ("approve", "reject"))


def approved_since(p: TaskPlane, task_id: int, since: float) -> dict[str, Any] | None:
    """The latest approval of a task at or after `since`, if any (a later reject does not hide it)."""
    return _latest(p, task_id, since, ("approve",))


def _latest(p: TaskPlane, task_id: int, since: float, actions: tuple[str, ...]) -> dict[str, Any] | None:
    with p.store.read() as tx:
        row = tx.one(
            "SELECT action, actor, ts, data FROM events WHERE task_id = :t"
            f" AND action IN ({', '.join(repr(a) for a in actions)}) AND ts >= :s ORDER BY id DESC LIMIT 1",
            {"t": task_id, "s": since},
        )
    if row is None:
        return None
    return {
        "verdict": row["action"],
        "by": row["actor"],
        "at": row["ts"],
        "comment": (json.loads(row["data"]) or {}).get("comment") if row["data"] else None,
    }


AGENT_REQUEST = "aictl:agent-request"  # the rule of a require_approval an agent asked for itself (MCP)


def agent_request(store: Any, task_id: int, epoch: int) -> dict[str, Any] | None:
    """What this attempt's agent asked a person to approve (the task-scoped server's request_approval), as
    ConnectorResult.pending_approval carries it; None when it asked nothing."""
    with store.read() as tx:
        rows = tx.all(
            "SELECT decision_id, action, resource, reasons, matched_rules FROM decisions WHERE task_id = :t"
            " AND lease_epoch = :e AND effect = 'require_approval' ORDER BY ts",
            {"t": task_id, "e": epoch},
        )
    for row in rows:
        if AGENT_REQUEST not in json.loads(row["matched_rules"]):
            continue
        resource = json.loads(row["resource"])
        extra = resource.get("extra") or {}
        host = f"{extra['host']}:{extra.get('port')}" if extra.get("host") else None
        return {
            "action": row["action"],
            "target": resource.get("path") or resource.get("command") or host,
            "rule": AGENT_REQUEST,
            "reason": "; ".join(json.loads(row["reasons"])),
            "decision_id": row["decision_id"],
        }
    return None
