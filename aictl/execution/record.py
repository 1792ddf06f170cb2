"""What a run leaves behind: its evidence (diff, logs, transcript, usage, run.json), the verification, the checks.

`Recorder` writes them for the executor; each check is a decision record, and the
violations it returns decide whether the result may land.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl.sandbox.safeio import read_dir_regular
from aictl.tasks.queries import task_row

REPORT_LIMIT = 16 * 1024 * 1024  # bytes of one test report read into evidence
READ_DEADLINE_S = 30.0  # for reading all of a run's reports; regular files under the limit take far less

if TYPE_CHECKING:
    from aictl.audit.evidence import EvidenceRef, EvidenceStore
    from aictl.domain.models import AIRecord, Task
    from aictl.execution.outcome import ExecuteOptions, ExecutionReport
    from aictl.policy.gate import PolicyGate
    from aictl.policy.runtime import RunPolicy
    from aictl.sandbox.base import SandboxSpec
    from aictl.store.base import Store, Tx


class Recorder:
    def __init__(
        self,
        store: Store,
        evidence: EvidenceStore,
        *,
        policy: PolicyGate | None,
        emit: Callable[[dict[str, Any]], None],
    ):
        self.store, self.evidence, self.policy, self.emit = store, evidence, policy, emit

    def put(
        self,
        report: ExecutionReport,
        task: Task,
        opts: ExecuteOptions,
        epoch: int,
        content: Any,
        *,
        kind: str,
        name: str,
        media_type: str = "text/plain",
        summary: dict | None = None,
        tx: Tx | None = None,
    ) -> EvidenceRef:
        ref = self.evidence.put(
            content,
            kind=kind,
            name=name,
            media_type=media_type,
            task_id=task.id,
            owner=opts.owner,
            lease_epoch=epoch,
            summary=summary,
            tx=tx,
        )
        report.evidence.append(
            {
                "kind": kind,
                "name": name,
                "digest": ref.digest,
                "size": ref.size,
                **({"summary": ref.summary} if ref.summary else {}),
            }
        )
        return ref

    def run(
        self,
        task: Task,
        opts: ExecuteOptions,
        epoch: int,
        result: Any,
        changes: Any,
        spec: SandboxSpec,
        report: ExecutionReport,
        ai: AIRecord | None,
    ) -> None:
        """The run's evidence, in one transaction."""
        from aictl.execution.agent import usage_record

        with self.store.write() as tx:

            def put(content: Any, **kw: Any) -> None:
                self.put(report, task, opts, epoch, content, tx=tx, **kw)

            if changes.diff:
                put(changes.diff, kind="diff", name="changes.diff", media_type="text/x-diff", summary=changes.stats)
            refused = getattr(changes, "refused", [])
            put(
                json.dumps(
                    {
                        "paths": changes.paths,
                        "commit": changes.commit,
                        **({"refused_files": refused} if refused else {}),
                    }
                ),
                kind="changes",
                name="changed_paths.json",
                media_type="application/json",
                summary={"refused_files": refused} if refused else None,
            )
            if result.stdout:
                put(result.stdout, kind="log", name="stdout.txt")
            if result.stderr:
                put(result.stderr, kind="log", name="stderr.txt")
            if result.transcript:
                put(result.transcript, kind="transcript", name="transcript.txt")
            model = result.model or (ai.model if ai is not None else None)
            run = {
                "connector": opts.connector,
                "ok": result.ok,
                "exit_code": result.exit_code,
                "error": result.error,
                "timed_out": result.timed_out,
                "duration_s": round(result.duration_s, 4),
                "usage": result.usage,
                "cost_usd": result.cost_usd,
                "sandbox": result.sandbox or spec.model_dump(),
                "sandboxed": spec.backend != "local",
                "ai": ai.id if ai is not None else None,
                "model": model,
                "session_id": result.session_id,
                "error_kind": result.error_kind,
                "retry_at": result.retry_at,
                "skills": [f"{s['name']}@{s['version']}" for s in (report.skills or {}).get("skills", [])],
            }
            if report.skills and (report.skills["skills"] or report.skills["denied"]):
                put(
                    json.dumps(report.skills, sort_keys=True),
                    kind="skills",
                    name="skills.json",
                    media_type="application/json",
                    summary={"skills": run["skills"]},
                )
            if ai is not None or result.usage or result.cost_usd is not None:
                usage = usage_record(result, opts.connector, ai.id if ai is not None else None, model)
                put(
                    json.dumps(usage, sort_keys=True),
                    kind="usage",
                    name="usage.json",
                    media_type="application/json",
                    summary={k: usage[k] for k in ("model", "turns", "cost_usd")}
                    | {"tokens": usage["tokens"]["total"]},
                )
            put(
                json.dumps(run, sort_keys=True),
                kind="run",
                name="run.json",
                media_type="application/json",
                summary={
                    "ok": result.ok,
                    "exit_code": result.exit_code,
                    "backend": spec.backend,
                    "sandboxed": spec.backend != "local",
                },
            )

    def verify(
        self,
        task: Task,
        workdir: Path,
        spec: SandboxSpec,
        opts: ExecuteOptions,
        epoch: int,
        stop: threading.Event,
        report: ExecutionReport,
    ) -> dict[str, Any] | None:
        """Run the verification command (after the diff is taken, so its artefacts stay out of it)."""
        from aictl.audit.evidence import parse_junit
        from aictl.sandbox import get_sandbox

        command = opts.verify or task.verify
        if not command:
            return None
        self.emit({"type": "phase", "task_id": task.id, "phase": "verify", "ts": time.time(), "command": command})
        reports_rel = ".aictl-reports"
        try:
            (workdir / reports_rel).mkdir(exist_ok=True)
        except OSError:
            pass  # a file or dangling link the agent left there: refused below, when the reports are read
        mount = spec.mount if spec.backend == "docker" else str(workdir)
        vspec = spec.model_copy(update={"env": {**spec.env, "AICTL_REPORT_DIR": f"{mount}/{reports_rel}"}})
        res = get_sandbox(spec.backend).run(
            ["/bin/sh", "-c", command],
            workdir=workdir,
            spec=vspec,
            cancel=stop,
            labels={"task": str(task.id), "epoch": str(epoch), "step": "verify"},
            on_output=lambda s, line: self.emit(
                {"type": "output", "task_id": task.id, "stream": f"verify:{s}", "line": line}
            ),
        )
        log = f"$ {command}\n{res.stdout}" + (f"\n[stderr]\n{res.stderr}" if res.stderr else "")
        junit: dict[str, Any] | None = None
        # Only regular files inside the worktree, bounded: a symlink to /dev/zero or a FIFO is refused, not read.
        found, refused = read_dir_regular(
            workdir, reports_rel, "*.xml", limit=REPORT_LIMIT, deadline=time.monotonic() + READ_DEADLINE_S
        )
        for name, data in found:
            ref = self.put(
                report,
                task,
                opts,
                epoch,
                data,
                kind="test_report",
                name=name,
                media_type="application/xml",
                summary=parse_junit(data),
            )
            junit = ref.summary
        if refused:
            log += "\n[aictl: refused to read]\n" + "".join(f"{p}: {why}\n" for p, why in refused)
        passed = res.exit_code == 0 and not res.timed_out and (junit is None or bool(junit.get("ok")))
        summary = {
            "command": command,
            "exit_code": res.exit_code,
            "timed_out": res.timed_out,
            "passed": passed,
            **({"tests": junit} if junit else {}),
            **({"refused_files": [{"path": p, "reason": why} for p, why in refused]} if refused else {}),
        }
        self.put(report, task, opts, epoch, log, kind="verify_log", name="verify.txt", summary=summary)
        return summary

    def checks(
        self,
        task: Task,
        opts: ExecuteOptions,
        epoch: int,
        paths: list[str],
        result: Any,
        verify: dict[str, Any] | None,
        limits: dict[str, Any],
        report: ExecutionReport,
        run_policy: RunPolicy | None = None,
    ) -> list[str]:
        """Each check is a decision record; returns the violations (empty when the result may land).

        A protected path that only needs approval is no violation: it goes to `report.pending_approval`."""
        from aictl.execution.checks import builtin_record, check_locks, protected_paths
        from aictl.policy.records import write_record
        from aictl.policy.runtime import GRANTED

        sources = self.policy.sources if self.policy is not None else []
        records = []
        violations: list[str] = []

        def builtin(action: str, ok: bool, rule: str, reasons: list[str], **kw: Any) -> None:
            records.append(
                builtin_record(
                    action,
                    ok=ok,
                    rule=rule,
                    reasons=reasons,
                    task=task,
                    owner=opts.owner,
                    epoch=epoch,
                    sources=sources,
                    **kw,
                )
            )
            if not ok:
                violations.extend(reasons)

        ok, reasons = check_locks(task, paths)
        builtin("write_path", ok, "aictl:locks", reasons, paths=paths)
        if self.policy is not None and paths:
            from aictl.tasks.service import task_facts

            with self.store.read() as tx:
                row = task_row(tx, task.id)
            record, refused = protected_paths(self.policy, task_facts(row), opts.owner, opts.ai, epoch, paths)
            records.append(record)
            if (
                refused
                and record.effect == "require_approval"
                and run_policy is not None
                and all(run_policy.granted("write_path", path=p) for p in refused)
            ):  # the very writes a person approved at the tool call: not asked twice
                record.effect = "allow"
                record.reasons.append(GRANTED)
                refused = []
            if refused and record.effect == "require_approval":  # nothing denied: a person decides, the task waits
                report.pending_approval = {
                    "action": "write_path",
                    "target": ", ".join(refused[:10]),
                    "rule": next(iter(record.matched_rules), None),
                    "reason": f"policy: changes to {', '.join(refused[:10])} need a person's approval: "
                    f"{'; '.join(record.reasons[:-1]) or record.effect}",
                    "decision_id": record.decision_id,
                }
            elif refused:
                violations.append(
                    f"policy refuses changes to {', '.join(refused[:10])}: "
                    f"{'; '.join(record.reasons[:-1]) or record.effect}"
                )
        needs_tests = "test_report" in (limits.get("require_evidence") or [])
        if verify is not None or needs_tests:
            passed = bool(verify and verify["passed"] and (not needs_tests or verify.get("tests")))
            why = (
                "verification passed"
                if passed
                else "policy requires a test report, and the verification produced none"
                if verify and verify["passed"]
                else "verification required by policy, but the task has no verify command"
                if verify is None
                else f"verification failed: `{verify['command']}` exited {verify['exit_code']}"
                + (f", {verify['tests'].get('failures', 0)} test failure(s)" if verify.get("tests") else "")
            )
            builtin("complete", passed, "aictl:verify", [why], extra={"verification": verify})
        if limits.get("max_runtime_s") is not None:
            ok = result.duration_s <= limits["max_runtime_s"]
            builtin(
                "complete", ok, "aictl:runtime", [f"ran {result.duration_s:.1f}s, limit {limits['max_runtime_s']:g}s"]
            )
        if limits.get("max_cost_usd") is not None and result.cost_usd is not None:
            ok = result.cost_usd <= limits["max_cost_usd"]
            builtin("complete", ok, "aictl:budget", [f"cost ${result.cost_usd:.4f}, limit ${limits['max_cost_usd']:g}"])
        elif limits.get("max_cost_usd") is not None and report.ai is not None:
            # An AI run whose cost nobody knows (no prices for its model) cannot be shown to be within the budget.
            limit = limits["max_cost_usd"]
            why = f"cost unknown (no prices for AI {report.ai}'s model): cannot prove it within ${limit:g}"
            builtin("complete", False, "aictl:budget", [why + "; set its prices (0 for a local model)"])
        with self.store.write() as tx:
            for r in records:
                write_record(tx, r)
        report.decisions += [
            {"action": r.action, "decision_id": r.decision_id, "effect": r.effect, "rules": r.matched_rules}
            for r in records
        ]
        return violations


__all__ = ["Recorder"]
