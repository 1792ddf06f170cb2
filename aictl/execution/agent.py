"""What an AI connector is told beyond a command (prompt, system text, tools, session, state dir), and usage.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aictl.tasks.queries import task_row

if TYPE_CHECKING:
    from aictl.agents.connectors import RunContext
    from aictl.config import Settings
    from aictl.domain.models import AIRecord, Task
    from aictl.execution.activity import ActivityWriter
    from aictl.execution.outcome import ExecuteOptions
    from aictl.policy.gate import PolicyGate
    from aictl.store.base import Store


def agent_context(
    ctx: RunContext,
    task: Task,
    ai: AIRecord,
    opts: ExecuteOptions,
    *,
    store: Store,
    settings: Settings,
    policy: PolicyGate | None,
    limits: dict[str, Any],
    resume_session: str | None,
    activity: ActivityWriter | None,
) -> dict[str, Any]:
    """Fill the AI's part of the run context; the execute decision's limits narrow the tools and budget.
    Returns the record of the skills it gets (evidence); the executor writes their files for the agent."""
    from aictl.agents.connectors.mcpconfig import AICTL_SERVER, configured_servers
    from aictl.agents.context import (
        TOOLS,
        allowed_tools,
        build_prompt,
        build_system,
    )
    from aictl.execution import mailbox
    from aictl.execution.skills import run_skills
    from aictl.skills.delivery import mode_for, system_section

    with store.read() as tx:
        row = task_row(tx, task.id)
    ctx.ai = ai
    _register_key(ai)
    ctx.prompt = build_prompt(task, opts.message, resuming=resume_session is not None) + merge_feedback(task)
    waiting = mailbox.pending(store, task.id)
    if waiting:  # messages sent while the task was not running: this attempt is their reader
        ctx.prompt += "\n\n" + mailbox.prompt_section(waiting)
        mailbox.mark_delivered(store, waiting, task.lease_epoch)
    delivered, record = run_skills(task, ai, settings.project_dir, policy, epoch=task.lease_epoch, store=store)
    ctx.skills = [r.skill for r in delivered]
    section = system_section(ctx.skills, mode_for(ai.connector))
    ctx.system = build_system(task, verify=opts.verify or task.verify, skills=[section] if section else [])
    ctx.instructions = ctx.system
    tools = allowed_tools(policy, row, ai, epoch=task.lease_epoch)
    if limits.get("allowed_tools") is not None:
        tools = [t for t in (TOOLS if tools is None else tools) if t in limits["allowed_tools"]]
    ctx.allowed_tools = tools
    ctx.resume_session = resume_session
    ctx.state_dir = settings.project_home / "agents" / ai.id / f"task-{task.id}"
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    ctx.max_turns = ai.config.get("max_turns")
    ctx.budget_usd = limits.get("max_cost_usd")
    ctx.on_event = activity.on_event if activity is not None else None
    ctx.mcp_servers = {AICTL_SERVER: task_server(task, opts.owner, settings), **configured_servers(ai.config)}
    ctx.decide_tool = tool_decider(ctx)
    return record


def tool_decider(ctx: RunContext) -> Callable[[str, str, dict[str, Any]], tuple[bool, str]] | None:
    """The policy's `use_tool` for each MCP tool call of the tool loop, by the run's pinned policy; recorded."""
    from aictl.agents.connectors.mcptools import tool_name

    run_policy = ctx.run_policy
    if run_policy is None:
        return None

    def decide(server: str, tool: str, args: dict[str, Any]) -> tuple[bool, str]:
        from aictl.agents.connectors.tools import ApprovalNeeded

        name = tool_name(server, tool)
        verdict = run_policy.decide("use_tool", tool=name)
        if verdict.effect == "require_approval":
            raise ApprovalNeeded(verdict, "use_tool", name)
        return verdict.allowed, verdict.reason

    return decide


def task_server(task: Task, owner: str, settings: Settings) -> dict[str, Any]:
    """`aictl mcp serve --task`: the run's own MCP server, bound to this task and lease epoch."""
    import sys

    env = {"AICTL_DATABASE_URL": settings.resolved_database_url, "AICTL_ACTOR": owner}
    if settings.project_dir is not None:
        env["AICTL_PROJECT"] = str(settings.project_dir)
    return {
        "command": sys.executable,
        "args": [
            "-m",
            "aictl",
            "mcp",
            "serve",
            "--task",
            str(task.id),
            "--epoch",
            str(task.lease_epoch),
            "--owner",
            owner,
        ],
        "env": env,
    }


def merge_feedback(task: Task) -> str:
    """What the merge queue said when it sent this task back (aictl merge), for the next attempt's prompt."""
    merge = task.result.get("merge") if isinstance(task.result, dict) else None
    if not merge:
        return ""
    text = (
        f"\n\nYour previous result of this task could not be merged: {merge.get('reason', '')}. "
        "The workspace now starts from the updated target branch; redo the change on top of it."
    )
    if merge.get("verify_log_tail"):
        text += "\nThe end of the failed verification log:\n" + merge["verify_log_tail"]
    return text


def usage_record(result: Any, connector: str | None, ai: str | None, model: str | None) -> dict[str, Any]:
    """usage.json: tokens, turns, cost and model of one run, from the connector's usage dict."""
    u = result.usage or {}

    def num(*keys: str) -> int | None:
        for k in keys:
            if isinstance(u.get(k), (int, float)):
                return int(u[k])
        return None

    tokens = {
        "input": num("input_tokens", "prompt_tokens"),
        "output": num("output_tokens", "completion_tokens"),
        "cache_read": num("cache_read_tokens", "cache_read_input_tokens"),
    }
    tokens["total"] = sum(v for v in tokens.values() if v)
    return {
        "ai": ai,
        "connector": connector,
        "model": model,
        "tokens": tokens,
        "estimated": bool(u.get("estimated")),  # counted by aictl (the server reported none), not by the provider
        "turns": num("turns", "num_turns"),
        "cost_usd": result.cost_usd,
        "duration_s": round(result.duration_s, 4),
    }


__all__ = ["agent_context", "usage_record"]


def _register_key(ai: AIRecord) -> None:
    """The redactor learns this AI's key (its connector's default variable too) before the agent starts."""
    from aictl.agents.connectors.spec import spec_for
    from aictl.domain.errors import UsageError
    from aictl.domain.redact import register

    try:
        spec = spec_for(ai.connector)
    except UsageError:  # an unknown connector fails the run elsewhere, with its own message
        return
    register(*spec.secrets(ai))
