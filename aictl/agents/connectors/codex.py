"""The `codex` connector: the real Codex CLI (`codex exec`), headless, in the task's workspace.

    codex exec --json --skip-git-repo-check --sandbox MODE [-m MODEL] [config args…] [resume SESSION] -- PROMPT

CODEX_HOME is `<state dir>/codex-home` (sessions live there, so `resume` works
on a later run; Codex wants it outside TMPDIR). The run's skills go to its skills/
folder, which Codex lists to the model and reads on demand (aictl.skills.delivery). aictl writes its config.toml
before every run: a custom model provider `aictl` (base_url = config base_url,
with /v1 added to a bare host as for the openai connector, default the OpenAI API;
env_key = the variable the AI names in api_key_env, default OPENAI_API_KEY;
wire_api = "responses"), approval_policy "never" (nobody is there to approve), the system context as
developer_instructions (Codex sends it as a developer message after its own
instructions), web search off unless the sandbox spec allows network, plugins
off (their sync looks up api.github.com), and retries from config max_retries.

Tools: Codex's own sandbox is kept on, because it works here and is the only
isolation the local backend has: `workspace-write` when the policy allows
`write`, else `read-only` (its apply_patch is then refused and shell writes
fail); when `run` is not allowed the shell tool is switched off
(features.shell_tool = false). Where Codex's sandbox cannot start (no user
namespaces), set config codex_sandbox = "danger-full-access" and rely on
aictl's sandbox instead. In workspace-write the writable roots are the workspace
and the run's private TMPDIR, not the shared /tmp (exclude_slash_tmp); the
network is on only when spec.network is (the executor has applied the policy's
`network` decision to it), for commands (network_access) and web search alike.

Per call: with the run's pinned policy (ctx.run_policy), an inline PreToolUse hook in
config.toml asks the executor's decision socket (hookserver.py) before every shell
command, apply_patch and MCP tool call (Codex >= 0.124 runs PreToolUse hooks; 0.169
wants unreviewed hooks trusted, hence --dangerously-bypass-hook-trust, which trusts
only the hooks of the config layers Codex loads: aictl's CODEX_HOME, never an
untrusted worktree's .codex/). What a hook does not see: the files a command reads
or writes once it runs (only the words of its command line are checked), and
Codex's own web search (a provider-side tool: it is simply off without network).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aictl.agents.connectors.base import ConnectorResult, RunContext
from aictl.agents.connectors.cli_common import (
    Refused,
    StateDir,
    StreamParser,
    clip,
    config_value,
    finish,
    kind_from_text,
    preflight,
    prompt_of,
    retry_at_from_text,
    run_cli,
)
from aictl.agents.connectors.probes import cli_version
from aictl.agents.connectors.spec import ConnectorSpec
from aictl.agents.pricing import OPENAI_PRICES, run_cost
from aictl.domain.errors import UsageError
from aictl.skills.delivery import sync_home

if TYPE_CHECKING:
    from aictl.agents.connectors.hookserver import HookServer
    from aictl.domain.models import AIRecord

PROVIDER = "aictl"
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")
AICTL_TOOLS = ("read", "list", "write", "run")
# Codex warns about the flag aictl passes on purpose (see build_argv): no news for a transcript.
_OWN_FLAG_WARNING = "`--dangerously-bypass-hook-trust` is enabled"
_REFUSED = re.compile(r"ERROR codex_core::tools::router: error=(.*)")


def sandbox_mode(allowed_tools: list[str] | None, override: str | None = None) -> str:
    """Codex's --sandbox for the aictl tools the policy allows: no `write`, no writing."""
    if allowed_tools is not None:
        unknown = sorted(set(allowed_tools) - set(AICTL_TOOLS))
        if unknown:
            raise UsageError(
                f"unknown tool(s) {', '.join(unknown)} for codex", hint=f"aictl tools are: {', '.join(AICTL_TOOLS)}"
            )
    if override and override not in SANDBOX_MODES:
        raise UsageError(f"codex_sandbox must be one of {', '.join(SANDBOX_MODES)}, not {override!r}")
    if allowed_tools is not None and "write" not in allowed_tools:
        return "read-only"  # config may loosen Codex's own sandbox where it cannot start, never the policy
    return override or "workspace-write"


