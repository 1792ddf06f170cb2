"""Advancing a workflow run: one write transaction reads the run, its steps and their tasks, and moves them on.

An advance is idempotent and resumable. Each step's state and the task that runs its attempt are written in
the same transaction (the task is created there, through TaskService.create_in), so after a crash anywhere
the next advance finds either both or neither: no step attempt ever gets a second task. Facts that need
reading evidence (outputs, verification, feedback) are read before the transaction, from tasks that have
finished; a task that finishes in between is picked up by the next advance.

What cannot happen inside the transaction runs after it, in aictl.workflows.effects: parking an approval
step's task (`aictl task approve` then lets the run go on) and handing the run's commits to the merge
queue. Both are idempotent too, and followed by another advance.

Who advances: `aictl workflow run` in the foreground (aictl.workflows.driver), and the daemon after each
step task it finishes and on every sweep (aictl.daemon.worker / loop).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from aictl.audit.events import append_event
from aictl.domain import limits
from aictl.domain.errors import AictlError, ConfigError, UsageError
from aictl.policy.sources import OVERLAY_LABEL
from aictl.store.base import Store, Tx
from aictl.workflows import expr, runs
from aictl.workflows.model import GATE_CAPABILITY, STEP_DONE, RunStatus, Step, StepStatus, Workflow
from aictl.workflows.outputs import TaskFacts, feedback_of, read_facts
from aictl.workflows.runs import Run, StepState

S = StepStatus
FINISHED = ("done", "merged", "failed", "cancelled")
LIVE = ("queued", "blocked", "claimed", "running", "awaiting_approval")
MAX_ITEMS = 1000  # tasks one for_each step may fan out to
MAX_ROUNDS = 20  # advance -> effect -> advance rounds in one call


def run_label(run_id: int) -> str:
    return f"workflow-run:{run_id}"


def run_of(labels: list[str]) -> int | None:
    """The workflow run a step task belongs to (its `workflow-run:<id>` label), or None."""
    for label in labels:
        if label.startswith("workflow-run:") and label[13:].isdigit():
            return int(label[13:])
    return None


def advance_all(store: Store, settings: Any, *, policy: Any = None, only: int | None = None) -> list[Run]:
    """Advance every running run (or `only` that one): the daemon's hook, after a step task and on each sweep."""
    from aictl.logging import get_logger

    engine = WorkflowEngine(store, settings, policy=policy)
    out = []
    for run_id in [only] if only is not None else engine.active():
        try:
            out.append(engine.advance(run_id))
        except AictlError as e:  # one run's problem (a vanished workflow row, a policy refusal) never stops the rest
            get_logger("aictl.workflows").error("workflow run could not advance", run=run_id, error=e.message)
    return out


