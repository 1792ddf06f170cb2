"""What an advance asks for that cannot run inside its transaction: an approval gate's moves, and a merge.

- gate: an approval step's task is claimed by the engine and parked (`awaiting_approval`, with the step's
  reason), so it shows in `aictl task list --status awaiting_approval` and `aictl task approve N` decides.
  Approving sends the task back to the queue; the next advance finds it there with the verdict on record
  and completes it (its result names who approved). Rejecting fails it, which fails the step. No AI can take
  the task meanwhile: it requires a capability no AI has (model.GATE_CAPABILITY).
- merge: the run's done task commits go to the merge queue (aictl.merge.queue), in DAG order; the step
  succeeds when every one landed (or had nothing to land), and fails with the queue's reasons otherwise.

Each is idempotent: a gate whose task someone else moved meanwhile is left alone (the claim misses), a merge
re-run after a crash finds the already merged tasks merged and skips them. Returns whether anything moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aictl.domain.errors import AictlError
from aictl.logging import get_logger

if TYPE_CHECKING:
    from aictl.workflows.engine import WorkflowEngine
    from aictl.workflows.runs import Run, StepState

log = get_logger("aictl.workflows")


def apply(engine: WorkflowEngine, run: Run, effects: list[tuple]) -> bool:
    moved = False
    for effect in effects:
        try:
            if effect[0] == "gate":
                moved = _gate(engine, run, effect[1], effect[2]) or moved
            elif effect[0] == "merge":
                moved = _merge(engine, run, effect[1]) or moved
        except AictlError as e:  # another advancer got there first, or the queue is busy: the next advance retries
            log.info("workflow effect deferred", run=run.id, effect=effect[0], step=effect[1], error=e.message)
    return moved


def _gate(engine: WorkflowEngine, run: Run, step_id: str, task_id: int) -> bool:
    from aictl.workflows.model import GATE_CAPABILITY

    svc = engine.svc
    owner = f"{engine.settings.actor}/workflow-run-{run.id}"
    verdict = svc.verdict_since(task_id, 0.0)
    claimed = svc.claim(owner, task_id=task_id, capabilities=[GATE_CAPABILITY])
    if claimed is None:
        return False
    epoch = claimed.lease.lease_epoch
    if verdict is not None and verdict["verdict"] == "approve":
        svc.complete(
            task_id, owner, epoch, result={"approved_by": verdict["by"], "comment": verdict.get("comment") or ""}
        )
    else:
        step = run.definition.step(step_id)
        reason = run.steps[step_id].reason or f"approve step {step.id}"
        svc.await_approval(task_id, owner, epoch, reason=f"workflow {run.workflow} run {run.id}: {reason}")
    return True


def _merge(engine: WorkflowEngine, run: Run, step_id: str) -> bool:
    from aictl.merge.queue import MergeQueue

    rows = engine.task_rows(run)
    done = sorted(tid for tid, r in rows.items() if r["status"] == "done" and r["type"] != "workflow-approval")
    merged = sorted(tid for tid, r in rows.items() if r["status"] == "merged")
    if done and _all_parked(engine, done):
        return False  # each merge waits for a human's verdict: asking the policy again would only repeat itself
    if done:
        report = MergeQueue(engine.store, engine.settings, policy=engine.policy).run(done)
        bad = [e for e in report.entries if e.outcome not in ("merged", "empty")]
        into, commit = report.into, report.target_after
        merged += [e.task_id for e in report.entries if e.outcome == "merged"]
    else:
        bad, into, commit = [], None, None

    def update(st: StepState) -> None:
        if bad:
            waiting = [e for e in bad if e.outcome == "awaiting_approval"]
            if waiting and len(waiting) == len(bad):
                st.reason = "; ".join(f"merge of task {e.task_id} awaits approval: aictl task approve {e.task_id}"
                                      for e in waiting)  # fmt: skip
                return
            st.status = "failed"
            st.reason = "; ".join(f"task {e.task_id}: {e.outcome}: {e.reason}" for e in bad)[:4000]
        else:
            st.status, st.reason = "succeeded", None
        st.outputs = {"into": into, "commit": commit, "merged": sorted(set(merged))}

    recorded = engine.record(run.id, step_id, update)
    return recorded and not (bad and all(e.outcome == "awaiting_approval" for e in bad))  # parked: nothing moved


def _all_parked(engine: WorkflowEngine, task_ids: list[int]) -> bool:
    from aictl.tasks.approvals import merge_waiting

    with engine.store.read() as tx:
        return all(merge_waiting(tx, t) for t in task_ids)


__all__ = ["apply"]
