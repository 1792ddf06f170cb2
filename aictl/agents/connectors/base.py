"""The connector interface: run an agent on a task in a workspace, inside a sandbox; the normalized
event stream every AI connector emits, and its one transcript renderer (`render_event`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from aictl.domain.models import AIRecord, Task
    from aictl.policy.runtime import RunPolicy
    from aictl.sandbox.base import Sandbox, SandboxSpec


class ConnectorResult(BaseModel):
    ok: bool
    exit_code: int | None = None
    summary: str = ""
    error: str | None = None
    transient: bool = False  # worth retrying (sandbox start error, timeout, rate limit)
    timed_out: bool = False
    cancelled: bool = False
    transcript: str = ""  # what the agent said and did, for evidence (redacted on storage)
    stdout: str = ""
    stderr: str = ""
    usage: dict[str, Any] = Field(default_factory=dict)  # tokens, turns, …
    cost_usd: float | None = None
    duration_s: float = 0.0
    sandbox: dict[str, Any] = Field(default_factory=dict)  # the isolation settings used
    # Why it failed, for the router and the retry rule: rate_limit | overloaded | auth | timeout | unreachable |
    # truncated (the model's token limit cut its answer off) | other.
    error_kind: str | None = None
    retry_at: float | None = None  # unix time a rate/usage limit resets, when the provider said
    session_id: str | None = None  # the agent's own session, for --resume style follow-ups
    model: str | None = None  # the model that actually answered
    events: list[dict[str, Any]] = Field(default_factory=list)  # the normalized event stream (see AgentEvent)
    # A tool call the policy wants a person to approve: the run ended there, the task waits for it.
    # {action, target, rule, reason, decision_id} (tools.ApprovalNeeded.pending)
    pending_approval: dict[str, Any] | None = None


@dataclass
class RunContext:
    """Everything a connector needs for one run."""

    task: Task
    workdir: Path
    sandbox: Sandbox
    spec: SandboxSpec  # the sandbox's settings (the connector's own facts are its ConnectorSpec)
    on_output: Callable[[str, str], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    instructions: str = ""  # task context and skills, for agents that take a prompt
    command: str | None = None  # for the command connector
    labels: dict[str, str] = field(default_factory=dict)  # tag sandbox resources (task, epoch)
    # For AI connectors (unused by `command`):
    ai: AIRecord | None = None  # model, config (base_url, binary, args, api_key_env, prices…)
    prompt: str = ""  # the task, written as the user's request
    system: str = ""  # task context and skills: system prompt (SDKs) or appended system prompt (CLIs)
    allowed_tools: list[str] | None = None  # aictl tool names the policy allows: read, write, list, run; None = all
    resume_session: str | None = None  # continue this agent session (follow-up instructions on the same task)
    state_dir: Path | None = (
        None  # private, persistent per (ai, task) dir for agent config/sessions (HOME, CODEX_HOME…)
    )
    max_turns: int | None = None
    budget_usd: float | None = None
    on_event: Callable[[dict[str, Any]], None] | None = None  # normalized AgentEvent dicts, as they happen
    skills: list[Any] = field(default_factory=list)  # aictl.skills.Skill delivered to this run (load_skill reads them)
    # MCP servers for the agent, name -> entry (connectors/mcpconfig.py): "aictl" is the run's task server.
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The policy's `use_tool` for one MCP tool call, recorded: (server, tool, args) -> (allowed, why). None: allow.
    decide_tool: Callable[[str, str, dict[str, Any]], tuple[bool, str]] | None = None
    # The policy pinned when the run started: every agent action is decided (and recorded) by it.
    run_policy: RunPolicy | None = None


# The normalized event stream every AI connector emits (ctx.on_event and ConnectorResult.events):
#   {"type": "init", "session_id", "model", "tools"}
#   {"type": "message", "role": "assistant", "text", "partial"?}   partial: a stopped stream's text, cut off
#   {"type": "tool_call", "id", "name", "input"}          name in aictl terms where it maps (read/write/list/run)
#   {"type": "tool_result", "id", "ok", "output"}        output truncated to a few KB
#   {"type": "usage", "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd"}
#   {"type": "error", "kind", "message", "retry_at"}
#   {"type": "result", "ok", "turns", "summary"}
AGENT_EVENT_TYPES = ("init", "message", "tool_call", "tool_result", "usage", "error", "result")


def one_line(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def render_event(event: dict[str, Any]) -> str:
    """One transcript entry per event, for people: the same for the agent CLIs and aictl's tool loop."""
    t = event.get("type")
    if t == "init":
        return f"[init] session {event.get('session_id')} model {event.get('model') or '?'}"
    if t == "message":
        cut = " (cut off)" if event.get("partial") else ""
        return f"{event.get('role', 'assistant')}{cut}: {event.get('text', '')}"
    if t == "tool_call":
        raw = f" ({event['raw_name']})" if event.get("raw_name") and event["raw_name"] != event.get("name") else ""
        return f"→ {event.get('name')}{raw} {one_line(event.get('input'))}"
    if t == "tool_result":
        # A tool's output is kept whole (events carry it already clipped), indented under its verdict.
        output = str(event.get("output") or "").rstrip().replace("\n", "\n  ")
        return f"← {'ok' if event.get('ok') else 'error'}: {output}"
    if t == "usage":
        cost = event.get("cost_usd")
        return (
            f"[usage] input {event.get('input_tokens', 0)}, output {event.get('output_tokens', 0)}, "
            f"cache read {event.get('cache_read_tokens', 0)} tokens"
            + (" (estimated)" if event.get("estimated") else "")
            + (f", ${cost:.6f}" if isinstance(cost, (int, float)) else "")
        )
    if t == "error":
        when = (
            f" (retry at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(event['retry_at']))})"
            if event.get("retry_at")
            else ""
        )
        return f"[error] {event.get('kind')}: {event.get('message')}{when}"
    if t == "result":
        return (
            f"[result] {'ok' if event.get('ok') else 'failed'} after {event.get('turns', 0)} turn(s): "
            f"{one_line(event.get('summary') or '')}"
        )
    return f"[{t}] {one_line(event)}"


class Connector(Protocol):
    name: str

    def run(self, ctx: RunContext) -> ConnectorResult: ...
