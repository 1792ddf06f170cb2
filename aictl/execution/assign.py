"""Who runs a task: claim it for a pinned AI, a connector, or the router's pick; and what that AI is told.

Used by the executor (`aictl task execute`): without --ai or --connector a task with a
`command` runs it, and any other task is claimed for the AI the router ranks first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aictl.domain.errors import AictlError, UsageError


@dataclass
class Plan:
    """Who runs the task: a connector, and the registered AI behind it (None for plain commands)."""

    connector: str
    ai: Any = None  # AIRecord
    routed: bool = False  # chosen by the router, not pinned with --ai: a rate limit hands the task to the next AI
    resume_session: str | None = None


def claim_and_assign(ex: Any, task_id: int | None, opts: Any) -> tuple[Any, Plan]:
    """Claim (or adopt) the task, and decide who runs it: a pinned AI, a connector, or the router's pick."""
    from aictl.agents.registry import Registry
    from aictl.domain.errors import NotFound
    from aictl.tasks.service import ClaimResult

    registry = Registry(ex.store, actor=ex.settings.actor)
    pinned = registry.find(opts.ai) if opts.ai else None
    if pinned is not None and opts.connector not in (None, pinned.connector):
        raise UsageError(f"AI {pinned.id} runs on connector {pinned.connector}, not {opts.connector}",
                         hint="leave out --connector, or register another AI for that connector")
    session = None
    if opts.resume or opts.message:
        previous = previous_session(ex, task_id, opts)
        if previous is not None:
            session = previous["session_id"]
            if pinned is None and opts.connector is None and previous.get("ai"):
                pinned = registry.find(previous["ai"])  # a session lives in one agent: resume it there
    if opts.epoch is not None:
        if task_id is None:
            raise UsageError("adopting a claim (--epoch) needs the task id")
        lease = ex.svc.heartbeat(task_id, opts.owner, opts.epoch, ttl=opts.ttl)
        task = ex.svc_read(task_id)
        ai = pinned or (registry.find(task.ai) if task.ai and opts.connector is None else None)
        connector = opts.connector or (ai.connector if ai else "command")
        routed = bool(opts.routed and ai is not None)
        return ClaimResult(lease=lease, task=task), Plan(connector, ai, routed=routed, resume_session=session)
    if pinned is not None:
        return _claim_for(ex, pinned, task_id, opts), Plan(pinned.connector, pinned, resume_session=session)
    if opts.connector is not None or (opts.ai and task_id is None):
        return _claim_plain(ex, task_id, opts), Plan(opts.connector or "command", resume_session=session)
    from aictl.agents.router import Router

    router = Router(ex.store, ex.settings, policy=ex.policy)
    if task_id is not None:
        task = ex.svc_read(task_id)
        if task.command:
            return _claim_plain(ex, task_id, opts), Plan("command")
        if opts.ai:
            raise NotFound(f"AI {opts.ai!r} is not registered, and task {task_id} has no command to run",
                           hint=f"register it: aictl ai register {opts.ai} --connector claude-code")
        claimed, ai = router.claim_task(opts.owner, task_id, ttl=opts.ttl)
        return claimed, Plan(ai.connector, ai, routed=True, resume_session=session)
    got = router.claim_next(opts.owner, ttl=opts.ttl, commands=True)
    if got is None:
        raise NotFound("nothing to execute: no task is ready, or no AI can take the ready ones",
                       hint="see why with: aictl task ready")
    claimed, ai = got
    if ai is None:
        return claimed, Plan("command")
    return claimed, Plan(ai.connector, ai, routed=True)

def _claim_plain(ex: Any, task_id: int | None, opts: Any) -> Any:
    from aictl.domain.errors import NotFound

    claimed = ex.svc.claim(opts.owner, task_id=task_id, ttl=opts.ttl, ai=opts.ai)
    if claimed is None:
        raise NotFound("nothing to execute: no task is ready", hint="see why with: aictl task ready")
    return claimed

def _claim_for(ex: Any, ai: Any, task_id: int | None, opts: Any) -> Any:
    """Claim for a pinned AI: refused with the router's reasons if it cannot take the task (busy aside)."""
    from aictl.agents.router import Router
    from aictl.domain.errors import Conflict, NotFound

    if task_id is not None:
        route = Router(ex.store, ex.settings, policy=ex.policy).explain(task_id, ai_ids=[ai.id])
        # busy is decided by the claim itself (ai_limit), under the lock that makes it exact
        blocking = [r for r in route.candidates[0].reasons if not r.startswith("busy:")]
        if blocking:
            raise Conflict(f"AI {ai.id} cannot take task {task_id}: {'; '.join(blocking)}",
                           hint=f"see every AI's reasons: aictl route {task_id}",
                           details={"reasons": blocking})
    claimed = ex.svc.claim(opts.owner, task_id=task_id, ttl=opts.ttl, ai=ai.id, ai_labels=ai.labels,
                             capabilities=ai.capabilities, ai_limit=ai.max_concurrency)
    if claimed is None:
        raise NotFound(f"nothing to execute for AI {ai.id}: no ready task it can take, or it is at its "
                       f"concurrency limit ({ai.max_concurrency})", hint="see why with: aictl task ready")
    return claimed

def previous_session(ex: Any, task_id: int | None, opts: Any) -> dict[str, Any] | None:
    """The latest run.json of the task that has an agent session (for --resume / --message)."""
    if task_id is None:
        raise UsageError("--resume and --message need the task id", hint="aictl task execute 7 --resume")
    with ex.store.read() as tx:
        rows = tx.all("SELECT digest FROM evidence WHERE task_id = :t AND kind = 'run' ORDER BY id DESC",
                      {"t": task_id})
    for row in rows:
        try:
            run = json.loads(ex.evidence.get(row["digest"]))
        except (AictlError, ValueError):
            continue
        if run.get("session_id"):
            return run
    if opts.resume:
        raise UsageError(f"task {task_id} has no earlier agent session to resume",
                         hint=f"run it without --resume: aictl task execute {task_id}")
    return None


def agent_context(ex: Any, ctx: Any, task: Any, opts: Any, plan: Plan, limits: dict[str, Any],
                  activity: Any) -> None:
    """What an AI connector needs beyond a command: prompt, system text, tools, session and state dir."""
    from aictl.agents.context import TOOLS, allowed_tools, build_prompt, build_system, skills_for

    ai = plan.ai
    with ex.store.read() as tx:
        row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task.id})
    ctx.ai = ai
    ctx.prompt = build_prompt(task, opts.message, resuming=plan.resume_session is not None)
    ctx.system = build_system(task, verify=opts.verify or task.verify,
                              skills=skills_for(task, ex.settings.project_dir))
    ctx.instructions = ctx.system
    tools = allowed_tools(ex.policy, row, ai, epoch=task.lease_epoch)
    if limits.get("allowed_tools") is not None:  # the execute decision's limits narrow it further
        tools = [t for t in (TOOLS if tools is None else tools) if t in limits["allowed_tools"]]
    ctx.allowed_tools = tools
    ctx.resume_session = plan.resume_session
    ctx.state_dir = Path(ex.settings.home) / "agents" / ai.id / f"task-{task.id}"
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    ctx.max_turns = ai.config.get("max_turns")
    ctx.budget_usd = limits.get("max_cost_usd")
    ctx.on_event = activity.on_event if activity is not None else None


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


__all__ = ["Plan", "agent_context", "claim_and_assign", "previous_session", "usage_record"]
