"""One task's page: its timeline of events, evidence (diff, verify log, transcript, …), decisions, attempts by epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aictl.domain.redact import redact, redact_text
from aictl.tasks.queries import TaskQueries

if TYPE_CHECKING:
    from aictl.audit.evidence import EvidenceStore
    from aictl.store.base import Store

EVENTS = 500
SHOWN_CHARS = 100_000  # of one text evidence inline; the rest stays in the store
INLINE_KINDS = ("diff", "verify_log", "transcript", "log", "test_report")


def attempts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task's attempts, one per lease epoch: who held it, from when to when, how it ended."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for e in events:
        epoch = e.get("lease_epoch")
        if not epoch:
            continue
        a = by_epoch.setdefault(
            epoch, {"epoch": epoch, "owner": None, "started": e["ts"], "ended": e["ts"], "status": None, "events": 0}
        )
        a["events"] += 1
        a["ended"] = e["ts"]
        if e["action"] == "claim":
            a["owner"] = (e.get("after") or {}).get("owner") or e["actor"]
        status = (e.get("after") or {}).get("status")
        if status:
            a["status"] = status
    return [by_epoch[k] for k in sorted(by_epoch)]


def _content(evidence: EvidenceStore, ref: Any) -> str | None:
    if ref.kind not in INLINE_KINDS or not ref.media_type.startswith(("text/", "application/json", "application/xml")):
        return None
    try:
        data = evidence.get(ref.digest)
    except Exception as e:  # noqa: BLE001 - a tampered or missing blob is shown as such
        return f"(unavailable: {e})"
    text = data[: SHOWN_CHARS * 4].decode("utf-8", errors="replace")
    cut = len(text) > SHOWN_CHARS
    return redact_text(text[:SHOWN_CHARS]) + ("\n… (cut; the whole file is evidence)" if cut else "")


def task_page(store: Store, evidence: EvidenceStore, task_id: int) -> dict[str, Any]:
    from aictl.policy.records import DecisionLog

    q = TaskQueries(store)
    task = q.get(task_id).model_dump(mode="json")
    task["status"] = str(task["status"])
    found = q.events(task_id=task_id, limit=EVENTS)
    events = [e.model_dump(mode="json") for e in found]
    raw_events = [{**d, "ts": e.ts} for d, e in zip(events, found, strict=True)]
    refs = evidence.list(task_id)
    items = [{**r.model_dump(mode="json"), "content": _content(evidence, r)} for r in refs]
    decisions = [d.model_dump(mode="json") for d in DecisionLog(store).list(task_id=task_id, limit=200)]
    return redact(
        {
            "task": task,
            "deps": [d.model_dump(mode="json") for d in q.deps(task_id)],
            "events": events,
            "attempts": attempts(raw_events),
            "evidence": items,
            "decisions": decisions,
        }
    )


__all__ = ["attempts", "task_page"]