def in_container_mode(ctx: RunContext) -> str | None:
    """Inside docker, Codex's bwrap cannot make namespaces (an unprivileged container); the container confines it."""
    return "danger-full-access" if ctx.spec.backend == "docker" else None


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, except that TOML also wants DEL escaped)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def config_toml(ctx: RunContext, key_env: str, *, hook_command: str | None = None) -> str:
    url = SPEC.base_url(ctx.ai) or ""  # never empty: the spec has a default
    allowed = ctx.allowed_tools
    lines = []
    if ctx.ai is not None and ctx.ai.model:
        lines.append(f"model = {toml_str(ctx.ai.model)}")
    lines += [
        f"model_provider = {toml_str(PROVIDER)}",
        'approval_policy = "never"',
        f"web_search = {toml_str('live' if ctx.spec.network else 'disabled')}",
        "check_for_update_on_startup = false",
    ]
    if ctx.system:
        lines.append(f"developer_instructions = {toml_str(ctx.system)}")
    lines += ["", "[features]", "plugins = false", f"hooks = {'true' if hook_command else 'false'}"]
    if allowed is not None and "run" not in allowed:
        lines.append("shell_tool = false")
    lines += [
        "",
        f"[model_providers.{PROVIDER}]",
        f"name = {toml_str(PROVIDER)}",
        f"base_url = {toml_str(url)}",
        f"env_key = {toml_str(key_env)}",
        'wire_api = "responses"',
    ]
    retries = config_value(ctx, "max_retries")
    if retries is not None:
        lines += [f"request_max_retries = {int(retries)}", f"stream_max_retries = {int(retries)}"]
    lines += [
        "",
        "[sandbox_workspace_write]",
        f"network_access = {'true' if ctx.spec.network else 'false'}",
        "exclude_slash_tmp = true",  # the workspace and the run's own TMPDIR, not what other runs share
    ]
    if hook_command is not None:
        lines += hook_toml(hook_command)
    if ctx.mcp_servers:
        from aictl.agents.connectors.mcpconfig import codex_mcp_toml

        lines += codex_mcp_toml(ctx.mcp_servers)
    return "\n".join(lines) + "\n"


def hook_toml(command: str) -> list[str]:
    """The PreToolUse hook for every tool (Bash, apply_patch, mcp__…), as config.toml's inline [hooks]."""
    from aictl.agents.connectors.hookserver import HOOK_TIMEOUT_S

    return [
        "",
        "[[hooks.PreToolUse]]",
        'matcher = "*"',
        "[[hooks.PreToolUse.hooks]]",
        'type = "command"',
        f"command = {toml_str(command)}",
        f"timeout = {HOOK_TIMEOUT_S}",
    ]


def build_argv(binary: str, ctx: RunContext, *, hooks: bool = False) -> list[str]:
    argv = [
        binary,
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        sandbox_mode(ctx.allowed_tools, config_value(ctx, "codex_sandbox") or in_container_mode(ctx)),
    ]
    if hooks:  # aictl wrote the hook into its own CODEX_HOME: there is nobody to review it
        argv.append("--dangerously-bypass-hook-trust")
    if ctx.ai is not None and ctx.ai.model:
        argv += ["--model", ctx.ai.model]
    argv += [str(a) for a in config_value(ctx, "args", []) or []]
    if ctx.resume_session:
        argv += ["resume", ctx.resume_session]
    return [*argv, "--", prompt_of(ctx)]


