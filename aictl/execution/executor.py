"""The executor: plan (claim + route) → policy → workspace → connector in a sandbox → evidence → checks → outcome.

`Executor.execute` is the spine every agent runs through; the CLI's `aictl task
execute` and the daemon both call it. Layout:

- aictl.execution.planner claims (or adopts) the task and says who runs it (a Plan);
- `Executor.run` holds the run's resources (workspace, lease keeper, activity writer)
  on one ExitStack and moves the task once at the end: complete, fail, or release;
- aictl.execution.record writes the evidence, runs the verification and the checks;
- aictl.execution.outcome has the options, the report and its Outcome (with its exit code).

An unexpected error during a run is decided here, once, for the CLI and the daemon
alike: a failed, retryable attempt (backoff, failed after max_attempts), its evidence
so far kept. Progress goes to an `on_event` callback as small dicts.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl.domain.errors import (
    AictlError,
    LeaseLost,
    NotFound,
    PolicyDenied,
    UsageError,
)
from aictl.execution.outcome import ExecuteOptions, ExecutionReport, Outcome
from aictl.tasks.queries import live_leases_and_failures, task_row

if TYPE_CHECKING:
    import threading

    from aictl.config import Settings
    from aictl.domain.models import Task
    from aictl.execution.activity import ActivityWriter
    from aictl.execution.lease import LeaseKeeper
    from aictl.execution.planner import Plan
    from aictl.policy.gate import PolicyGate
    from aictl.policy.runtime import RunPolicy
    from aictl.sandbox.base import SandboxSpec
    from aictl.sandbox.workspace import Workspace
    from aictl.store.base import Store

Emit = Callable[[dict[str, Any]], None]

RATE_LIMITED = ("rate_limit", "overloaded")
UNREACHABLE = "unreachable"  # connection refused/reset: the AI is unhealthy, paused like a rate limit
DEFAULT_PAUSE_S = 60.0


class _Stop(Exception):
    """End the run early with an outcome (the task has already been moved accordingly)."""

    def __init__(self, outcome: Outcome, reason: str):
        self.outcome, self.reason = outcome, reason


def tighten(spec: SandboxSpec, sandbox: dict[str, Any]) -> SandboxSpec:
    """Apply a policy's sandbox limits: they only tighten (docker over local, network off, less memory)."""
    update: dict[str, Any] = {}
    if sandbox.get("network") is False:
        update["network"] = False
    if sandbox.get("backend") == "docker":  # a policy's `local` never replaces a requested docker
        update["backend"] = "docker"
    if sandbox.get("memory_mb") is not None and sandbox["memory_mb"] < spec.memory_mb:
        update["memory_mb"] = int(sandbox["memory_mb"])
    return spec.model_copy(update=update)


def _redacting(emit: Emit) -> Emit:
    """The live progress stream (stderr, JSON lines, the daemon) with every known secret masked."""
    from aictl.domain.redact import redact

    return lambda event: emit(redact(event))


