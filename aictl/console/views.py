"""The data of the queue, agents and approvals pages: plain dicts, redacted before any template sees them.

Each function reads through the owners' readers (TaskQueries, the AI registry, the decision log, the
evidence store), so the console holds no SQL on their tables. Lists are capped: the queue page of a
store with 10,000 tasks shows the counts of all and the first rows of each status.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aictl.domain.redact import redact, redact_text
from aictl.domain.status import TaskStatus
from aictl.tasks.queries import TaskQueries, held_counts_by_ai, status_counts

if TYPE_CHECKING:
    from aictl.agents.usage import UsageLedger
    from aictl.audit.evidence import EvidenceStore
    from aictl.store.base import Store

STATUS_ORDER = ("queued", "blocked", "claimed", "running", "awaiting_approval", "done", "merged", "failed", "cancelled")
LIVE = ("queued", "blocked", "claimed", "running", "awaiting_approval")
ROWS_PER_STATUS = 50
DAG_NODES = 60
DIFF_CHARS = 200_000  # a diff shown in a page; the whole one stays in the evidence


def _task(t: Any) -> dict[str, Any]:
    d = t.model_dump(mode="json")
    d["status"] = str(d["status"])
    return d


def queue(store: Store, *, now: float | None = None, rows: int = ROWS_PER_STATUS) -> dict[str, Any]:
    now = time.time() if now is None else now
    q = TaskQueries(store, clock=lambda: now)
    with store.read() as tx:
        counts = status_counts(tx)
    columns: list[dict[str, Any]] = []
    for status in STATUS_ORDER:
        n = counts.get(status, 0)
        shown = [_task(t) for t in q.list(statuses=[status], limit=rows, newest_first=status not in LIVE)] if n else []
        columns.append({"status": status, "count": n, "tasks": shown, "more": max(0, n - len(shown))})
    ready = [e.model_dump(mode="json") for e in q.ready(limit=20)]
    locks = [lk.model_dump(mode="json") for lk in q.locks()]
    live = [t for c in columns if c["status"] in LIVE for t in c["tasks"]][:DAG_NODES]
    reasons = {e["id"]: e["reasons"] for e in ready if not e["ready"]}
    ready_ids = {e["id"] for e in ready if e["ready"]}
    for t in live:
        t["ready"] = t["id"] in ready_ids
        t["why_not"] = reasons.get(t["id"], [])
    return redact(
        {
            "counts": counts,
            "total": sum(counts.values()),
            "columns": columns,
            "ready": ready,
            "locks": locks,
            "dag": live,
        }
    )


def agents(store: Store, ledger: UsageLedger, *, now: float | None = None) -> dict[str, Any]:
    from aictl.agents.health import quick_check
    from aictl.agents.registry import Registry

    now = time.time() if now is None else now
    ais = Registry(store).list()
    with store.read() as tx:
        load = held_counts_by_ai(tx)
    held = TaskQueries(store).list(statuses=["claimed", "running"], limit=500)
    midnight = datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    today = {r.key: r.model_dump(mode="json") for r in ledger.report(store, "ai", since=midnight).rows}
    out = []
    for ai in ais:
        try:
            problems = quick_check(ai)
        except Exception as e:  # noqa: BLE001 - an unknown connector is a health problem to show, not a crash
            problems = [str(e)]
        paused = ai.paused_until is not None and ai.paused_until > now
        current = [_task(t) for t in held if t.ai == ai.id]
        out.append(
            {
                "id": ai.id,
                "connector": ai.connector,
                "model": ai.model,
                "labels": ai.labels,
                "enabled": ai.enabled,
                "healthy": not problems,
                "problems": problems,
                "paused": paused,
                "paused_until": ai.paused_until if paused else None,
                "pause_reason": ai.pause_reason if paused else None,
                "load": load.get(ai.id, 0),
                "max_concurrency": ai.max_concurrency,
                "current": current,
                "today": today.get(ai.id),
            }
        )
    return redact({"agents": out, "day": datetime.fromtimestamp(midnight, tz=UTC).date().isoformat()})


def latest_diff(evidence: EvidenceStore, task_id: int) -> str | None:
    """The newest diff evidence of a task, cut to DIFF_CHARS (text evidence was redacted when stored)."""
    diffs = [e for e in evidence.list(task_id) if e.kind == "diff"]
    if not diffs:
        return None
    try:
        data = evidence.get(diffs[-1].digest)
    except Exception as e:  # noqa: BLE001 - a tampered blob is shown as such, the page still renders
        return f"(diff unavailable: {e})"
    text = data[: DIFF_CHARS * 4].decode("utf-8", errors="replace")
    return redact_text(text[:DIFF_CHARS] + ("\n… (cut; the whole diff is evidence)" if len(text) > DIFF_CHARS else ""))


def approvals(store: Store, evidence: EvidenceStore) -> dict[str, Any]:
    from aictl.policy.records import DecisionLog

    q = TaskQueries(store)
    log = DecisionLog(store)
    items = []
    for t in q.list(statuses=[TaskStatus.AWAITING_APPROVAL.value], limit=100):
        asked = [e for e in q.events(task_id=t.id, limit=50) if e.action == "await_approval"]
        data = (asked[-1].data or {}) if asked else {}
        decision = None
        if data.get("decision_id"):
            try:
                decision = log.get(data["decision_id"]).model_dump(mode="json")
            except Exception:  # noqa: BLE001 - a record the chain no longer vouches for is left out, not shown
                decision = None
        items.append(
            {
                "task": _task(t),
                "reason": data.get("reason"),
                "asked_by": asked[-1].actor if asked else None,
                "decision": decision,
                "diff": latest_diff(evidence, t.id),
            }
        )
    items += _merges_waiting(store, evidence, log)
    return redact({"items": items})


def _merges_waiting(store: Store, evidence: EvidenceStore, log: Any) -> list[dict[str, Any]]:
    """Done tasks whose merge the policy parked for approval (aictl merge), with the diff that would land."""
    from aictl.tasks.approvals import merge_waiting

    asked: dict[int, Any] = {}
    for d in log.list(action="merge", effect="require_approval", limit=200):
        if d.task_id is not None:
            asked[d.task_id] = d  # the latest request per task
    if not asked:
        return []
    with store.read() as tx:
        waiting = [tid for tid in sorted(asked) if merge_waiting(tx, tid)]
    q = TaskQueries(store)
    out = []
    for tid in waiting:
        task = _task(q.get(tid))
        if task["status"] != TaskStatus.DONE.value:
            continue
        d = asked[tid]
        out.append(
            {
                "task": task,
                "reason": "; ".join(d.reasons) or "the merge needs approval",
                "asked_by": d.actor or d.ai,
                "decision": d.model_dump(mode="json"),
                "diff": latest_diff(evidence, tid),
                "merge": True,
            }
        )
    return out


__all__ = ["LIVE", "STATUS_ORDER", "agents", "approvals", "latest_diff", "queue"]