class CodexStream(StreamParser):
    """`codex exec --json` events → normalized events. Seen on 0.169.0: thread.started, turn.started,
    item.started/completed (agent_message, reasoning, command_execution, file_change, error, …),
    error (also "Reconnecting… n/m" notices), turn.completed (usage), turn.failed."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None, *, ai: AIRecord | None = None):
        super().__init__(on_event)
        self.ai = ai
        self.model = ai.model if ai is not None else None
        self._called: set[str | None] = set()
        self._last_error: str | None = None
        self._totals = {"input": 0, "cached": 0, "output": 0}

    def handle(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "thread.started":
            self.session_id = obj.get("thread_id") or self.session_id
            self.emit({"type": "init", "session_id": self.session_id, "model": self.model, "tools": []})
        elif kind in ("item.started", "item.completed"):
            self._item(obj.get("item") or {}, done=kind == "item.completed")
        elif kind == "turn.completed":
            self.finished = True
            self.turns += 1
            self._add_usage(obj.get("usage") or {})
            self.emit({"type": "result", "ok": not self.failed, "turns": self.turns, "summary": self.summary})
        elif kind == "turn.failed":
            self.finished = self.failed = True
            message = ((obj.get("error") or {}).get("message")) or self._last_error or "turn failed"
            self.fail(kind_from_text(message), message, retry_at_from_text(message))
            self.emit({"type": "result", "ok": False, "turns": self.turns, "summary": self.summary})
        elif kind == "error":
            message = str(obj.get("message") or "")
            if message.startswith("Reconnecting"):
                self.transcript.append(f"[retry] {message}")
            else:
                self._last_error = message

    def feed_stderr(self, line: str) -> None:
        # A refused apply_patch (read-only sandbox, approval "never") leaves no item in the JSON stream;
        # Codex only logs it: "ERROR codex_core::tools::router: error=patch rejected: …".
        match = _REFUSED.search(line)
        if match:
            self.transcript.append(f"[refused] {match.group(1).strip()}")

    def _item(self, item: dict[str, Any], *, done: bool) -> None:
        kind, item_id = item.get("type"), item.get("id")
        if kind == "agent_message":
            if done and item.get("text"):
                self.summary = item["text"]
                self.emit({"type": "message", "role": "assistant", "text": item["text"]})
        elif kind == "reasoning":
            if done and item.get("text"):
                self.transcript.append(f"[reasoning] {item['text']}")
        elif kind in ("command_execution", "file_change", "mcp_tool_call", "web_search"):
            if item_id not in self._called:
                self._called.add(item_id)
                self.emit({"type": "tool_call", "id": item_id, **_call_of(item)})
            if done:
                self.emit({"type": "tool_result", "id": item_id, **_result_of(item)})
        elif kind == "error" and done and not str(item.get("message") or "").startswith(_OWN_FLAG_WARNING):
            self.transcript.append(f"[warning] {item.get('message')}")  # a failure comes as turn.failed

    def _add_usage(self, usage: dict[str, Any]) -> None:
        self._totals["input"] += int(usage.get("input_tokens") or 0)
        self._totals["cached"] += int(usage.get("cached_input_tokens") or 0)
        self._totals["output"] += int(usage.get("output_tokens") or 0)
        # OpenAI counts cached tokens inside input_tokens; aictl counts them apart (as Anthropic does).
        self.usage = {
            "input_tokens": self._totals["input"] - self._totals["cached"],
            "output_tokens": self._totals["output"],
            "cache_read_tokens": self._totals["cached"],
        }
        self.cost_usd = run_cost(SPEC, self.ai, self.usage)
        self.emit({"type": "usage", **self.usage, "cost_usd": self.cost_usd})


def _call_of(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("type")
    if kind == "command_execution":
        return {"name": "run", "raw_name": kind, "input": clip({"command": item.get("command")})}
    if kind == "file_change":
        return {"name": "write", "raw_name": kind, "input": clip({"changes": item.get("changes") or []})}
    if kind == "mcp_tool_call":
        return {
            "name": f"{item.get('server')}.{item.get('tool')}",
            "raw_name": kind,
            "input": clip(item.get("arguments")),
        }
    return {"name": kind, "raw_name": kind, "input": clip({"query": item.get("query")})}


def _result_of(item: dict[str, Any]) -> dict[str, Any]:
    kind, status = item.get("type"), item.get("status")
    if kind == "command_execution":
        return {
            "ok": status == "completed" and item.get("exit_code") == 0,
            "output": clip(item.get("aggregated_output") or ""),
            "exit_code": item.get("exit_code"),
        }
    if kind == "file_change":
        changes = ", ".join(f"{c.get('kind')} {c.get('path')}" for c in item.get("changes") or [])
        return {"ok": status == "completed", "output": changes}
    return {
        "ok": status in (None, "completed"),
        "output": clip(json.dumps(item.get("result") or item.get("error") or "", default=str)),
    }


class CodexConnector:
    name = "codex"

    def run(self, ctx: RunContext) -> ConnectorResult:
        try:
            binary, key_name, key = preflight(
                ctx, SPEC, product="Codex", why_local="Codex's own sandbox confines its commands"
            )
        except Refused as r:
            return r.result
        state = StateDir(ctx, "aictl-codex-")
        hooks: HookServer | None = None
        try:
            if ctx.run_policy is not None:  # every tool call asks the run's policy (and is recorded)
                from aictl.agents.connectors.hookserver import HookServer  # a socket server: only for a run

                hooks = HookServer.for_run(ctx)
            argv = build_argv(binary, ctx, hooks=hooks is not None)
            home = state.path / "codex-home"
            home.mkdir(parents=True, exist_ok=True)
            hook_command = hooks.command() if hooks is not None else None
            (home / "config.toml").write_text(config_toml(ctx, key_name, hook_command=hook_command))
            sync_home(home / "skills", ctx.skills)  # Codex lists them as "Available skills", reads them on demand
            parser = CodexStream(ctx.on_event, ai=ctx.ai)
            res = run_cli(ctx, argv, {"CODEX_HOME": str(home), key_name: key}, parser)
            result = finish(ctx, res, parser, SPEC)
            if hooks is not None and hooks.pending_approval is not None:
                result.pending_approval = hooks.pending_approval  # the task waits for a person
            return result
        finally:
            if hooks is not None:
                hooks.close()
            state.close()


SPEC = ConnectorSpec(
    name="codex",
    kind="cli",
    factory=CodexConnector,
    binary="codex",
    default_key_env="OPENAI_API_KEY",
    default_base_url="https://api.openai.com/v1",
    url_path="/v1",  # the custom provider's base_url: the Responses API root, /v1 on a bare host
    config_types={"max_retries": (int,)},
    config_choices={"codex_sandbox": SANDBOX_MODES},
    probe=cli_version,
    prices=OPENAI_PRICES,
)

__all__ = [
    "SPEC",
    "CodexConnector",
    "CodexStream",
    "build_argv",
    "config_toml",
    "hook_toml",
    "sandbox_mode",
    "toml_str",
]