class Executor:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        policy: PolicyGate | None = None,
        on_event: Emit | None = None,
        open_store: Callable[[], Store] | None = None,
        clock: Callable[[], float] = time.time,
        task_servers: Any = None,
    ):
        """`task_servers`: serves each run's task-scoped MCP server in this process (aictl.mcp.inproc, given by
        the CLI and the daemon); without it the agent starts `aictl mcp serve --task` itself."""
        self.task_servers = task_servers
        from aictl.agents.registry import Registry
        from aictl.agents.router import Router
        from aictl.execution.planner import Planner
        from aictl.execution.record import Recorder
        from aictl.sandbox.workspace import WorkspaceManager
        from aictl.tasks.claims import Claims
        from aictl.tasks.fence import fenced_evidence
        from aictl.tasks.queries import TaskQueries

        project = settings.project_dir
        if project is None:
            raise UsageError("executing a task needs a project (a git repository with .ai/)", hint="aictl init")
        self.store, self.settings, self.policy, self.clock = store, settings, policy, clock
        self.emit: Emit = _redacting(on_event) if on_event else (lambda e: None)
        self.claims = Claims(
            store, settings, policy=policy, clock=clock, ranker=Router(store, settings, policy=policy, clock=clock)
        )
        self.svc = self.claims.svc
        self.queries = TaskQueries(store, clock=clock)
        self.registry = Registry(store, actor=settings.actor)
        self.evidence = fenced_evidence(store, settings.home, actor=settings.actor)
        self.planner = Planner(store, claims=self.claims, registry=self.registry, evidence=self.evidence)
        self.recorder = Recorder(store, self.evidence, policy=policy, emit=self.emit)
        self.workspaces = WorkspaceManager(
            Path(project), settings.project_home / "workspaces", pool_size=settings.workspace_pool
        )
        self._open_store = open_store or self._default_open_store

    def _default_open_store(self) -> Store:
        from aictl.store import open_store

        # the run's own connections (lease keeper, activity, decisions) open a store the caller already migrated
        return open_store(
            self.settings.resolved_database_url, busy_timeout_ms=self.settings.busy_timeout_ms, migrate=False
        )

    # -- the whole path --------------------------------------------------------

    def execute(self, task_id: int | None, opts: ExecuteOptions) -> ExecutionReport:
        """Plan and run; a routed AI that hits its rate limit is paused and the next eligible AI takes the task."""
        t0 = time.monotonic()
        report = self.run(self.planner.plan(task_id, opts), opts, started=t0)
        tried: set[str] = set()
        while (
            report.outcome is Outcome.RELEASED
            and report.ai is not None
            and report.ai not in tried
            and opts.epoch is None
        ):  # an adopted claim goes back to its claimer (the daemon)
            tried.add(report.ai)
            self._phase(report.task.id, "rerouting", reason=report.reason)
            t0 = time.monotonic()
            try:
                plan = self.planner.plan(report.task.id, opts)
            except NotFound:
                return report  # no other AI can take it now: it waits in the queue, released
            report = self.run(plan, opts, started=t0)
        return report

    def run(self, plan: Plan, opts: ExecuteOptions, *, started: float | None = None) -> ExecutionReport:
        """Run a planned claim to its outcome; the task is moved exactly once (complete, fail or release)."""
        t0 = started if started is not None else time.monotonic()
        opts = opts.model_copy(update={"connector": plan.connector, **({"ai": plan.ai.id} if plan.ai else {})})
        task, epoch = plan.task, plan.epoch
        report = ExecutionReport(
            task=task,
            outcome=Outcome.FAILED,
            lease_epoch=epoch,
            ai=plan.ai.id if plan.ai else None,
            connector=plan.connector,
        )
        self._phase(
            task.id,
            "claimed",
            epoch=epoch,
            owner=opts.owner,
            **({"ai": plan.ai.id, "routed": plan.routed} if plan.ai is not None else {}),
        )
        timings = {"claim": time.monotonic() - t0}
        from aictl.sandbox.docker import deferred_cleanup

        # A run's container goes on a thread while the workspace is collected; the block waits for it.
        with deferred_cleanup(), ExitStack() as resources:  # the workspace: removed or kept by the outcome
            try:
                self._steps(plan, opts, report, resources, timings, t0)
            except _Stop as stop:
                report.outcome, report.reason = stop.outcome, stop.reason
                report.task = self.queries.get(task.id)
                self._phase(task.id, stop.outcome, reason=stop.reason)
            except LeaseLost as e:
                report.outcome, report.reason = Outcome.LEASE_LOST, e.message
                report.task = self.queries.get(task.id)
                self._phase(task.id, Outcome.LEASE_LOST, reason=e.message)
            except Exception as e:  # noqa: BLE001 - decided here, once: a failed attempt
                self._unexpected(report, opts, e)
            except BaseException as e:  # Ctrl-C: give the task back rather than leave it leased
                self._release_quietly(task.id, opts.owner, epoch, f"executor interrupted: {type(e).__name__}")
                raise
            finally:
                report.timings = {k: round(v, 4) for k, v in timings.items()} | report.timings
        self._anchor_audit_head(report)
        return report

    def _anchor_audit_head(self, report: ExecutionReport) -> None:
        """Keep the chain head in git too (aictl.audit.anchor): a log truncated with its head is then caught."""
        from aictl.audit.anchor import ANCHOR_REF, anchor_text, head

        try:
            got = head(self.store)
            if got is not None:
                self.workspaces.write_anchor(ANCHOR_REF, anchor_text(*got))
        except Exception as e:  # noqa: BLE001 - the anchor is a second copy of the head; a run never fails for it
            self._phase(report.task.id, "anchor_failed", reason=f"{type(e).__name__}: {e}")

    def _steps(
        self,
        plan: Plan,
        opts: ExecuteOptions,
        report: ExecutionReport,
        resources: ExitStack,
        timings: dict[str, float],
        t0: float,
    ) -> None:
        from aictl.execution.activity import ActivityWriter

        task, epoch = plan.task, plan.epoch
        spec = self._sandbox_spec(opts)
        limits = self._policy_execute(task, opts, epoch, spec, report)
        if limits.get("sandbox"):
            spec = tighten(spec, limits["sandbox"])
        self._phase(task.id, "workspace")
        t = time.monotonic()
        self._stop_stale_runs(task.id, epoch)
        start = self._start_point(task, opts, epoch, report)
        ws = self.workspaces.create(task.id, epoch, base=start)
        resources.callback(self._dispose, ws, report, opts)
        report.branch = ws.branch
        timings["workspace"] = time.monotonic() - t
        run_policy = self._pin_policy(task, plan, opts, epoch, ws.path, spec)
        resources.callback(run_policy.close)
        from aictl.execution.containment import contain

        run_spec = contain(spec, ws.path, run_policy)  # the agent's sandbox: policy's network, secrets masked
        task = self.svc.start(task.id, opts.owner, epoch, ai=opts.ai)
        with ExitStack() as live:  # the lease keeper and the activity writer end before the task moves
            keeper = self._keep_lease(task.id, opts.owner, epoch, opts.ttl)
            live.callback(keeper.finish)
            activity = None
            if plan.ai is not None:
                activity = ActivityWriter(self._open_store, task.id, opts.owner, epoch, self.emit)
                live.callback(activity.finish)
            self._phase(task.id, "running", backend=spec.backend, connector=opts.connector)
            t = time.monotonic()
            result = self._run_connector(
                task, ws.path, run_spec, opts, keeper.stop, plan, limits, activity, report, run_policy
            )
            if activity is not None:
                activity.finish()  # its last line lands before the evidence
            timings["run"] = time.monotonic() - t
            self._check_lease(keeper)
            t = time.monotonic()
            changes = self._collect(task, ws, opts, epoch, result, spec, report, plan)
            report.changed_paths, report.commit = changes.paths, changes.commit
            self._phase(task.id, "evidence", changed=len(changes.paths))
            self.recorder.run(task, opts, epoch, result, changes, spec, report, plan.ai)
            if not result.ok and result.error_kind in (*RATE_LIMITED, UNREACHABLE) and plan.ai is not None:
                live.close()
                self._rate_limited(report, opts, epoch, plan, result)
                return
            if result.pending_approval is None and plan.ai is not None:  # or one the agent asked for (MCP)
                from aictl.tasks.approvals import agent_request

                result.pending_approval = agent_request(self.store, task.id, epoch)
            if result.pending_approval is not None:  # a call the policy wants a person to approve: wait
                live.close()
                self._await(report, opts, epoch, result.pending_approval, "tool")
                return
            verify = self.recorder.verify(task, ws.path, spec, opts, epoch, keeper.stop, report)
            timings["collect"] = time.monotonic() - t
            self._check_lease(keeper)
            violations = self.recorder.checks(
                task, opts, epoch, changes.paths, result, verify, limits, report, run_policy
            )
        timings["total"] = time.monotonic() - t0
        if not result.ok:
            self._fail(report, opts, epoch, result.error or "the agent failed", result.transient)
        elif violations:
            self._fail(report, opts, epoch, "; ".join(violations), False)
            self._reject(ws, report)
        else:
            done = {
                "summary": result.summary,
                "changed_paths": changes.paths,
                "commit": changes.commit,
                "branch": ws.branch,
                "evidence": [e["digest"] for e in report.evidence],
            }
            if report.pending_approval is not None:  # a protected path in the diff: the result waits for a person
                self._await(report, opts, epoch, report.pending_approval, "result", result=done)
                return
            ok, published = self._publish(task.id, opts, epoch, report)
            if not ok:
                return
            if published:
                done["published"] = published
            report.task = self.svc.complete(task.id, opts.owner, epoch, ai=opts.ai, result=done)
            report.outcome = Outcome.DONE
            timings["until_complete"] = time.monotonic() - t0
            self._phase(task.id, "done", elapsed=round(time.monotonic() - t0, 3))

    # -- steps -------------------------------------------------------------------

    def _dispose(self, ws: Workspace, report: ExecutionReport, opts: ExecuteOptions) -> None:
        """A finished or released run's workspace goes; any other is kept for inspection (aictl task workspace)."""
        t = time.monotonic()
        if report.outcome in (Outcome.DONE, Outcome.RELEASED) and not opts.keep_workspace:
            self.workspaces.recycle(ws)  # into the pool for the next task, or removed
            report.workspace = None
        else:
            report.workspace = str(ws.path)
        report.timings["cleanup"] = round(time.monotonic() - t, 4)

    def _start_point(self, task: Task, opts: ExecuteOptions, epoch: int, report: ExecutionReport) -> str:
        """The commit the workspace starts from: the base with the done dependencies' commits folded in.

        A conflict between dependencies fails the start step, not an agent attempt: the task fails,
        not retryable (the same commits would conflict again), naming the files in its evidence.
        """
        import json

        from aictl.execution.remote import start_inputs
        from aictl.sandbox.remote import RemoteError
        from aictl.sandbox.startpoint import DependencyConflict, start_point

        base = opts.base or self.settings.workspace_base
        if (
            not opts.base
            and self.settings.integration_branch
            and isinstance(task.result, dict)
            and task.result.get("merge")
        ):  # sent back by the merge queue: redo the change on the target it failed to land on
            base = f"refs/heads/{self.settings.integration_branch}"
        found = []
        for dep_id in sorted(task.dependencies):
            dep = self.queries.get(dep_id)
            commit = dep.result.get("commit") if isinstance(dep.result, dict) else None
            if dep.status in ("done", "merged") and commit:
                found.append((dep_id, str(dep.status), str(commit)))
        try:
            base, deps = start_inputs(self.settings, self.workspaces, base, found)
        except RemoteError as e:  # the remote is down or lacks a branch: try again later, nothing is wrong here
            report.task = self.svc.fail(task.id, opts.owner, epoch, reason=f"start step: {e.message}", retryable=True)
            raise _Stop(
                Outcome.RETRYING if report.task.status == "queued" else Outcome.FAILED, f"start step: {e.message}"
            ) from None
        if not deps:
            return base
        try:
            start = start_point(self.workspaces, base, deps)
        except DependencyConflict as e:
            self.recorder.put(
                report,
                task,
                opts,
                epoch,
                json.dumps({"error": e.message, **e.details}, sort_keys=True),
                kind="start",
                name="start_conflict.json",
                media_type="application/json",
                summary={"files": e.details["files"]},
            )
            report.task = self.svc.fail(task.id, opts.owner, epoch, reason=f"start step: {e.message}", retryable=False)
            raise _Stop(Outcome.FAILED, f"start step: {e.message}") from None
        self.recorder.put(
            report,
            task,
            opts,
            epoch,
            start.model_dump_json(indent=2),
            kind="start",
            name="start_point.json",
            media_type="application/json",
            summary={"commit": start.commit, "dependencies": [d.task_id for d in start.dependencies]},
        )
        self._phase(
            task.id, "start_point", commit=start.commit, dependencies=[d.model_dump() for d in start.dependencies]
        )
        return start.commit

    def _reject(self, ws: Workspace, report: ExecutionReport) -> None:
        """A result the checks refused leaves refs/heads (see aictl.execution.rejected)."""
        from aictl.execution.rejected import reject_branch

        ref = reject_branch(self.workspaces.repo_root, ws.path, ws.branch, ws.task_id, ws.lease_epoch)
        if ref is not None:
            report.branch = ref
            self._phase(ws.task_id, "rejected", ref=ref)

    def _collect(
        self,
        task: Task,
        ws: Workspace,
        opts: ExecuteOptions,
        epoch: int,
        result: Any,
        spec: SandboxSpec,
        report: ExecutionReport,
        plan: Plan,
    ) -> Any:
        """Commit the workspace; if the agent sabotaged it, the run's evidence is stored before the error goes on.

        The error then reaches `_unexpected`: a failed, counted attempt with its output and the error kept.
        """
        from aictl.sandbox.workspace import Changes, WorkspaceError
        from aictl.store.base import is_store_error

        try:
            return self.workspaces.collect(ws, message=f"aictl: task {task.id}: {task.title}\n\n{result.summary}")
        except Exception as e:
            if is_store_error(e) or isinstance(e, LeaseLost):
                raise
            nothing = Changes(paths=[], diff="", commit=None, stats={})
            self.recorder.run(task, opts, epoch, result, nothing, spec, report, plan.ai)
            raise WorkspaceError(f"collecting the workspace failed: {getattr(e, 'message', e)}") from e

    def _stop_stale_runs(self, task_id: int, epoch: int) -> None:
        """A reclaimed task's earlier run (its holder died or lost the lease) must not write beside this one."""
        from aictl.sandbox.runs import stop_stale_runs

        stopped = stop_stale_runs(self.workspaces.workspaces_dir, task_id, epoch)
        if stopped:
            self._phase(task_id, "stale_runs_stopped", stopped=stopped)

    @staticmethod
    def _check_lease(keeper: LeaseKeeper) -> None:
        if keeper.stop.is_set():
            raise _Stop(
                Outcome.CANCELLED if keeper.cancelled else Outcome.LEASE_LOST, keeper.lost_reason or "lease lost"
            )

    def _sandbox_spec(self, opts: ExecuteOptions) -> SandboxSpec:
        from aictl.sandbox.base import SandboxSpec

        s = self.settings
        return SandboxSpec(
            backend=opts.backend or s.sandbox_backend,
            image=s.sandbox_image,
            network=s.sandbox_network,
            cpus=s.sandbox_cpus,
            memory_mb=s.sandbox_memory_mb,
            pids=s.sandbox_pids,
            timeout_s=opts.timeout_s or s.execution_timeout,
        )

    def _policy_execute(
        self, task: Task, opts: ExecuteOptions, epoch: int, spec: SandboxSpec, report: ExecutionReport
    ) -> dict[str, Any]:
        """Policy check for `execute`; the sandbox is part of the input, so a rule can forbid `local`."""
        if self.policy is None:
            return {}
        from aictl.policy.records import write_record
        from aictl.tasks.service import task_facts

        with self.store.read() as tx:
            row = task_row(tx, task.id)
        sandbox = {
            "backend": spec.backend,
            "sandboxed": spec.backend != "local",
            "network": spec.network,
            "image": spec.image if spec.backend == "docker" else None,
        }
        record = self.policy.check(
            "execute",
            ai=opts.ai or opts.owner,
            actor=opts.owner,
            task=task_facts(row),
            epoch=epoch,
            context={"connector": opts.connector, "sandbox": sandbox},
        )
        if record.effect == "require_approval":
            approval = self._approval_for(task.id, "execute")
            if approval:
                record.effect = "allow"
                record.reasons.append(
                    f"approved by {approval['by']}" + (f": {approval['comment']}" if approval.get("comment") else "")
                )
        report.decisions.append({"action": "execute", "decision_id": record.decision_id, "effect": record.effect})
        if record.effect == "allow":
            with self.store.write() as tx:
                write_record(tx, record)
            self.emit({"type": "decision", "task_id": task.id, "action": "execute", "effect": "allow"})
            return dict(record.limits)
        if record.effect == "require_approval":
            report.task = self.svc.await_approval(
                task.id, opts.owner, epoch, record=record, reason="; ".join(record.reasons)
            )
            raise _Stop(Outcome.AWAITING_APPROVAL, "; ".join(record.reasons))
        from aictl.policy.gate import denied_error

        err = denied_error(record)
        with self.store.write() as tx:
            write_record(tx, record)
        report.task = self.svc.fail(task.id, opts.owner, epoch, reason=err.message, retryable=False)
        raise _Stop(Outcome.FAILED, err.message)

    def _pin_policy(
        self, task: Task, plan: Plan, opts: ExecuteOptions, epoch: int, workdir: Path, spec: SandboxSpec
    ) -> RunPolicy:
        """The run's policy, pinned before the agent starts: the executor's gate (loaded from the project
        and state dir when it was made), never re-read from the worktree the agent can change."""
        from aictl.policy.runtime import RunPolicy
        from aictl.tasks.globs import path_matches
        from aictl.tasks.service import task_facts

        with self.store.read() as tx:
            row = task_row(tx, task.id)
        locks = list(task.lock_paths)
        roots: tuple[str | Path, ...] = (workdir,) + ((spec.mount,) if spec.backend == "docker" else ())
        pinned = RunPolicy.pin(
            store=self.store,
            settings=self.settings,
            task_row=task_facts(row),
            ai=plan.ai,
            epoch=epoch,
            actor=opts.ai or opts.owner,
            gate=self.policy,
            roots=roots,
            open_store=self._open_store,
            clock=self.clock,
            writable=lambda path: bool(locks) and path_matches(locks, path),  # as the result's lock check
        )
        self._phase(task.id, "policy_pinned", fingerprint=pinned.fingerprint, grants=len(pinned.grants))
        return pinned

    def _approval_for(self, task_id: int, action: str) -> dict[str, Any] | None:
        with self.store.read() as tx:
            row = tx.one(
                "SELECT MAX(ts) AS ts FROM decisions WHERE task_id = :t AND action = :a"
                " AND effect = 'require_approval'",
                {"t": task_id, "a": action},
            )
        return None if row is None or row["ts"] is None else self.svc.approved_since(task_id, row["ts"])

    def _keep_lease(self, task_id: int, owner: str, epoch: int, ttl: float | None) -> LeaseKeeper:
        from aictl.execution.lease import LeaseKeeper
        from aictl.tasks.service import TaskService

        ttl = ttl or self.settings.lease_ttl
        interval = max(0.2, min(self.settings.heartbeat_interval, ttl / 3))
        keeper = LeaseKeeper(
            lambda: TaskService(self._open_store(), self.settings, clock=self.clock),
            task_id,
            owner,
            epoch,
            ttl=ttl,
            interval=interval,
        )
        keeper.start()
        return keeper

    def _run_connector(
        self,
        task: Task,
        workdir: Path,
        spec: SandboxSpec,
        opts: ExecuteOptions,
        stop: threading.Event,
        plan: Plan,
        limits: dict[str, Any],
        activity: ActivityWriter | None,
        report: ExecutionReport,
        run_policy: RunPolicy,
    ) -> Any:
        from aictl.agents.connectors import RunContext, get_connector
        from aictl.sandbox import get_sandbox

        connector = get_connector(opts.connector or "command")
        if plan.ai is not None and spec.backend == "docker":  # an agent's commands want git, python, a real shell
            from aictl.sandbox.agents_image import for_agents

            spec = for_agents(spec)
        ctx = RunContext(
            task=task,
            workdir=workdir,
            sandbox=get_sandbox(spec.backend),
            spec=spec,
            on_output=lambda stream, line: self.emit(
                {"type": "output", "task_id": task.id, "stream": stream, "line": line}
            ),
            cancel=stop,
            command=opts.command,
            instructions=task.description,
            labels={"task": str(task.id), "epoch": str(task.lease_epoch)},
            run_policy=run_policy,
        )
        if plan.ai is not None:
            from aictl.execution.agent import agent_context

            report.skills = agent_context(
                ctx,
                task,
                plan.ai,
                opts,
                store=self.store,
                settings=self.settings,
                policy=self.policy,
                limits=limits,
                resume_session=plan.resume_session,
                activity=activity,
            )
            report.decisions += report.skills.pop("decisions", [])
        from aictl.skills.delivery import materialize, mode_for

        served = ExitStack()
        if plan.ai is not None and self.task_servers is not None:
            from aictl.agents.connectors.mcpconfig import AICTL_SERVER

            entry, env = served.enter_context(self.task_servers.serve(task.id, task.lease_epoch, opts.owner))
            ctx.mcp_servers[AICTL_SERVER] = entry
            ctx.spec = ctx.spec.model_copy(update={"env": {**ctx.spec.env, **env}})
        undo = materialize(workdir, ctx.skills, mode_for(opts.connector))
        try:
            return connector.run(ctx)
        finally:
            undo()  # the delivered skills never reach the diff
            served.close()

    def _rate_limited(self, report: ExecutionReport, opts: ExecuteOptions, epoch: int, plan: Plan, result: Any) -> None:
        """A usage or rate limit: pause the AI; a routed task goes back for another AI, a pinned one retries."""
        from aictl.agents.registry import Registry
        from aictl.agents.router import when

        assert plan.ai is not None
        now = self.clock()
        if result.error_kind == UNREACHABLE:
            from aictl.agents.health import UNHEALTHY_PAUSE_S, UNHEALTHY_PREFIX

            until = now + UNHEALTHY_PAUSE_S
            why = f"{UNHEALTHY_PREFIX} {result.error or 'the provider cannot be reached'}"
            event, state = "ai_unhealthy", "unhealthy"
        else:
            until = result.retry_at if result.retry_at and result.retry_at > now else now + DEFAULT_PAUSE_S
            why = f"{result.error_kind}: {result.error or 'the provider refused'}"
            event, state = "ai_paused", "rate-limited"
        Registry(self.store, actor=opts.owner).pause(plan.ai.id, until, why)
        self.emit({"type": event, "task_id": report.task.id, "ai": plan.ai.id, "until": until, "reason": why})
        reason = f"{plan.ai.id} is {state} until {when(until, now)} ({why})"
        if not plan.routed:
            self._fail(report, opts, epoch, reason, True)
            return
        report.task = self.svc.release(report.task.id, opts.owner, epoch, reason=reason, ai=opts.ai)
        report.outcome, report.reason = Outcome.RELEASED, reason + "; released for another AI"
        self._phase(report.task.id, "released", reason=report.reason)

    def _publish(self, task_id: int, opts: ExecuteOptions, epoch: int, report: ExecutionReport) -> tuple[bool, Any]:
        """Push the result before completing (remote: configured); a remote failure fails the attempt, transient.
        (ok, what the result says about it)."""
        from aictl.execution.remote import publish
        from aictl.sandbox.remote import RemoteError

        try:
            return True, publish(
                self.store,
                self.settings,
                self.policy,
                self.workspaces,
                task_id,
                ai=opts.ai,
                actor=opts.owner,
                epoch=epoch,
                decisions=report.decisions,
            )
        except RemoteError as e:
            self._fail(report, opts, epoch, f"could not publish the result: {e.message}", True)
            return False, None

    def _await(
        self,
        report: ExecutionReport,
        opts: ExecuteOptions,
        epoch: int,
        pending: dict[str, Any],
        stage: str,
        *,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Park the task for a person: at a tool call (the next attempt is granted it) or with its result."""
        what = f"{pending.get('action')} {pending.get('target')}"
        reason = f"waiting for approval of {what} ({pending.get('reason')})"
        report.task = self.svc.await_approval(
            report.task.id, opts.owner, epoch, reason=reason, stage=stage, pending=pending, result=result
        )
        report.outcome, report.reason, report.pending_approval = Outcome.AWAITING_APPROVAL, reason, pending
        self._phase(report.task.id, Outcome.AWAITING_APPROVAL, reason=reason, stage=stage)

    def _fail(self, report: ExecutionReport, opts: ExecuteOptions, epoch: int, reason: str, transient: bool) -> None:
        report.task = self.svc.fail(report.task.id, opts.owner, epoch, reason=reason, retryable=transient)
        report.outcome = Outcome.RETRYING if report.task.status == "queued" else Outcome.FAILED
        report.reason = reason
        self._phase(report.task.id, report.outcome, reason=reason)

    def _unexpected(self, report: ExecutionReport, opts: ExecuteOptions, err: Exception) -> None:
        """An error of the run itself is a failed, retryable attempt (backoff; failed after max_attempts).

        A store error is an outage, not the task's fault: the lease is given back (no attempt
        counted) and the error raised, so the daemon can reconnect. Evidence stored so far stays.
        """
        from aictl.store.base import is_store_error

        task_id, epoch = report.task.id, report.lease_epoch
        reason = f"executor error: {type(err).__name__}: {getattr(err, 'message', err)}"[:1000]
        if is_store_error(err):
            self._release_quietly(task_id, opts.owner, epoch, reason)
            raise err
        try:
            self.recorder.put(
                report,
                report.task,
                opts,
                epoch,
                traceback.format_exc(),
                kind="log",
                name="executor_error.txt",
                summary={"error": reason},
            )
        except AictlError:
            pass  # the attempt is recorded below either way
        try:
            self._fail(report, opts, epoch, reason, True)
        except LeaseLost as e:
            report.outcome, report.reason = Outcome.LEASE_LOST, e.message
        except Exception:  # noqa: BLE001 - the store went too: the lease expires, which counts the attempt
            raise err from None

    def _release_quietly(self, task_id: int, owner: str, epoch: int, reason: str) -> None:
        try:
            self.svc.release(task_id, owner, epoch, reason=reason)
        except (AictlError, PolicyDenied):
            pass  # the lease is gone already; expiry will recover the task
        except Exception:  # noqa: BLE001 - store down: expiry recovers the task
            pass

    def _phase(self, task_id: int, phase: str, **data: Any) -> None:
        self.emit({"type": "phase", "task_id": task_id, "phase": str(phase), "ts": time.time(), **data})


def workspace_keep_rule(store: Store) -> Callable[[int, int], bool]:
    """Which workspaces `prune` keeps: live leases of that epoch, and the last attempt of failed tasks."""
    with store.read() as tx:
        rows = live_leases_and_failures(tx)
    live = {(r["id"], r["lease_epoch"]) for r in rows}
    return lambda task_id, epoch: (task_id, epoch) in live


__all__ = ["ExecuteOptions", "ExecutionReport", "Executor", "Outcome", "tighten", "workspace_keep_rule"]
