"""The audit page (the log with filters, the result of `audit verify`) and the usage page (per AI per day,
budgets from the policy against spend): the same numbers as `aictl audit verify` and `aictl usage`."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aictl.audit.events import head_id
from aictl.domain.redact import redact
from aictl.tasks.queries import TaskQueries

if TYPE_CHECKING:
    from aictl.agents.usage import UsageLedger
    from aictl.audit.chain import VerifyReport
    from aictl.config import Settings
    from aictl.policy.gate import PolicyGate
    from aictl.store.base import Store

AUDIT_ROWS = 200
USAGE_DAYS = 14
VERIFY_EVERY_S = 10.0  # verify reads the whole log: a page shows a result at most this old


class Verifier:
    """`audit verify` as the CLI runs it (with the git anchor); a result is reused for VERIFY_EVERY_S."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._at: int | None = None
        self._when = 0.0
        self._report: dict[str, Any] | None = None

    def result(self, store: Store) -> dict[str, Any]:
        with store.read() as tx:
            head = head_id(tx)
        with self._lock:
            stale = self.clock() - self._when >= VERIFY_EVERY_S  # tampering moves no head: age alone re-verifies
            if self._report is None or stale:
                self._report = self._run(store).model_dump(mode="json")
                self._at, self._when = head, self.clock()
            return {**self._report, "as_of_event": self._report["last_id"], "head": head}

    def _run(self, store: Store) -> VerifyReport:
        from aictl.audit.anchor import ANCHOR_REF, parse_anchor
        from aictl.audit.chain import verify
        from aictl.policy.records import vouch_decisions

        text = None
        if self.settings.project_dir is not None and self.settings.home is not None:
            from aictl.sandbox.workspace import NotAGitRepository, WorkspaceManager

            try:
                text = WorkspaceManager.from_settings(self.settings).read_anchor(ANCHOR_REF)
            except NotAGitRepository:
                text = None
        anchor = parse_anchor(text) if text is not None else None
        return verify(store, vouchers={"decision": vouch_decisions}, anchor=anchor)


def audit(store: Store, verifier: Verifier, *, filters: dict[str, Any]) -> dict[str, Any]:
    events = TaskQueries(store).events(
        task_id=filters.get("task"), action=filters.get("action"), actor=filters.get("actor"), limit=AUDIT_ROWS
    )
    rows = [e.model_dump(mode="json") for e in reversed(events)]  # newest first on the page
    return redact({"events": rows, "verify": verifier.result(store), "filters": filters, "limit": AUDIT_ROWS})


def _budgets(gate: PolicyGate | None, ais: list[Any]) -> dict[str, float | None]:
    """Each AI's per-run cost cap: the max_cost_usd the policy's execute decision would carry for it."""
    if gate is None:
        return {}
    task = {"id": 0, "title": "", "type": "task", "priority": 0, "status": "queued", "labels": []}
    out: dict[str, float | None] = {}
    for ai in ais:
        try:
            record = gate.check("execute", ai=ai.id, actor=ai.id, ai_labels=list(ai.labels), task=task)
        except Exception:  # noqa: BLE001 - a policy that cannot decide this shows no cap, the page renders
            out[ai.id] = None
            continue
        cap = record.limits.get("max_cost_usd")
        out[ai.id] = float(cap) if isinstance(cap, (int, float)) and record.effect != "deny" else None
    return out


def usage(
    store: Store, ledger: UsageLedger, gate: PolicyGate | None, *, now: float | None = None, days: int = USAGE_DAYS
) -> dict[str, Any]:
    from aictl.agents.registry import Registry

    now = time.time() if now is None else now
    first = datetime.fromtimestamp(now, tz=UTC).date() - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()
    day_keys = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"cost": 0.0, "tokens": 0, "runs": 0})
    max_run: dict[str, float] = {}
    runs = ledger.runs(store, since=since)
    for run in runs:
        ai = run.ai or "-"
        c = cells[(ai, run.day)]
        c["runs"] += 1
        c["tokens"] += run.total_tokens
        if run.cost_usd is not None:
            c["cost"] += run.cost_usd
            max_run[ai] = max(max_run.get(ai, 0.0), run.cost_usd)
    ais = Registry(store).list()
    caps = _budgets(gate, ais)
    names = sorted({ai for ai, _ in cells} | {a.id for a in ais})
    report = ledger.report(store, "ai", since=since)
    totals = {r.key: r.model_dump(mode="json") for r in report.rows}
    budgets = [
        {
            "ai": name,
            "cap_per_run": caps.get(name),
            "max_run_cost": max_run.get(name),
            "spend": (totals.get(name) or {}).get("cost_usd"),
            "over": caps.get(name) is not None and max_run.get(name, 0.0) > (caps.get(name) or 0.0),
        }
        for name in names
    ]
    series = {
        name: [dict(cells.get((name, d), {"cost": 0.0, "tokens": 0, "runs": 0})) for d in day_keys] for name in names
    }
    return redact(
        {
            "days": day_keys,
            "series": series,
            "rows": [r.model_dump(mode="json") for r in report.rows],
            "total": report.total.model_dump(mode="json"),
            "budgets": budgets,
            "policy": gate is not None,
        }
    )


__all__ = ["Verifier", "audit", "usage"]
