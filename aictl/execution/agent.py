"""What an AI connector is told beyond a command (prompt, system text, tools, session, state dir), and usage.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aictl.agents.connectors import RunContext
    from aictl.config import Settings
    from aictl.domain.models import AIRecord, Task
    from aictl.execution.activity import ActivityWriter
    from aictl.execution.outcome import ExecuteOptions
    from aictl.policy.gate import PolicyGate
    from aictl.store.base import Store


def agent_context(ctx: RunContext, task: Task, ai: AIRecord, opts: ExecuteOptions, *, store: Store,
                  settings: Settings, policy: PolicyGate | None, limits: dict[str, Any], resume_session: str | None,
                  activity: ActivityWriter | None) -> dict[str, Any]:
    """Fill the AI's part of the run context; the execute decision's limits narrow the tools and budget.
    Returns the record of the skills it gets (evidence), whose files `deliver_skills` writes for the agent."""
    from aictl.agents.context import (
        TOOLS,
        allowed_tools,
        build_prompt,
        build_system,
    )
    from aictl.execution.skills import run_skills
    from aictl.skills.delivery import mode_for, system_section

    with store.read() as tx:
        row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task.id})
    assert row is not None  # the task is claimed by this run: it exists
    ctx.ai = ai
    ctx.prompt = build_prompt(task, opts.message, resuming=resume_session is not None)
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
    ctx.state_dir = Path(settings.home) / "agents" / ai.id / f"task-{task.id}"
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    ctx.max_turns = ai.config.get("max_turns")
    ctx.budget_usd = limits.get("max_cost_usd")
    ctx.on_event = activity.on_event if activity is not None else None
    return record


def usage_record(result: Any, connector: str | None, ai: str | None, model: str | None) -> dict[str, Any]:
    """usage.json: tokens, turns, cost and model of one run, from the connector's usage dict."""
    u = result.usage or {}

    def num(*keys: str) -> int | None:
        for k in keys:
            if isinstance(u.get(k), (int, float)):
                return int(u[k])
        return None

    tokens = {"input": num("input_tokens", "prompt_tokens"), "output": num("output_tokens", "completion_tokens"),
              "cache_read": num("cache_read_tokens", "cache_read_input_tokens")}
    tokens["total"] = sum(v for v in tokens.values() if v)
    return {"ai": ai, "connector": connector, "model": model, "tokens": tokens, "turns": num("turns", "num_turns"),
            "cost_usd": result.cost_usd, "duration_s": round(result.duration_s, 4)}


__all__ = ["agent_context", "usage_record"]
