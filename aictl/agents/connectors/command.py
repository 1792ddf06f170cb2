"""The `command` connector: a shell command acts as the agent, in the workspace, inside the sandbox.

Used for scripted steps, CI jobs and tests: `aictl task create "format" --command "ruff format ."`.
"""

from __future__ import annotations

from aictl.agents.connectors.base import ConnectorResult, RunContext
from aictl.agents.connectors.spec import ConnectorSpec
from aictl.domain.errors import UsageError


class CommandConnector:
    name = "command"

    def run(self, ctx: RunContext) -> ConnectorResult:
        command = ctx.command or ctx.task.command
        if not command:
            raise UsageError(
                f"task {ctx.task.id} has no command for the command connector",
                hint=f"give one: aictl task execute {ctx.task.id} --command 'make fmt'",
            )
        if ctx.run_policy is not None:  # the task's own command is a run_command like any agent's
            verdict = ctx.run_policy.decide("run_command", command=command)
            if not verdict.allowed:
                pending = None
                if verdict.effect == "require_approval":
                    pending = {
                        "action": "run_command",
                        "target": command,
                        "rule": verdict.rule,
                        "reason": verdict.reason,
                        "decision_id": verdict.decision_id,
                    }
                return ConnectorResult(
                    ok=False,
                    error=verdict.reason,
                    error_kind="approval" if pending else "policy",
                    summary=f"refused: {command}",
                    transcript=f"$ {command}\n[refused] {verdict.reason}\n",
                    pending_approval=pending,
                )
        res = ctx.sandbox.run(
            ["/bin/sh", "-c", command],
            workdir=ctx.workdir,
            spec=ctx.spec,
            on_output=ctx.on_output,
            cancel=ctx.cancel,
            labels=ctx.labels,
        )
        if res.start_error:
            return ConnectorResult(
                ok=False,
                error=f"sandbox did not start: {res.start_error}",
                transient=True,
                duration_s=res.duration_s,
                sandbox=res.settings,
            )
        if res.timed_out:
            error = f"command timed out after {ctx.spec.timeout_s:g}s"
        elif res.cancelled:
            error = "cancelled"
        elif res.exit_code != 0:
            error = f"command exited with {res.exit_code}"
        else:
            error = None
        transcript = f"$ {command}\n{res.stdout}" + (f"\n[stderr]\n{res.stderr}" if res.stderr else "")
        return ConnectorResult(
            ok=error is None,
            exit_code=res.exit_code,
            summary=f"ran: {command}",
            error=error,
            transient=res.timed_out,
            timed_out=res.timed_out,
            cancelled=res.cancelled,
            transcript=transcript,
            stdout=res.stdout,
            stderr=res.stderr,
            duration_s=res.duration_s,
            sandbox=res.settings,
        )


SPEC = ConnectorSpec(name="command", kind="command", factory=CommandConnector, secret_env_keys=frozenset())

__all__ = ["SPEC", "CommandConnector"]
