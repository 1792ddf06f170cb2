"""`aictl workflow run` without a daemon: advance the run, execute its ready step tasks here, repeat.

Each step task runs through the Executor exactly as `aictl task execute ID` would (claim, policy, sandbox,
evidence). Progress goes to `on_progress` as one dict per step change. Without `wait` the driver returns
when nothing more can happen here (the run is finished, or parked at an approval gate, or its tasks are
held elsewhere); with it, it polls until the run finishes (a human approves, a daemon runs a task).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aictl.domain.errors import AictlError

if TYPE_CHECKING:
    from aictl.workflows.engine import WorkflowEngine
    from aictl.workflows.runs import Run

Progress = Callable[[dict[str, Any]], None]
POLL_S = 0.5


def drive(
    engine: WorkflowEngine,
    run_id: int,
    *,
    executor: Any,
    owner: str,
    wait: bool = False,
    on_progress: Progress | None = None,
    poll_s: float = POLL_S,
    deadline: float | None = None,
) -> Run:
    """Run `run_id` to its end (or as far as it goes here); `executor` is an aictl.execution Executor."""
    from aictl.execution.outcome import ExecuteOptions

    emit = on_progress or (lambda e: None)
    seen: dict[str, tuple[str, int]] = {}
    skip: set[int] = set()  # tasks this driver could not claim (held elsewhere, no AI): not retried in a loop
    while True:
        run = engine.advance(run_id)
        _report(run, seen, emit)
        if run.done:
            return run
        ready = [t for t in _ready(engine, run) if t not in skip]
        for tid in ready:
            try:
                report = executor.execute(tid, ExecuteOptions(owner=owner))
                emit({"type": "task", "run": run.id, "task": tid, "outcome": report.outcome.value,
                      "reason": report.reason})  # fmt: skip
            except AictlError as e:
                skip.add(tid)
                emit({"type": "task", "run": run.id, "task": tid, "outcome": "not_run", "reason": e.message})
        if ready:
            continue
        if not wait or (deadline is not None and time.monotonic() > deadline):
            return run
        skip.clear()
        time.sleep(poll_s)


def _ready(engine: WorkflowEngine, run: Run) -> list[int]:
    """The run's step tasks that are queued and due (approval tasks are the gate's, not ours to execute)."""
    now = engine.clock()
    return sorted(
        tid
        for tid, r in engine.task_rows(run).items()
        if r["status"] == "queued"
        and r["type"] != "workflow-approval"
        and (r["next_run_at"] is None or r["next_run_at"] <= now)
    )


def _report(run: Run, seen: dict[str, tuple[str, int]], emit: Progress) -> None:
    for sid, st in run.steps.items():
        now = (st.status, st.attempt)
        if seen.get(sid) != now:
            seen[sid] = now
            emit({"type": "step", "run": run.id, "step": sid, "status": st.status, "attempt": st.attempt,
                  "task": st.task_id, "reason": st.reason})  # fmt: skip
    if run.done:
        emit({"type": "run", "run": run.id, "status": run.status, "reason": run.reason})


__all__ = ["drive"]
