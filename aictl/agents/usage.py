"""Tokens and cost from the usage evidence (`usage.json` of every run), grouped by AI, task or day.

The usage evidence is the record: each run's executor writes one `usage` evidence row whose
blob (aictl.execution.agent.usage_record) holds the AI, connector, model, tokens and cost.
Blobs are content-addressed and never change, so a long-lived reader (the console) keeps the
parsed ones in a cache keyed by digest and reads only new rows on each refresh. A blob that
is missing or no longer matches its digest falls back to the row's summary (total tokens,
cost) and the task's AI, and is counted as `unverified`.

A run whose cost is unknown (no prices, an agent that reports none) stays unknown: a group's
`cost_usd` is the sum of the known costs, None when no run of it has one, and
`runs_without_cost` says how many runs the sum leaves out.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_serializer

from aictl.audit.evidence import EvidenceStore
from aictl.domain.errors import UsageError
from aictl.domain.models import ts_to_dt
from aictl.store.base import Store
from aictl.tasks.queries import task_rows

GROUPINGS = ("ai", "task", "day", "workflow")


@dataclass(frozen=True, slots=True)
class UsageRun:
    """One run's usage, as its evidence says."""

    evidence_id: int
    task_id: int | None
    lease_epoch: int | None
    at: float
    ai: str | None
    connector: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    total_tokens: int
    cost_usd: float | None
    verified: bool = True
    workflow: str | None = None  # the workflow whose step the task was (its `workflow:NAME` label)

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.at, tz=UTC).date().isoformat()


class UsageRow(BaseModel):
    key: str
    runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    runs_without_cost: int = 0
    unverified: int = 0

    def add(self, run: UsageRun) -> None:
        self.runs += 1
        self.input_tokens += run.input_tokens
        self.output_tokens += run.output_tokens
        self.cache_read_tokens += run.cache_read_tokens
        self.total_tokens += run.total_tokens
        if run.cost_usd is None:
            self.runs_without_cost += 1
        else:
            self.cost_usd = round((self.cost_usd or 0.0) + run.cost_usd, 10)
        self.unverified += 0 if run.verified else 1


class UsageReport(BaseModel):
    by: str
    since: float | None = None
    rows: list[UsageRow]
    total: UsageRow

    @field_serializer("since")
    def _iso(self, v: float | None) -> str | None:
        return None if v is None else ts_to_dt(v).isoformat(timespec="seconds")


def group(runs: Iterable[UsageRun], by: str, *, since: float | None = None) -> UsageReport:
    """Sum runs by `by` (ai, task, day, workflow: "-" for tasks of none); rows in key order (days ascending),
    the total last."""
    if by not in GROUPINGS:
        raise UsageError(f"cannot group usage by {by!r}", hint=f"use one of: {', '.join(GROUPINGS)}")
    rows: dict[str, UsageRow] = {}
    total = UsageRow(key="total")
    for run in runs:
        if since is not None and run.at < since:
            continue
        if by == "ai":
            key = run.ai or "-"
        elif by == "task":
            key = "-" if run.task_id is None else str(run.task_id)
        elif by == "workflow":
            key = run.workflow or "-"
        else:
            key = run.day
        rows.setdefault(key, UsageRow(key=key)).add(run)
        total.add(run)
    order = sorted(rows, key=lambda k: (len(k), k) if by == "task" else (k == "-", k))
    return UsageReport(by=by, since=since, rows=[rows[k] for k in order], total=total)


class UsageLedger:
    """Reads usage evidence incrementally: `runs(store)` returns every run so far, parsing only new rows.

    The store is passed on each call (a SQLite connection belongs to its thread; a server reads from
    several); the cache of parsed runs is shared under a lock."""

    def __init__(self, home: Path | None):
        self.home = home
        self._runs: list[UsageRun] = []
        self._after = 0
        self._lock = threading.Lock()

    def runs(self, store: Store, *, since: float | None = None) -> list[UsageRun]:
        with self._lock:
            with store.read() as tx:
                rows = tx.all(
                    "SELECT id, task_id, lease_epoch, digest, summary, created_at FROM evidence"
                    " WHERE kind = 'usage' AND id > :after ORDER BY id",
                    {"after": self._after},
                )
                tasks = task_rows(tx, sorted({r["task_id"] for r in rows if r["task_id"] is not None}))
            blobs = EvidenceStore(store, self.home).contents([r["digest"] for r in rows]) if rows else {}
            for r in rows:
                self._runs.append(_run(r, blobs.get(r["digest"]), tasks.get(r["task_id"])))
                self._after = r["id"]
            runs = list(self._runs)
        return [r for r in runs if since is None or r.at >= since]

    def report(self, store: Store, by: str = "ai", *, since: float | None = None) -> UsageReport:
        return group(self.runs(store), by, since=since)


def usage_report(store: Store, home: Path | None, *, by: str = "ai", since: float | None = None) -> UsageReport:
    """`aictl usage`: the project's usage evidence summed by AI, task or day."""
    if by not in GROUPINGS:  # before reading anything
        raise UsageError(f"cannot group usage by {by!r}", hint=f"use one of: {', '.join(GROUPINGS)}")
    return UsageLedger(home).report(store, by, since=since)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _cost(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _workflow(task: dict[str, Any] | None) -> str | None:
    labels = (task or {}).get("labels") or []
    if isinstance(labels, str):
        labels = json.loads(labels)
    return next((lab.split(":", 1)[1] for lab in labels if isinstance(lab, str) and lab.startswith("workflow:")), None)


def _run(row: dict[str, Any], blob: bytes | None, task: dict[str, Any] | None) -> UsageRun:
    """One run from its row and blob; the agent wrote neither, but a tampered blob must not crash a report."""
    record: dict[str, Any] | None = None
    if blob is not None:
        try:
            parsed = json.loads(blob)
            record = parsed if isinstance(parsed, dict) else None
        except ValueError:
            record = None
    base = {
        "evidence_id": row["id"],
        "task_id": row["task_id"],
        "lease_epoch": row["lease_epoch"],
        "at": row["created_at"],
        "workflow": _workflow(task),
    }
    if record is not None:
        raw = record.get("tokens")
        tokens: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return UsageRun(
            **base,
            ai=_str(record.get("ai")),
            connector=_str(record.get("connector")),
            model=_str(record.get("model")),
            input_tokens=_int(tokens.get("input")),
            output_tokens=_int(tokens.get("output")),
            cache_read_tokens=_int(tokens.get("cache_read")),
            total_tokens=_int(tokens.get("total")),
            cost_usd=_cost(record.get("cost_usd")),
        )
    summary = json.loads(row["summary"]) if row["summary"] else {}
    return UsageRun(
        **base,
        ai=_str((task or {}).get("ai")),
        connector=None,
        model=_str(summary.get("model")),
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        total_tokens=_int(summary.get("tokens")),
        cost_usd=_cost(summary.get("cost_usd")),
        verified=False,
    )


def _str(value: Any) -> str | None:
    return str(value)[:200] if isinstance(value, (str, int)) and not isinstance(value, bool) else None


__all__ = ["GROUPINGS", "UsageLedger", "UsageReport", "UsageRow", "UsageRun", "group", "usage_report"]
