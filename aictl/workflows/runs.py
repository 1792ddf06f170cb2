"""The rows of a workflow run (`workflow_runs`) and of its steps (`workflow_steps`), and how they read and dump.

Only this module writes SQL for the two tables; the engine changes them inside its transaction.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aictl.domain.errors import NotFound
from aictl.store.base import Tx
from aictl.workflows.model import RUN_DONE, RunStatus, StepStatus, Workflow


@dataclass
class StepState:
    step_id: str
    status: str = StepStatus.PENDING.value
    attempt: int = 0
    task_id: int | None = None
    tasks: list[int] = field(default_factory=list)
    outputs: Any = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # the last attempt's verify and summary
    reason: str | None = None
    feedback: str | None = None
    started_at: float | None = None
    updated_at: float = 0.0

    def key(self) -> tuple:
        return (
            self.status,
            self.attempt,
            self.task_id,
            self.tasks,
            self.outputs,
            self.facts,
            self.reason,
            self.feedback,
        )


@dataclass
class Run:
    id: int
    workflow: str
    source: str
    definition: Workflow
    inputs: dict[str, Any]
    status: str
    reason: str | None
    actor: str
    created_at: float
    updated_at: float
    finished_at: float | None
    steps: dict[str, StepState]

    @property
    def done(self) -> bool:
        return self.status in RUN_DONE

    def model_dump(self, *, mode: str = "json") -> dict[str, Any]:
        order = [s.id for s in self.definition.steps]
        kinds = {s.id: s for s in self.definition.steps}
        return {
            "id": self.id,
            "workflow": self.workflow,
            "source": self.source,
            "status": self.status,
            "reason": self.reason,
            "inputs": self.inputs,
            "actor": self.actor,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "finished_at": _iso(self.finished_at),
            "steps": [
                {
                    **{k: v for k, v in asdict(self.steps[sid]).items() if k not in ("started_at", "updated_at")},
                    "kind": kinds[sid].kind,
                    "needs": kinds[sid].needs,
                    "started_at": _iso(self.steps[sid].started_at),
                    "updated_at": _iso(self.steps[sid].updated_at),
                }
                for sid in order
                if sid in self.steps
            ],
        }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def insert_run(tx: Tx, wf: Workflow, inputs: dict[str, Any], actor: str, now: float) -> int:
    row = tx.row(
        "INSERT INTO workflow_runs (workflow, source, definition, inputs, status, actor, created_at, updated_at)"
        " VALUES (:w, :src, :d, :i, :st, :a, :now, :now) RETURNING id",
        {
            "w": wf.name,
            "src": wf.source,
            "d": json.dumps(wf.to_dict(), sort_keys=True),
            "i": json.dumps(inputs, sort_keys=True),
            "st": RunStatus.RUNNING.value,
            "a": actor,
            "now": now,
        },
    )
    for s in wf.steps:
        tx.run(
            "INSERT INTO workflow_steps (run_id, step_id, status, updated_at) VALUES (:r, :s, :st, :now)",
            {"r": row["id"], "s": s.id, "st": StepStatus.PENDING.value, "now": now},
        )
    return int(row["id"])


def load_run(tx: Tx, run_id: int, *, for_update: bool = False) -> Run:
    """The run and its steps; for_update takes the run's row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE has it)."""
    lock = " FOR UPDATE" if for_update and tx.dialect == "postgresql" else ""
    row = tx.one(f"SELECT * FROM workflow_runs WHERE id = :id{lock}", {"id": run_id})
    if row is None:
        raise NotFound(f"workflow run {run_id} not found", hint="list runs with: aictl workflow runs")
    steps = {
        r["step_id"]: StepState(
            step_id=r["step_id"],
            status=r["status"],
            attempt=r["attempt"],
            task_id=r["task_id"],
            tasks=json.loads(r["tasks"]),
            outputs=json.loads(r["outputs"]),
            facts=json.loads(r["facts"]),
            reason=r["reason"],
            feedback=r["feedback"],
            started_at=r["started_at"],
            updated_at=r["updated_at"],
        )
        for r in tx.all("SELECT * FROM workflow_steps WHERE run_id = :r", {"r": run_id})
    }
    return Run(
        id=row["id"],
        workflow=row["workflow"],
        source=row["source"],
        definition=Workflow.from_dict(json.loads(row["definition"])),
        inputs=json.loads(row["inputs"]),
        status=row["status"],
        reason=row["reason"],
        actor=row["actor"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        steps=steps,
    )


def save_step(tx: Tx, run_id: int, s: StepState) -> None:
    tx.run(
        "UPDATE workflow_steps SET status = :st, attempt = :a, task_id = :t, tasks = :ts, outputs = :o, facts = :f,"
        " reason = :why, feedback = :fb, started_at = :start, updated_at = :now WHERE run_id = :r AND step_id = :s",
        {
            "st": s.status,
            "a": s.attempt,
            "t": s.task_id,
            "ts": json.dumps(s.tasks),
            "o": json.dumps(s.outputs, sort_keys=True),
            "f": json.dumps(s.facts, sort_keys=True),
            "why": s.reason,
            "fb": s.feedback,
            "start": s.started_at,
            "now": s.updated_at,
            "r": run_id,
            "s": s.step_id,
        },
    )


def save_run_status(tx: Tx, run_id: int, status: str, reason: str | None, now: float) -> None:
    done = status in RUN_DONE
    tx.run(
        "UPDATE workflow_runs SET status = :st, reason = :why, updated_at = :now,"
        " finished_at = CASE WHEN :done = 1 THEN :now ELSE finished_at END WHERE id = :id",
        {"st": status, "why": reason, "now": now, "done": int(done), "id": run_id},
    )


def run_ids(tx: Tx, *, status: str | None = None, limit: int = 200) -> list[int]:
    where = "WHERE status = :st" if status else ""
    rows = tx.all(
        f"SELECT id FROM workflow_runs {where} ORDER BY id DESC LIMIT {int(limit)}", {"st": status} if status else {}
    )
    return [r["id"] for r in rows]


__all__ = ["Run", "StepState", "insert_run", "load_run", "run_ids", "save_run_status", "save_step"]
