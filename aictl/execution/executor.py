"""The executor: claim → policy → workspace → connector in a sandbox → evidence → checks → complete/fail.

`Executor.execute` is the spine every agent runs through; the CLI's
`aictl task execute` and the daemon both call it. Progress goes to an
`on_event` callback as small dicts (phase changes and output lines).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from aictl.domain.errors import AictlError, LeaseLost, PolicyDenied, UsageError
from aictl.domain.models import Task

Emit = Callable[[dict[str, Any]], None]


class ExecuteOptions(BaseModel):
    owner: str
    ai: str | None = None  # a registered AI runs it (pinned); otherwise the id the policy judges
    # None: the registered AI's connector; `command` for a task with a command; else the router picks an AI.
    connector: str | None = None
    command: str | None = None  # overrides task.command
    verify: str | None = None  # overrides task.verify
    backend: str | None = None  # local | docker; default from settings (policy may tighten)
    base: str | None = None  # git ref; default settings.workspace_base
    timeout_s: float | None = None
    ttl: float | None = None
    epoch: int | None = None  # adopt an existing claim held by (owner, epoch) instead of claiming
    keep_workspace: bool = False
    resume: bool = False  # continue the agent session of the task's latest run
    # With epoch: the adopted claim was the router's choice (the daemon), so a rate limit hands the
    # task to the next AI at once instead of costing an attempt.
    routed: bool = False
    message: str | None = None  # follow-up instructions (resumes the latest session when there is one)


class ExecutionReport(BaseModel):
    task: Task
    # done | failed | retrying | cancelled | lease_lost | awaiting_approval | released (rate-limited, back in the queue)
    outcome: str
    lease_epoch: int
    ai: str | None = None
    connector: str | None = None
    reason: str | None = None
    changed_paths: list[str] = Field(default_factory=list)
    commit: str | None = None
    branch: str | None = None
    workspace: str | None = None  # kept for inspection (failures), None when removed
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


RATE_LIMITED = ("rate_limit", "overloaded")
DEFAULT_PAUSE_S = 60.0


class _Stop(Exception):
    """End the run early with an outcome (the task has already been moved accordingly)."""

    def __init__(self, outcome: str, reason: str):
        self.outcome, self.reason = outcome, reason


class Executor:
    def __init__(self, store: Any, settings: Any, *, policy: Any = None, on_event: Emit | None = None,
                 open_store: Callable[[], Any] | None = None):
        from aictl.audit.evidence import EvidenceStore
        from aictl.sandbox.workspace import WorkspaceManager
        from aictl.tasks.service import TaskService

        if settings.project_dir is None:
            raise UsageError("executing a task needs a project (a git repository with .ai/)", hint="aictl init")
        self.store, self.settings, self.policy = store, settings, policy
        self.svc = TaskService(store, settings, policy=policy)
        self.evidence = EvidenceStore(store, settings.home, actor=settings.actor)
        self.workspaces = WorkspaceManager(Path(settings.project_dir), Path(settings.home) / "workspaces")
        self.emit: Emit = on_event or (lambda e: None)
        self._open_store = open_store or self._default_open_store

    def _default_open_store(self) -> Any:
        from aictl.store import open_store

        return open_store(self.settings.resolved_database_url, busy_timeout_ms=self.settings.busy_timeout_ms)

    # -- the whole path --------------------------------------------------------

    def execute(self, task_id: int | None, opts: ExecuteOptions) -> ExecutionReport:
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        lease, plan = self._claim_or_adopt(task_id, opts)
        if plan.ai is not None:
            opts = opts.model_copy(update={"ai": plan.ai.id, "connector": plan.connector})
        else:
            opts = opts.model_copy(update={"connector": plan.connector})
        task, epoch = lease.task, lease.lease.lease_epoch
        report = ExecutionReport(task=task, outcome="failed", lease_epoch=epoch, ai=opts.ai if plan.ai else None,
                                 connector=plan.connector)
        self._phase(task.id, "claimed", epoch=epoch, owner=opts.owner,
                    **({"ai": plan.ai.id, "routed": plan.routed} if plan.ai is not None else {}))
        timings["claim"] = time.monotonic() - t0
        keeper = None
        ws = None
        activity = None
        try:
            spec = self._sandbox_spec(opts)
            limits = self._policy_execute(task, opts, epoch, spec, report)
            if limits.get("sandbox"):
                spec = self._tighten(spec, limits["sandbox"])
            self._phase(task.id, "workspace")
            t = time.monotonic()
            ws = self.workspaces.create(task.id, epoch, base=opts.base or self.settings.workspace_base)
            report.branch = ws.branch
            timings["workspace"] = time.monotonic() - t
            task = self.svc.start(task.id, opts.owner, epoch, ai=opts.ai)
            keeper = self._keep_lease(task.id, opts.owner, epoch, opts.ttl)
            self._phase(task.id, "running", backend=spec.backend, connector=opts.connector)
            t = time.monotonic()
            if plan.ai is not None:
                from aictl.execution.activity import ActivityWriter

                activity = ActivityWriter(self._open_store, task.id, opts.owner, epoch, self.emit)
            result = self._run_connector(task, ws.path, spec, opts, keeper.stop, plan=plan, limits=limits,
                                         activity=activity)
            if activity is not None:
                activity.finish()
                activity = None
            timings["run"] = time.monotonic() - t
            if keeper.stop.is_set():
                raise _Stop("cancelled" if keeper.cancelled else "lease_lost", keeper.lost_reason or "lease lost")
            t = time.monotonic()
            changes = self.workspaces.collect(ws, message=f"aictl: task {task.id}: {task.title}\n\n{result.summary}")
            report.changed_paths, report.commit = changes.paths, changes.commit
            self._phase(task.id, "evidence", changed=len(changes.paths))
            self._store_run_evidence(task, opts, epoch, result, changes, spec, report, plan)
            if not result.ok and result.error_kind in RATE_LIMITED and plan.ai is not None:
                keeper.finish()
                keeper = None
                return self._rate_limited(report, opts, epoch, plan, result, ws)
            verify = self._verify(task, ws.path, spec, opts, epoch, keeper.stop, report)
            timings["collect"] = time.monotonic() - t
            if keeper.stop.is_set():
                raise _Stop("cancelled" if keeper.cancelled else "lease_lost", keeper.lost_reason or "lease lost")
            violations = self._checks(task, opts, epoch, changes.paths, result, verify, limits, report)
            keeper.finish()
            keeper = None
            timings["total"] = time.monotonic() - t0
            report.timings = {k: round(v, 4) for k, v in timings.items()}
            if not result.ok:
                return self._fail(report, opts, epoch, result.error or "the agent failed", result.transient, ws)
            if violations:
                return self._fail(report, opts, epoch, "; ".join(violations), False, ws)
            report.task = self.svc.complete(task.id, opts.owner, epoch, ai=opts.ai, result={
                "summary": result.summary, "changed_paths": changes.paths, "commit": changes.commit,
                "branch": ws.branch, "evidence": [e["digest"] for e in report.evidence]})
            report.outcome = "done"
            report.timings["until_complete"] = round(time.monotonic() - t0, 4)
            t = time.monotonic()
            if not opts.keep_workspace:
                self.workspaces.remove(ws)
            else:
                report.workspace = str(ws.path)
            report.timings["cleanup"] = round(time.monotonic() - t, 4)
            self._phase(task.id, "done", elapsed=round(time.monotonic() - t0, 3))
            return report
        except _Stop as stop:
            report.outcome, report.reason = stop.outcome, stop.reason
            report.task = self.svc_read(task.id)
            if ws is not None:
                report.workspace = str(ws.path)
            self._phase(task.id, stop.outcome, reason=stop.reason)
            return report
        except LeaseLost as e:
            report.outcome, report.reason = "lease_lost", e.message
            report.task = self.svc_read(task.id)
            self._phase(task.id, "lease_lost", reason=e.message)
            return report
        except BaseException as e:
            # Anything unexpected (including Ctrl-C): give the task back rather than leave it leased.
            if keeper is not None:
                keeper.finish()
                keeper = None
            self._release_quietly(task.id, opts.owner, epoch, f"executor error: {type(e).__name__}: {e}")
            raise
        finally:
            if activity is not None:
                activity.finish()
            if keeper is not None:
                keeper.finish()
            report.timings = report.timings or {k: round(v, 4) for k, v in timings.items()}

    # -- steps -------------------------------------------------------------------

    def _claim_or_adopt(self, task_id: int | None, opts: ExecuteOptions) -> tuple[Any, Any]:
        from aictl.execution.assign import claim_and_assign

        return claim_and_assign(self, task_id, opts)

    def svc_read(self, task_id: int) -> Task:
        from aictl.tasks.queries import TaskQueries

        return TaskQueries(self.store).get(task_id)

    def _sandbox_spec(self, opts: ExecuteOptions) -> Any:
        from aictl.sandbox.base import SandboxSpec

        s = self.settings
        return SandboxSpec(backend=opts.backend or s.sandbox_backend, image=s.sandbox_image, network=s.sandbox_network,
                           cpus=s.sandbox_cpus, memory_mb=s.sandbox_memory_mb, pids=s.sandbox_pids,
                           timeout_s=opts.timeout_s or s.execution_timeout)

    @staticmethod
    def _tighten(spec: Any, sandbox: dict[str, Any]) -> Any:
        """Policy limits may only tighten: network off, a lower memory, and a backend it names."""
        update: dict[str, Any] = {}
        if sandbox.get("network") is False:
            update["network"] = False
        if sandbox.get("backend"):
            update["backend"] = sandbox["backend"]
        return spec.model_copy(update=update)

    def _policy_execute(self, task: Task, opts: ExecuteOptions, epoch: int, spec: Any,
                        report: ExecutionReport) -> dict[str, Any]:
        """Policy check for `execute`; the sandbox is part of the input, so a rule can forbid `local`."""
        if self.policy is None:
            return {}
        from aictl.policy.records import write_record
        from aictl.tasks.service import task_facts

        with self.store.read() as tx:
            row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task.id})
        sandbox = {"backend": spec.backend, "sandboxed": spec.backend != "local", "network": spec.network,
                   "image": spec.image if spec.backend == "docker" else None}
        record = self.policy.check("execute", ai=opts.ai or opts.owner, actor=opts.owner, task=task_facts(row),
                                   epoch=epoch, context={"connector": opts.connector, "sandbox": sandbox})
        if record.effect == "require_approval":
            approval = self._approval_for(task.id, "execute")
            if approval:
                record.effect = "allow"
                record.reasons.append(f"approved by {approval['by']}" +
                                      (f": {approval['comment']}" if approval.get("comment") else ""))
        report.decisions.append({"action": "execute", "decision_id": record.decision_id, "effect": record.effect})
        if record.effect == "allow":
            with self.store.write() as tx:
                write_record(tx, record)
            self.emit({"type": "decision", "task_id": task.id, "action": "execute", "effect": "allow"})
            return record.limits
        if record.effect == "require_approval":
            report.task = self.svc.await_approval(task.id, opts.owner, epoch, record=record,
                                                  reason="; ".join(record.reasons))
            raise _Stop("awaiting_approval", "; ".join(record.reasons))
        from aictl.policy.gate import denied_error

        err = denied_error(record)
        with self.store.write() as tx:
            write_record(tx, record)
        report.task = self.svc.fail(task.id, opts.owner, epoch, reason=err.message, retryable=False)
        raise _Stop("failed", err.message)

    def _approval_for(self, task_id: int, action: str) -> dict[str, Any] | None:
        with self.store.read() as tx:
            row = tx.one("SELECT MAX(ts) AS ts FROM decisions WHERE task_id = :t AND action = :a"
                         " AND effect = 'require_approval'", {"t": task_id, "a": action})
        return None if row is None or row["ts"] is None else self.svc.approved_since(task_id, row["ts"])

    def _keep_lease(self, task_id: int, owner: str, epoch: int, ttl: float | None) -> Any:
        from aictl.execution.lease import LeaseKeeper
        from aictl.tasks.service import TaskService

        ttl = ttl or self.settings.lease_ttl
        interval = max(0.2, min(self.settings.heartbeat_interval, ttl / 3))
        keeper = LeaseKeeper(lambda: TaskService(self._open_store(), self.settings), task_id, owner, epoch,
                             ttl=ttl, interval=interval)
        keeper.start()
        return keeper

    def _run_connector(self, task: Task, workdir: Path, spec: Any, opts: ExecuteOptions,
                       stop: threading.Event, *, plan: Any = None, limits: dict[str, Any] | None = None,
                       activity: Any = None) -> Any:
        from aictl.agents.connectors import RunContext, get_connector
        from aictl.sandbox import get_sandbox

        connector = get_connector(opts.connector or "command")
        ctx = RunContext(task=task, workdir=workdir, sandbox=get_sandbox(spec.backend), spec=spec,
                         on_output=lambda stream, line: self.emit(
                             {"type": "output", "task_id": task.id, "stream": stream, "line": line}),
                         cancel=stop, command=opts.command, instructions=task.description,
                         labels={"task": str(task.id), "epoch": str(task.lease_epoch)})
        if plan is not None and plan.ai is not None:
            from aictl.execution.assign import agent_context

            agent_context(self, ctx, task, opts, plan, limits or {}, activity)
        return connector.run(ctx)

    def _rate_limited(self, report: ExecutionReport, opts: ExecuteOptions, epoch: int, plan: Any, result: Any,
                      ws: Any) -> ExecutionReport:
        """A usage or rate limit: pause the AI; a routed task goes straight back for another AI, a pinned one retries."""
        from aictl.agents.registry import Registry
        from aictl.agents.router import when

        now = time.time()
        until = result.retry_at if result.retry_at and result.retry_at > now else now + DEFAULT_PAUSE_S
        why = f"{result.error_kind}: {result.error or 'the provider refused'}"
        Registry(self.store, actor=opts.owner).pause(plan.ai.id, until, why)
        self.emit({"type": "ai_paused", "task_id": report.task.id, "ai": plan.ai.id, "until": until, "reason": why})
        reason = f"{plan.ai.id} is rate-limited until {when(until, now)} ({why})"
        if not plan.routed:
            return self._fail(report, opts, epoch, reason, True, ws)
        report.task = self.svc.release(report.task.id, opts.owner, epoch, reason=reason, ai=opts.ai)
        report.outcome, report.reason = "released", reason + "; released for another AI"
        if opts.keep_workspace:
            report.workspace = str(ws.path)
        else:
            self.workspaces.remove(ws)
        self._phase(report.task.id, "released", reason=report.reason)
        return report

    def _put(self, report: ExecutionReport, task: Task, opts: ExecuteOptions, epoch: int, content: Any, *,
             kind: str, name: str, media_type: str = "text/plain", summary: dict | None = None,
             tx: Any = None) -> Any:
        ref = self.evidence.put(content, kind=kind, name=name, media_type=media_type, task_id=task.id,
                                owner=opts.owner, lease_epoch=epoch, summary=summary, tx=tx)
        report.evidence.append({"kind": kind, "name": name, "digest": ref.digest, "size": ref.size,
                                **({"summary": ref.summary} if ref.summary else {})})
        return ref

    def _store_run_evidence(self, task: Task, opts: ExecuteOptions, epoch: int, result: Any, changes: Any,
                            spec: Any, report: ExecutionReport, plan: Any = None) -> None:
        with self.store.write() as tx:  # one transaction for all of the run's evidence
            self._run_evidence(tx, task, opts, epoch, result, changes, spec, report, plan)

    def _run_evidence(self, tx: Any, task: Task, opts: ExecuteOptions, epoch: int, result: Any, changes: Any,
                      spec: Any, report: ExecutionReport, plan: Any = None) -> None:
        import functools

        put = functools.partial(self._put, tx=tx)
        if changes.diff:
            put(report, task, opts, epoch, changes.diff, kind="diff", name="changes.diff",
                      media_type="text/x-diff", summary=changes.stats)
        put(report, task, opts, epoch, json.dumps({"paths": changes.paths, "commit": changes.commit}),
                  kind="changes", name="changed_paths.json", media_type="application/json")
        if result.stdout:
            put(report, task, opts, epoch, result.stdout, kind="log", name="stdout.txt")
        if result.stderr:
            put(report, task, opts, epoch, result.stderr, kind="log", name="stderr.txt")
        if result.transcript:
            put(report, task, opts, epoch, result.transcript, kind="transcript", name="transcript.txt")
        ai = plan.ai if plan is not None else None
        model = result.model or (ai.model if ai is not None else None)
        run = {"connector": opts.connector, "ok": result.ok, "exit_code": result.exit_code, "error": result.error,
               "timed_out": result.timed_out, "duration_s": round(result.duration_s, 4), "usage": result.usage,
               "cost_usd": result.cost_usd, "sandbox": result.sandbox or spec.model_dump(),
               "sandboxed": spec.backend != "local", "ai": ai.id if ai is not None else None, "model": model,
               "session_id": result.session_id, "error_kind": result.error_kind, "retry_at": result.retry_at}
        if ai is not None or result.usage or result.cost_usd is not None:
            from aictl.execution.assign import usage_record

            usage = usage_record(result, opts.connector, ai.id if ai is not None else None, model)
            put(report, task, opts, epoch, json.dumps(usage, sort_keys=True), kind="usage", name="usage.json",
                media_type="application/json",
                summary={k: usage[k] for k in ("model", "turns", "cost_usd")} | {"tokens": usage["tokens"]["total"]})
        put(report, task, opts, epoch, json.dumps(run, sort_keys=True), kind="run", name="run.json",
                  media_type="application/json", summary={"ok": result.ok, "exit_code": result.exit_code,
                                                          "backend": spec.backend, "sandboxed": spec.backend != "local"})

    def _verify(self, task: Task, workdir: Path, spec: Any, opts: ExecuteOptions, epoch: int,
                stop: threading.Event, report: ExecutionReport) -> dict[str, Any] | None:
        """Run the verification command (after the diff is taken, so its artefacts stay out of it)."""
        from aictl.audit.evidence import parse_junit
        from aictl.sandbox import get_sandbox

        command = opts.verify or task.verify
        if not command:
            return None
        self._phase(task.id, "verify", command=command)
        reports_rel = ".aictl-reports"
        reports = workdir / reports_rel
        reports.mkdir(exist_ok=True)
        mount = spec.mount if spec.backend == "docker" else str(workdir)
        vspec = spec.model_copy(update={"env": {**spec.env, "AICTL_REPORT_DIR": f"{mount}/{reports_rel}"}})
        res = get_sandbox(spec.backend).run(["/bin/sh", "-c", command], workdir=workdir, spec=vspec, cancel=stop,
                                            labels={"task": str(task.id), "epoch": str(epoch), "step": "verify"},
                                            on_output=lambda s, line: self.emit(
                                                {"type": "output", "task_id": task.id, "stream": f"verify:{s}",
                                                 "line": line}))
        log = f"$ {command}\n{res.stdout}" + (f"\n[stderr]\n{res.stderr}" if res.stderr else "")
        junit: dict[str, Any] | None = None
        for xml in sorted(reports.glob("*.xml")):
            data = xml.read_bytes()
            ref = self._put(report, task, opts, epoch, data, kind="test_report", name=xml.name,
                            media_type="application/xml", summary=parse_junit(data))
            junit = ref.summary
        passed = res.exit_code == 0 and not res.timed_out and (junit is None or bool(junit.get("ok")))
        summary = {"command": command, "exit_code": res.exit_code, "timed_out": res.timed_out, "passed": passed,
                   **({"tests": junit} if junit else {})}
        self._put(report, task, opts, epoch, log, kind="verify_log", name="verify.txt", summary=summary)
        return summary

    def _checks(self, task: Task, opts: ExecuteOptions, epoch: int, paths: list[str], result: Any,
                verify: dict[str, Any] | None, limits: dict[str, Any], report: ExecutionReport) -> list[str]:
        """Each check is a decision record; returns the violations (empty when the result may land)."""
        from aictl.execution.checks import builtin_record, check_locks, protected_paths
        from aictl.policy.records import write_record

        sources = self.policy.sources if self.policy is not None else []
        records = []
        violations: list[str] = []

        def builtin(action: str, ok: bool, rule: str, reasons: list[str], **kw: Any) -> None:
            records.append(builtin_record(action, ok=ok, rule=rule, reasons=reasons, task=task, owner=opts.owner,
                                          epoch=epoch, sources=sources, **kw))
            if not ok:
                violations.extend(reasons)

        ok, reasons = check_locks(task, paths)
        builtin("write_path", ok, "aictl:locks", reasons, paths=paths)
        if self.policy is not None and paths:
            from aictl.tasks.service import task_facts

            with self.store.read() as tx:
                row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task.id})
            record, refused = protected_paths(self.policy, task_facts(row), opts.owner, opts.ai, epoch, paths)
            records.append(record)
            if refused:
                violations.append(f"policy refuses changes to {', '.join(refused[:10])}: "
                                  f"{'; '.join(record.reasons[:-1]) or record.effect}")
        needs_tests = "test_report" in (limits.get("require_evidence") or [])
        if verify is not None or needs_tests:
            passed = bool(verify and verify["passed"] and (not needs_tests or verify.get("tests")))
            why = ("verification passed" if passed else
                   "policy requires a test report, and the verification produced none" if verify and verify["passed"]
                   else "verification required by policy, but the task has no verify command" if verify is None
                   else f"verification failed: `{verify['command']}` exited {verify['exit_code']}"
                   + (f", {verify['tests'].get('failures', 0)} test failure(s)" if verify.get("tests") else ""))
            builtin("complete", passed, "aictl:verify", [why], extra={"verification": verify})
        if limits.get("max_runtime_s") is not None:
            ok = result.duration_s <= limits["max_runtime_s"]
            builtin("complete", ok, "aictl:runtime",
                    [f"ran {result.duration_s:.1f}s, limit {limits['max_runtime_s']:g}s"])
        if limits.get("max_cost_usd") is not None and result.cost_usd is not None:
            ok = result.cost_usd <= limits["max_cost_usd"]
            builtin("complete", ok, "aictl:budget", [f"cost ${result.cost_usd:.4f}, limit ${limits['max_cost_usd']:g}"])
        with self.store.write() as tx:
            for r in records:
                write_record(tx, r)
        report.decisions += [{"action": r.action, "decision_id": r.decision_id, "effect": r.effect,
                              "rules": r.matched_rules} for r in records]
        return violations

    def _fail(self, report: ExecutionReport, opts: ExecuteOptions, epoch: int, reason: str, transient: bool,
              ws: Any) -> ExecutionReport:
        report.task = self.svc.fail(report.task.id, opts.owner, epoch, reason=reason, retryable=transient)
        report.outcome = "retrying" if report.task.status == "queued" else "failed"
        report.reason = reason
        report.workspace = str(ws.path)  # kept for inspection: aictl task workspace ID
        self._phase(report.task.id, report.outcome, reason=reason)
        return report

    def _release_quietly(self, task_id: int, owner: str, epoch: int, reason: str) -> None:
        try:
            self.svc.release(task_id, owner, epoch, reason=reason)
        except (AictlError, PolicyDenied):
            pass  # the lease is gone already; expiry will recover the task

    def _phase(self, task_id: int, phase: str, **data: Any) -> None:
        self.emit({"type": "phase", "task_id": task_id, "phase": phase, "ts": time.time(), **data})


def workspace_keep_rule(store: Any) -> Callable[[int, int], bool]:
    """Which workspaces `prune` keeps: live leases of that epoch, and the last attempt of failed tasks."""
    with store.read() as tx:
        rows = tx.all("SELECT id, status, lease_epoch FROM tasks WHERE status IN ('claimed', 'running', 'failed')")
    live = {(r["id"], r["lease_epoch"]) for r in rows}
    return lambda task_id, epoch: (task_id, epoch) in live


__all__ = ["ExecuteOptions", "ExecutionReport", "Executor", "workspace_keep_rule"]