def resolve_inputs(wf: Workflow, given: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs: given values (strings from the command line are converted by type), then defaults."""
    unknown = sorted(set(given) - set(wf.inputs))
    if unknown:
        raise UsageError(
            f"workflow {wf.name} has no input {', '.join(map(repr, unknown))}",
            hint=f"its inputs: {', '.join(wf.inputs) or 'none'} (aictl workflow show {wf.name})",
        )
    out: dict[str, Any] = {}
    for name, spec in wf.inputs.items():
        if name in given:
            out[name] = _typed(name, spec.type, given[name])
        elif spec.default is not None:
            out[name] = spec.default
        elif spec.required:
            raise UsageError(
                f"workflow {wf.name} needs input {name!r}" + (f" ({spec.description})" if spec.description else ""),
                hint=f"give it: aictl workflow run {wf.name} --input {name}=…",
            )
        else:
            out[name] = [] if spec.type == "list" else None
    return out


def _typed(name: str, kind: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kind == "list":
            parsed = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
            if not isinstance(parsed, list):
                raise ValueError
            return parsed
        if kind == "int":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
    except ValueError:
        raise UsageError(f"input {name}: {value!r} is not a {kind}") from None
    return value


class WorkflowEngine:
    def __init__(
        self,
        store: Store,
        settings: Any,
        *,
        policy: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        from aictl.tasks.service import TaskService

        self.store, self.settings, self.policy, self.clock = store, settings, policy, clock
        self.svc = TaskService(store, settings, clock=clock)  # creates step tasks; the gate's mechanics
        self.project: Path | None = Path(settings.project_dir) if settings.project_dir else None

    # -- runs ---------------------------------------------------------------------------------

    def start(self, wf: Workflow, given: dict[str, Any]) -> Run:
        inputs = resolve_inputs(wf, given)
        if wf.policy is not None:
            self._check_overlay(wf, wf.policy)

        def fn(tx: Tx, now: float) -> int:
            run_id = runs.insert_run(tx, wf, inputs, self.settings.actor, now)
            self._event(tx, now, "workflow_start", run_id, workflow=wf.name, source=wf.source, inputs=inputs)
            return run_id

        return self.advance(self._write(fn))

    def _check_overlay(self, wf: Workflow, name: str) -> None:
        """A run whose overlay is missing or invalid does not start (its steps would be refused anyway)."""
        from aictl.policy.merge import load_effective_policy
        from aictl.policy.sources import overlay_path

        if self.project is None:
            raise ConfigError(f"workflow {wf.name} names policy overlay {name!r}, which needs a project")
        path = overlay_path(self.project, name)
        if not path.is_file():
            raise ConfigError(
                f"workflow {wf.name} names policy overlay {name!r}, but {path} does not exist",
                hint=f"write it (deny and require_approval rules, allow rules with limits), or drop 'policy:' "
                f"from {wf.source or 'the workflow'}",
            )
        load_effective_policy(self.project)  # a bad overlay (or any bad policy file) is named with file and line

    def get(self, run_id: int) -> Run:
        with self.store.read() as tx:
            return runs.load_run(tx, run_id)

    def runs(self, *, status: str | None = None, limit: int = 200) -> list[Run]:
        with self.store.read() as tx:
            return [runs.load_run(tx, i) for i in runs.run_ids(tx, status=status, limit=limit)]

    def active(self) -> list[int]:
        with self.store.read() as tx:
            return runs.run_ids(tx, status=RunStatus.RUNNING.value, limit=10_000)

    def cancel(self, run_id: int, reason: str = "") -> Run:
        """Cancel a running run; returns it as the transaction left it (a dry run's store rolls it back after)."""

        def fn(tx: Tx, now: float) -> Run:
            run = runs.load_run(tx, run_id, for_update=True)
            if run.done:
                from aictl.domain.errors import IllegalTransition

                raise IllegalTransition(f"workflow run {run_id} is {run.status} already; only a running one stops")
            self._end(
                tx,
                now,
                run,
                RunStatus.CANCELLED,
                f"cancelled by {self.settings.actor}" + (f": {reason}" if reason else ""),
            )
            return run

        return self._write(fn)

    # -- advancing ----------------------------------------------------------------------------

    def advance(self, run_id: int) -> Run:
        """Move the run as far as it can go now; returns it as stored afterwards."""
        from aictl.workflows.effects import apply

        for _ in range(MAX_ROUNDS):
            seen, facts = self._gather(run_id)
            if seen.done or (facts is not None and not facts):
                return seen  # nothing can move: no write transaction (each item of a fan-out ends here)
            facts = facts or {}
            run, effects = self._write(partial(self._advance, run_id=run_id, facts=facts))
            if not effects or not apply(self, run, effects):
                break
        return run

    def _gather(self, run_id: int) -> tuple[Run, dict[int, TaskFacts] | None]:
        """The run as it is, and facts of the finished tasks of its unfinished steps (read outside the write
        transaction). The facts are None when something else may move (a step ready to start, a gate, a merge,
        a task parked by the policy), and empty when nothing can."""
        from aictl.tasks.queries import task_rows

        with self.store.read() as tx:
            run = runs.load_run(tx, run_id)
            if run.done:
                return run, {}
            active = [st for st in run.steps.values() if st.status in (S.RUNNING, S.WAITING_APPROVAL)]
            found = task_rows(tx, [t for st in active for t in _current(st)])
        rows = []
        for st in active:
            mine = [found.get(t) for t in _current(st)]
            if mine and all(r is not None and r["status"] in FINISHED for r in mine):
                rows += mine  # a fan-out's facts are read once, when its last item finishes
        facts = {r["id"]: read_facts(self.store, self.settings, r) for r in rows if r is not None}
        return run, (facts if facts or not self._may_move(run, found) else None)

    def _may_move(self, run: Run, found: dict[int, dict[str, Any]]) -> bool:
        """Can anything but a finished task move the run now? (Else an advance without facts changes nothing.)"""
        if all(st.status in STEP_DONE for st in run.steps.values()) or any(
            st.status == S.FAILED for st in run.steps.values()
        ):
            return True  # an effect finished the last step (or failed one): the run itself ends now
        for step in run.definition.steps:
            st = run.steps[step.id]
            if st.status == S.PENDING and all(run.steps[n].status in STEP_DONE for n in step.needs):
                return True
            if (
                st.status == S.WAITING_APPROVAL
                and (found.get(st.task_id or 0) or {}).get("status") != "awaiting_approval"
            ):
                return True  # the gate's task is queued (to park, or approved) or claimed by a gate effect
            if st.status == S.RUNNING and step.kind == "merge":
                return True
            if st.status == S.RUNNING and any(
                (found.get(t) or {}).get("status") == "awaiting_approval" for t in _current(st)
            ):
                return True
        return False

    def _advance(self, tx: Tx, now: float, *, run_id: int, facts: dict[int, TaskFacts]) -> tuple[Run, list[tuple]]:
        from aictl.tasks.queries import task_rows

        run = runs.load_run(tx, run_id, for_update=True)
        if run.done:
            return run, []
        adv = _Advance(self, tx, now, run, facts)
        adv.rows = task_rows(tx, [t for st in run.steps.values() for t in _tasks(st)])
        before = {sid: st.key() for sid, st in run.steps.items()}
        for _ in range(4 * len(run.steps) + 4):
            if not adv.step_all():
                break
        changed = {sid: run.steps[sid].status for sid in run.steps if run.steps[sid].key() != before[sid]}
        for sid in changed:
            run.steps[sid].updated_at = now
            runs.save_step(tx, run.id, run.steps[sid])
        failed = [s for s in run.definition.steps if run.steps[s.id].status == S.FAILED]
        if failed:
            st = run.steps[failed[0].id]
            self._end(tx, now, run, RunStatus.FAILED, f"step {st.step_id} failed: {st.reason or 'see its task'}")
        elif all(st.status in STEP_DONE for st in run.steps.values()):
            self._end(tx, now, run, RunStatus.SUCCEEDED, None)
        elif changed:
            runs.save_run_status(tx, run.id, run.status, None, now)
            self._event(tx, now, "workflow_advance", run.id, steps=changed)
        return run, ([] if run.done else adv.effects)

    def _end(self, tx: Tx, now: float, run: Run, status: RunStatus, reason: str | None) -> None:
        """Finish the run: its unfinished steps are cancelled, and so are their live tasks."""
        for st in run.steps.values():
            for tid in _tasks(st):
                self.svc.cancel_in(tx, now, tid, reason=f"workflow run {run.id} {status.value}")
            if st.status not in STEP_DONE:
                st.status, st.reason, st.updated_at = S.CANCELLED.value, f"the run {status.value}", now
                runs.save_step(tx, run.id, st)
        run.status, run.reason = status.value, reason
        runs.save_run_status(tx, run.id, status.value, reason, now)
        self._event(
            tx, now, "workflow_finish", run.id, status=status.value, reason=reason,
            steps={sid: st.status for sid, st in run.steps.items()},
        )  # fmt: skip

    def _event(self, tx: Tx, now: float, action: str, run_id: int, **data: Any) -> None:
        append_event(
            tx,
            ts=now,
            actor=self.settings.actor,
            action=action,
            data={"run": run_id, **{k: v for k, v in data.items() if v is not None}},
        )

    def _write(self, fn: Callable[[Tx, float], Any]) -> Any:
        with self.store.write() as tx:
            return fn(tx, self.clock())

    # -- used by the effects and the driver --------------------------------------------------------

    def record(self, run_id: int, step_id: str, update: Callable[[StepState], None]) -> bool:
        """Apply an effect's result to a step still waiting for it (running or waiting_approval); False if not."""

        def fn(tx: Tx, now: float) -> bool:
            run = runs.load_run(tx, run_id, for_update=True)
            st = run.steps[step_id]
            if run.done or st.status not in (S.RUNNING, S.WAITING_APPROVAL):
                return False
            update(st)
            st.updated_at = now
            runs.save_step(tx, run_id, st)
            return True

        return bool(self._write(fn))

    def task_rows(self, run: Run) -> dict[int, dict[str, Any]]:
        from aictl.tasks.queries import task_rows

        with self.store.read() as tx:
            return task_rows(tx, [t for st in run.steps.values() for t in _tasks(st)])


def _commit_of(row: dict[str, Any]) -> str | None:
    try:
        result = json.loads(row.get("result") or "null")
    except ValueError:
        return None
    return result.get("commit") if isinstance(result, dict) else None


def _current(st: StepState) -> list[int]:
    """The tasks of the step's current attempt: its task, or every item of a fan-out."""
    return [st.task_id] if st.task_id else list(st.tasks)


def _tasks(st: StepState) -> list[int]:
    return list(dict.fromkeys([*st.tasks, *([st.task_id] if st.task_id else [])]))


class _Advance:
    """One pass over a run's steps inside the advance transaction."""

    def __init__(self, engine: WorkflowEngine, tx: Tx, now: float, run: Run, facts: dict[int, TaskFacts]):
        self.e, self.tx, self.now, self.run, self.facts = engine, tx, now, run, facts
        self.wf: Workflow = run.definition
        self.rows: dict[int, dict[str, Any]] = {}
        self.effects: list[tuple] = []

    def step_all(self) -> bool:
        progress = False
        for step in self.wf.steps:
            st = self.run.steps[step.id]
            before = st.key()
            try:
                if st.status == S.PENDING:
                    self._pending(step, st)
                elif st.status == S.RUNNING:
                    self._running(step, st)
                elif st.status == S.WAITING_APPROVAL:
                    self._waiting(step, st)
            except AictlError as err:  # a template or spec that cannot be rendered fails the step, with why
                st.status, st.reason = S.FAILED.value, err.message[:2000]
            progress = progress or st.key() != before
        return progress

    # -- context ------------------------------------------------------------------------------------

    def context(self, item: Any = None) -> dict[str, Any]:
        steps = {}
        for sid, st in self.run.steps.items():
            steps[sid] = {
                "status": st.status,
                "attempt": st.attempt,
                "task": st.task_id,
                "tasks": st.tasks,
                "outputs": st.outputs,
                "verify": st.facts.get("verify") or {"ran": False, "passed": False},
                "summary": st.facts.get("summary") or "",
                "reason": st.reason or "",
            }
        ctx = {
            "inputs": self.run.inputs,
            "steps": steps,
            "run": {"id": self.run.id, "workflow": self.run.workflow, "actor": self.run.actor},
        }
        if item is not None:
            ctx["item"] = item
        return ctx

    # -- pending: start, skip or jump -----------------------------------------------------------------

    def _pending(self, step: Step, st: StepState) -> None:
        needs = [self.run.steps[n] for n in step.needs]
        if any(n.status not in STEP_DONE for n in needs):
            return
        bad = [n for n in needs if n.status in (S.FAILED, S.CANCELLED)]
        if bad:
            st.status, st.reason = S.CANCELLED.value, f"needs {bad[0].step_id}, which {bad[0].status}"
            return
        skipped = [n for n in needs if n.status == S.SKIPPED]
        if skipped:
            st.status, st.reason = S.SKIPPED.value, f"needs {skipped[0].step_id}, which was skipped"
            return
        if step.when is not None and not expr.condition(step.when, self.context()):
            st.status, st.reason = S.SKIPPED.value, f"when `{step.when.strip()}` is false"
            return
        kind = step.kind
        if kind == "goto":
            self._goto(step, st)
        elif kind == "merge":
            st.status, st.reason, st.started_at = S.RUNNING.value, "merging", self.now
            st.attempt += 1
        else:
            self._attempt(step, st)

    def _goto(self, step: Step, st: StepState) -> None:
        assert step.goto is not None
        target = self.wf.step(step.goto)
        tst = self.run.steps[target.id]
        bound = target.retry.max if target.retry else 1
        feedback = self._goto_feedback(step)
        if tst.attempt >= bound:
            st.status = S.FAILED.value
            st.reason = (
                f"goto {target.id}: its loop limit is reached ({tst.attempt} of retry.max {bound}); "
                f"last evidence: {feedback}"
            )[:4000]
            return
        for sid in [target.id, *self.wf.dependants(target.id)]:
            s = self.run.steps[sid]
            for tid in _tasks(s):
                if self.rows.get(tid, {}).get("status") in LIVE:
                    self.e.svc.cancel_in(self.tx, self.now, tid, reason=f"workflow step {step.id}: back to {target.id}")
            s.status, s.reason, s.outputs = S.PENDING.value, f"sent back by {step.id} (goto {target.id})", {}
            if sid != target.id:
                s.facts = {}
        tst.feedback = feedback

    def _goto_feedback(self, step: Step) -> str:
        parts = []
        for n in step.needs:
            s = self.run.steps[n]
            parts.append(
                f"Step {n} (task {s.task_id}) says: outputs {json.dumps(s.outputs, sort_keys=True)[:2000]}"
                + (f"; its message: {str(s.facts.get('summary'))[:2000]}" if s.facts.get("summary") else "")
            )
        return "\n".join(parts)

    def _attempt(self, step: Step, st: StepState) -> None:
        """Start the step's next attempt: its task(s) are created in this transaction."""
        from aictl.tasks.spec import TaskSpec

        ctx = self.context()
        deps = self._dep_tasks(step)
        previous = st.task_id
        if previous and self.rows.get(previous, {}).get("status") in ("done", "merged"):
            deps.append(previous)  # a loop builds on its last done attempt (and merges after it)
        deps = self._bounded(step, list(dict.fromkeys(deps)))
        items: list[Any] = [None]
        if step.for_each is not None:
            items = expr.render_value(step.for_each, ctx)
            if not isinstance(items, list):
                raise expr.ExpressionError(f"for_each gave {expr.text_of(items)[:200]}, expected a list")
            if len(items) > MAX_ITEMS:
                raise expr.ExpressionError(f"for_each gave {len(items)} items; at most {MAX_ITEMS}")
        specs = [self._spec(step, st, self.context(item) if step.for_each is not None else ctx, deps, i, item)
                 for i, item in enumerate(items)]  # fmt: skip
        st.attempt += 1
        st.started_at = self.now
        if not specs:
            st.status, st.reason, st.outputs = S.SUCCEEDED.value, "for_each gave no items", []
            return
        created = self.e.svc.create_in(self.tx, self.now, [s for s in specs if isinstance(s, TaskSpec)])
        for t in created:
            self.rows[t.id] = {"id": t.id, "status": t.status.value}
        ids = [t.id for t in created]
        st.tasks = ids if step.for_each is not None else [*st.tasks, *ids]  # a fan-out's list is its current attempt
        st.task_id = ids[0] if step.for_each is None else None
        st.outputs, st.facts = ({} if step.for_each is None else []), {}
        if step.kind == "approval":
            reason = expr.render((step.approval or {}).get("reason") or f"approve step {step.id}", ctx)
            st.status, st.reason = S.WAITING_APPROVAL.value, f"{reason}: aictl task approve {ids[0]}"
        else:
            st.status, st.reason = S.RUNNING.value, None

    def _spec(self, step: Step, st: StepState, ctx: dict[str, Any], deps: list[int], i: int, item: Any) -> Any:
        from aictl.tasks.spec import TaskSpec

        wf, run = self.wf, self.run
        labels = [f"workflow:{wf.name}", run_label(run.id), f"workflow-step:{step.id}"]
        if wf.policy is not None:
            labels.append(OVERLAY_LABEL + wf.policy)  # the overlay's rules apply to tasks carrying it
        caps: list[str] = []
        command = verify = None
        if step.kind == "approval":
            text = expr.render((step.approval or {}).get("reason") or f"approve step {step.id}", ctx)
            caps = [GATE_CAPABILITY]
            prompt = f"Approval gate of workflow {wf.name} run {run.id}: {text}"
        else:
            labels += [f"ai:{x}" for x in step.ai.get("labels") or []]
            if step.ai.get("id"):
                labels.append(f"ai:{step.ai['id']}")
            caps = list(step.ai.get("capabilities") or [])
            if step.command is not None:
                command = expr.render(step.command, ctx, shell=True)
                prompt = command
            else:
                prompt = expr.render(step.prompt or "", ctx)
            if step.verify:
                verify = expr.render(step.verify, ctx, shell=True)
            if st.feedback:
                prompt += "\n\n---\nFeedback from the previous attempt:\n" + st.feedback
        first = next((ln.strip() for ln in prompt.splitlines() if ln.strip()), step.id)
        suffix = f" [{i + 1}]" if step.for_each is not None else ""
        title = expr.render(step.title, ctx) if step.title else f"{wf.name}#{run.id} {step.id}{suffix}: {first}"
        locks = expr.string_list(expr.render_value(step.locks, ctx), "locks") if step.locks is not None else []
        return TaskSpec(
            title=title[: limits.TITLE_MAX],
            description=prompt[-limits.DESCRIPTION_MAX :] if len(prompt) > limits.DESCRIPTION_MAX else prompt,
            labels=labels,
            required_capabilities=caps,
            depends_on=list(dict.fromkeys(deps)),
            lock_paths=locks,
            command=command,
            verify=verify,
            priority=step.priority,
            type="workflow-approval" if step.kind == "approval" else "workflow-step",
        )

    def _bounded(self, step: Step, deps: list[int]) -> list[int]:
        """A task has at most LABELS_MAX dependencies: past that, only those that made a commit (a fan-in of
        commands that changed nothing starts from the base all the same)."""
        if len(deps) <= limits.LABELS_MAX:
            return deps
        with_commit = [d for d in deps if _commit_of(self.rows.get(d, {}))]
        if len(with_commit) > limits.LABELS_MAX:
            raise UsageError(
                f"step {step.id} would start from {len(with_commit)} tasks' commits; a task takes at most "
                f"{limits.LABELS_MAX} dependencies",
                hint="join the fan-out in stages (a step per group of items)",
            )
        return with_commit

    def _dep_tasks(self, step: Step) -> list[int]:
        """The done tasks of the steps this one needs (through skipped or task-less steps to theirs)."""
        out: list[int] = []
        seen: set[str] = set()
        stack = list(step.needs)
        while stack:
            sid = stack.pop(0)
            if sid in seen:
                continue
            seen.add(sid)
            st = self.run.steps[sid]
            current = [t for t in ([st.task_id] if st.task_id else st.tasks) if t]
            done = [t for t in current if self.rows.get(t, {}).get("status") in ("done", "merged")]
            kind = self.wf.step(sid).kind
            if done and kind != "approval":
                out += done
            else:
                stack += self.wf.step(sid).needs
        return out

    # -- running: did the attempt pass? -------------------------------------------------------------

    def _running(self, step: Step, st: StepState) -> None:
        if step.kind == "merge":
            self.effects.append(("merge", step.id))
            return
        if step.for_each is not None:
            self._running_items(step, st)
            return
        assert st.task_id is not None
        row = self.rows.get(st.task_id) or {}
        if row.get("status") not in FINISHED:
            if row.get("status") == "awaiting_approval":
                st.reason = f"task {st.task_id} awaits approval (policy): aictl task approve {st.task_id}"
            return
        facts = self.facts.get(st.task_id)
        if facts is None:
            return  # it finished after the facts were read: the next advance has them
        st.outputs = {name: facts.output(src, self.e.project) for name, src in step.outputs.items()}
        st.facts = {"verify": facts.verify, "summary": facts.result.get("summary"), "task_status": facts.status}
        ok_task = facts.status in ("done", "merged")
        if step.retry is None:
            if ok_task:
                st.status, st.reason = S.SUCCEEDED.value, None
            else:
                st.status, st.reason = S.FAILED.value, f"task {st.task_id} {facts.status}: {facts.error or ''}".strip()
            return
        ctx = self.context()
        ctx["steps"][step.id]["status"] = S.SUCCEEDED.value if ok_task else S.FAILED.value
        why = ""
        try:
            passed = expr.condition(step.retry.until, ctx)
        except expr.ExpressionError as err:
            passed, why = False, f" (retry.until: {err.message})"
        if passed:
            st.status, st.reason, st.feedback = S.SUCCEEDED.value, None, None
            return
        feedback = feedback_of(step.id, st.attempt, facts, st.outputs) + why
        if st.attempt >= step.retry.max:
            st.status = S.FAILED.value
            st.reason = (
                f"retry.until `{step.retry.until.strip()}` still false after {st.attempt} attempt(s) "
                f"(retry.max {step.retry.max}); last evidence: {feedback}"
            )[:4000]
            st.feedback = feedback
            return
        st.feedback = feedback
        self._attempt(step, st)

    def _running_items(self, step: Step, st: StepState) -> None:
        rows = [self.rows.get(t) or {} for t in st.tasks]
        if any(r.get("status") not in FINISHED for r in rows):
            return
        facts = [self.facts.get(t) for t in st.tasks]
        if any(f is None for f in facts):
            return
        failed = [f for f in facts if f is not None and f.status not in ("done", "merged")]
        st.outputs = [
            {name: f.output(src, self.e.project) for name, src in step.outputs.items()} for f in facts if f is not None
        ]
        if failed:
            st.status = S.FAILED.value
            st.reason = (
                f"{len(failed)} of {len(facts)} items failed; first: task {failed[0].task_id}: {failed[0].error}"
            )
        else:
            st.status, st.reason = S.SUCCEEDED.value, None

    # -- an approval gate ---------------------------------------------------------------------------

    def _waiting(self, step: Step, st: StepState) -> None:
        assert st.task_id is not None
        status = (self.rows.get(st.task_id) or {}).get("status")
        if status in ("done", "merged"):
            facts = self.facts.get(st.task_id)
            if facts is None:
                return
            st.status, st.reason = S.SUCCEEDED.value, None
            st.outputs = {k: facts.result.get(k) for k in ("approved_by", "comment")}
        elif status in ("failed", "cancelled"):
            facts = self.facts.get(st.task_id)
            st.status = S.FAILED.value
            st.reason = f"not approved: {(facts.error if facts else None) or status}"
        elif status == "queued":
            self.effects.append(("gate", step.id, st.task_id))


__all__ = ["WorkflowEngine", "advance_all", "resolve_inputs", "run_label", "run_of"]
