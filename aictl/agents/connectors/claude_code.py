"""The `claude-code` connector: the real Claude Code CLI, headless, in the task's workspace.

    claude -p --output-format stream-json --verbose [--model M] --permission-mode acceptEdits
           --allowedTools … [--disallowedTools …] --setting-sources user [--settings HOOKS]
           [--append-system-prompt S] [--max-turns N] [--max-budget-usd B] [--resume SESSION]
           [config args…] -- PROMPT

Environment (the sandbox passes nothing else): CLAUDE_CONFIG_DIR in the run's
state dir (sessions, so --resume works on a later run), ANTHROPIC_API_KEY from
the variable the AI names (api_key_env, default ANTHROPIC_API_KEY),
ANTHROPIC_BASE_URL from config base_url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
(no telemetry, update checks or other calls besides the model's), and
CLAUDE_CODE_MAX_RETRIES from config max_retries.

Permissions: --permission-mode acceptEdits, the aictl tools the policy allows as
allow rules scoped to the workspace (`Read(./**)`, `Edit(./**)`, …; `Bash` for
run) in --allowedTools, and the Claude tools of the others in
--disallowedTools, which removes them from what the model is offered; the web
tools too unless the sandbox spec allows network. Reads and edits outside the
workspace are refused (nobody can approve them in a headless run). aictl never
passes --dangerously-skip-permissions: it would lift that workspace limit, and
the local backend is no isolation (with `run` allowed, Bash can still reach
anything the user can).

Per call: with the run's pinned policy (ctx.run_policy), a PreToolUse hook (--settings)
asks the executor's decision socket (hookserver.py) before every tool call: the file,
command, host or tool is decided and recorded, and a refusal reaches the model with the
rule and reason while the run goes on. Settings come only from aictl (`--setting-sources
user`: the private CLAUDE_CONFIG_DIR, and --settings for the hook): the worktree's
.claude/settings*.json are the agent's own writing and may neither widen permissions nor
switch hooks off (`disableAllHooks`). Skills, which Claude Code finds under the project's
.claude/skills only with project settings on, are copied to CLAUDE_CONFIG_DIR/skills.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
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
from aictl.agents.pricing import run_cost
from aictl.domain.errors import UsageError

if TYPE_CHECKING:
    from aictl.agents.connectors.hookserver import HookServer
    from aictl.domain.models import AIRecord
# aictl tool → allow rules, scoped to the working directory: a bare "Read" or "Write" rule would let the tool
# reach any path, while "Read(./**)" is refused outside the workspace (measured on 2.1.197). Glob and Grep are
# only offered when an allow rule names them. Bash takes no useful path scope: `run` is all or nothing.
ALLOW_RULES: dict[str, list[str]] = {
    "read": ["Read(./**)", "Grep(./**)", "Glob(./**)"],
    "list": ["Glob(./**)"],
    "write": ["Edit(./**)", "Write(./**)", "NotebookEdit(./**)"],
    "run": ["Bash"],
}
# The Claude tools behind each aictl tool, removed from the model's tool list when the tool is not allowed.
# LS and MultiEdit are gone from 2.1.x; naming them is harmless and covers older CLIs.
CLAUDE_TOOLS: dict[str, list[str]] = {
    "read": ["Read", "Grep", "Glob", "LS"],
    "list": ["Glob", "LS"],
    "write": ["Edit", "Write", "MultiEdit", "NotebookEdit"],
    "run": ["Bash"],
}
WEB_TOOLS = ["WebFetch", "WebSearch"]
# A headless run stays in its workspace and ends when it returns: no other worktree, nothing scheduled for later.
ALWAYS_DENIED = ["EnterWorktree", "ExitWorktree", "CronCreate", "ScheduleWakeup"]
# Claude tool → aictl term, for normalized tool_call events.
AICTL_NAMES = {
    "Write": "write",
    "Edit": "write",
    "MultiEdit": "write",
    "NotebookEdit": "write",
    "Read": "read",
    "Glob": "list",
    "LS": "list",
    "Grep": "list",
    "Bash": "run",
}
# The assistant message's `error` field (set on API failures) → error kind.
ASSISTANT_ERRORS = {
    "rate_limit": "rate_limit",
    "authentication_failed": "auth",
    "billing_error": "auth",
    "oauth_org_not_allowed": "auth",
    "server_error": "overloaded",
    "overloaded": "overloaded",
}
# Past this size the system prompt goes through a file, not argv (Linux caps one argument at 128 KiB).
ARGV_SYSTEM_LIMIT = 64 * 1024


def permission_args(allowed_tools: list[str] | None, *, network: bool, mcp_servers: Any = ()) -> list[str]:
    """--permission-mode/--allowedTools/--disallowedTools for the aictl tools the policy allows (None = all).

    acceptEdits approves edits inside the working directory only; edits and reads elsewhere need
    permission, which nobody can give in a headless run, so they are refused.
    """
    allowed = list(CLAUDE_TOOLS) if allowed_tools is None else list(allowed_tools)
    unknown = sorted(set(allowed) - set(CLAUDE_TOOLS))
    if unknown:
        raise UsageError(
            f"unknown tool(s) {', '.join(unknown)} for claude-code", hint=f"aictl tools are: {', '.join(CLAUDE_TOOLS)}"
        )
    allow = _unique(rule for name in CLAUDE_TOOLS if name in allowed for rule in ALLOW_RULES[name])
    allow += [f"mcp__{server}" for server in mcp_servers]  # every tool of the run's MCP servers, no prompt
    kept = {tool for name in allowed for tool in CLAUDE_TOOLS[name]}
    deny = _unique(t for name in CLAUDE_TOOLS if name not in allowed for t in CLAUDE_TOOLS[name] if t not in kept)
    deny += ALWAYS_DENIED + ([] if network else WEB_TOOLS)
    args = ["--permission-mode", "acceptEdits"]
    if allow:
        args += ["--allowedTools", ",".join(allow)]
    return [*args, "--disallowedTools", ",".join(deny)]


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


def build_argv(
    binary: str,
    ctx: RunContext,
    *,
    system_file: Path | None = None,
    mcp_config: Path | None = None,
    hook_settings: str | None = None,
) -> list[str]:
    ai = ctx.ai
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
    if ai is not None and ai.model:
        argv += ["--model", ai.model]
    argv += permission_args(
        ctx.allowed_tools, network=bool(ctx.spec.network), mcp_servers=ctx.mcp_servers if mcp_config is not None else ()
    )
    # User settings only: CLAUDE_CONFIG_DIR is aictl's. The worktree's .claude/settings*.json are the agent's
    # own writing and could switch the hook off (disableAllHooks); its skills are copied over (user_skills).
    argv += ["--setting-sources", "user"]
    if hook_settings is not None:
        argv += ["--settings", hook_settings]
    if mcp_config is not None:  # strict: the run's servers only, never the user's own ~/.claude.json ones
        argv += ["--mcp-config", str(mcp_config), "--strict-mcp-config"]
    if system_file is not None:
        argv += ["--append-system-prompt-file", str(system_file)]
    elif ctx.system:
        argv += ["--append-system-prompt", ctx.system]
    max_turns = ctx.max_turns or config_value(ctx, "max_turns")
    if max_turns:
        argv += ["--max-turns", str(int(max_turns))]
    if ctx.budget_usd is not None:
        argv += ["--max-budget-usd", f"{ctx.budget_usd:g}"]
    if ctx.resume_session:
        argv += ["--resume", ctx.resume_session]
    argv += [str(a) for a in config_value(ctx, "args", []) or []]
    # "--" ends the options: --allowedTools takes a variadic list that would swallow the prompt, and a
    # prompt may start with "-".
    return [*argv, "--", prompt_of(ctx)]


def project_slug(path: str) -> str:
    """The directory name Claude Code files a cwd's sessions under (CLAUDE_CONFIG_DIR/projects/<slug>)."""
    slug = re.sub(r"[^A-Za-z0-9]", "-", path)
    if len(slug) <= 200:
        return slug
    data = path.encode("utf-16-le")  # JavaScript hashes UTF-16 code units: (h << 5) - h + unit, in int32
    h = 0
    for i in range(0, len(data), 2):
        h = (h * 31 + int.from_bytes(data[i : i + 2], "little")) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= (1 << 31) else h
    return f"{slug[:200]}-{_base36(abs(h))}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def user_skills(config_dir: Path, workdir: Path) -> None:
    """The worktree's .claude/skills (the repository's own and aictl's, as they are when the run starts) as
    CLAUDE_CONFIG_DIR/skills: with project settings off (they are agent-writable), that is where Claude Code
    finds skills. Links are copied as links (what they reach is decided when read)."""
    target = config_dir / "skills"
    shutil.rmtree(target, ignore_errors=True)
    source = workdir / ".claude" / "skills"
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(".git"))


def carry_session(config_dir: Path, session_id: str, workdir: Path) -> bool:
    """Make an earlier session resumable from this workdir.

    Claude Code files sessions per working directory and `--resume` looks only
    under the current one, but a follow-up run gets a new worktree (a new lease
    epoch, a new path): copy the session file across. True when it is in place.
    """
    if not re.fullmatch(r"[A-Za-z0-9-]{8,64}", session_id):
        return False
    projects = config_dir / "projects"
    target = projects / project_slug(os.path.realpath(workdir)) / f"{session_id}.jsonl"
    if target.exists():
        return True
    for found in sorted(projects.glob(f"*/{session_id}.jsonl")):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, target)
        return True
    return False


class ClaudeStream(StreamParser):
    """stream-json events → normalized events. Seen on 2.1.197: system/init, system/api_retry, assistant
    (one event per content block, the message's usage repeated), user (tool_result), rate_limit_event, result."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None, ai: AIRecord | None = None):
        super().__init__(on_event)
        self.ai = ai
        self._message_usage: dict[str, dict[str, Any]] = {}
        self._assistant_error: tuple[str, str] | None = None
        self._retry_delay_s: float | None = None
        self._tool_names: dict[str, str] = {}

    def handle(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "system":
            self._system(obj)
        elif kind == "assistant":
            self._assistant(obj)
        elif kind == "user":
            self._user(obj)
        elif kind == "result":
            self._result(obj)
        elif kind == "rate_limit_event":
            info = obj.get("rate_limit_info") or {}
            if info.get("status") == "rejected" and isinstance(info.get("resetsAt"), (int, float)):
                self.retry_at = float(info["resetsAt"])
                self.transcript.append(
                    f"[rate limit] {info.get('rateLimitType') or 'limit'} reached, resets "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.retry_at))}"
                )

    def _system(self, obj: dict[str, Any]) -> None:
        if obj.get("subtype") == "init":
            self.session_id = obj.get("session_id") or self.session_id
            self.model = obj.get("model") or self.model
            self.emit(
                {
                    "type": "init",
                    "session_id": self.session_id,
                    "model": self.model,
                    "tools": list(obj.get("tools") or []),
                }
            )
        elif obj.get("subtype") == "api_retry":
            # Claude Code honours the provider's retry-after; its delay is the best reset hint we get.
            if isinstance(obj.get("retry_delay_ms"), (int, float)):
                self._retry_delay_s = obj["retry_delay_ms"] / 1000
            self.transcript.append(
                f"[retry] attempt {obj.get('attempt')}/{obj.get('max_retries')} after "
                f"HTTP {obj.get('error_status')} ({obj.get('error')}), "
                f"waiting {obj.get('retry_delay_ms')} ms"
            )

    def _assistant(self, obj: dict[str, Any]) -> None:
        msg = obj.get("message") or {}
        if msg.get("model") and msg["model"] != "<synthetic>":
            self.model = msg["model"]
        if msg.get("id") and isinstance(msg.get("usage"), dict) and msg.get("model") != "<synthetic>":
            self._message_usage[msg["id"]] = msg["usage"]
        texts = []
        for block in msg.get("content") or []:
            if block.get("type") == "text" and block.get("text"):
                texts.append(block["text"])
                self.emit({"type": "message", "role": "assistant", "text": block["text"]})
            elif block.get("type") == "tool_use":
                raw = block.get("name") or "?"
                self._tool_names[block.get("id") or ""] = raw
                self.emit(
                    {
                        "type": "tool_call",
                        "id": block.get("id"),
                        "name": AICTL_NAMES.get(raw, raw),
                        "raw_name": raw,
                        "input": clip(block.get("input") or {}),
                    }
                )
        if obj.get("error"):
            self._assistant_error = (str(obj["error"]), " ".join(texts))

    def _user(self, obj: dict[str, Any]) -> None:
        for block in (obj.get("message") or {}).get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                self.emit(
                    {
                        "type": "tool_result",
                        "id": block.get("tool_use_id"),
                        "ok": not block.get("is_error"),
                        "output": clip(_text_of(block.get("content"))),
                    }
                )

    def _result(self, obj: dict[str, Any]) -> None:
        self.finished = True
        self.failed = bool(obj.get("is_error")) or obj.get("subtype") not in (None, "success")
        self.session_id = obj.get("session_id") or self.session_id
        self.turns = int(obj.get("num_turns") or 0)
        result = obj.get("result")
        text = result if isinstance(result, str) else ""
        self.summary = text
        self._set_usage(obj.get("usage") or {}, obj.get("total_cost_usd"))
        for denial in obj.get("permission_denials") or []:
            self.transcript.append(f"[denied] {denial.get('tool_name')} {clip(denial.get('tool_input'), 200)}")
        if self.failed:
            status = obj.get("api_error_status")
            kind = SPEC.error_kind(status if isinstance(status, int) else None)
            if kind is None and self._assistant_error:
                kind = ASSISTANT_ERRORS.get(self._assistant_error[0])
            subtype = obj.get("subtype") or "error"
            if kind is None:
                kind = "other" if subtype.startswith("error_max") else kind_from_text(text, SPEC.error_kind)
            message = text or {
                "error_max_turns": f"stopped after the maximum of {self.turns} turns",
                "error_max_budget_usd": "stopped at the budget limit",
            }.get(subtype, subtype)
            retry_at = self.retry_at or retry_at_from_text(message)
            if retry_at is None and kind == "rate_limit" and self._retry_delay_s is not None:
                retry_at = time.time() + self._retry_delay_s
            self.fail(kind, message, retry_at)
        self.emit({"type": "result", "ok": not self.failed, "turns": self.turns, "summary": text})

    def _set_usage(self, usage: dict[str, Any], total_cost: Any) -> None:
        self.usage = {
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
            "cache_read_tokens": int(usage.get("cache_read_input_tokens") or 0),
            "cache_write_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        }
        self.cost_usd = run_cost(
            SPEC, self.ai, self.usage, float(total_cost) if isinstance(total_cost, (int, float)) else None
        )
        self.emit({"type": "usage", **self.usage, "cost_usd": self.cost_usd})

    def settle(self) -> None:
        """No result event (killed, crashed): usage from the assistant messages seen so far."""
        if self.finished or not self._message_usage:
            return
        total: dict[str, int] = {}
        for u in self._message_usage.values():
            for k, v in u.items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        self.turns = len(self._message_usage)
        self._set_usage(total, None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return "" if content is None else str(content)


class ClaudeCodeConnector:
    name = "claude-code"

    def run(self, ctx: RunContext) -> ConnectorResult:
        try:
            binary, _key_name, key = preflight(
                ctx, SPEC, product="Claude Code", why_local="the CLI's allow-list limits its tools"
            )
        except Refused as r:
            return r.result
        state = StateDir(ctx, "aictl-claude-")
        hooks: HookServer | None = None
        try:
            config_dir = state.path / "claude-config"
            config_dir.mkdir(parents=True, exist_ok=True)
            env = {
                "CLAUDE_CONFIG_DIR": str(config_dir),
                "ANTHROPIC_API_KEY": key,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_AUTOUPDATER": "1",
            }
            url = SPEC.base_url(ctx.ai)
            if url:
                env["ANTHROPIC_BASE_URL"] = url
            retries = config_value(ctx, "max_retries")
            if retries is not None:
                env["CLAUDE_CODE_MAX_RETRIES"] = str(int(retries))
            system_file = None
            if len(ctx.system.encode()) > ARGV_SYSTEM_LIMIT:
                system_file = state.path / "append-system-prompt.md"
                system_file.write_text(ctx.system)
            if ctx.resume_session:
                carry_session(config_dir, ctx.resume_session, ctx.workdir)
            user_skills(config_dir, ctx.workdir)
            mcp_config = None
            if ctx.mcp_servers:
                from aictl.agents.connectors.mcpconfig import claude_mcp_json

                mcp_config = state.path / "mcp.json"
                mcp_config.write_text(claude_mcp_json(ctx.mcp_servers))
                env["MCP_CONNECTION_NONBLOCKING"] = "0"  # headless: the first turn must already see the tools
            parser = ClaudeStream(ctx.on_event, ai=ctx.ai)
            settings = None
            if ctx.run_policy is not None:  # every tool call asks the run's policy (and is recorded)
                from aictl.agents.connectors.hookserver import HookServer  # a socket server: only for a run

                hooks = HookServer.for_run(ctx)
                settings = hooks.settings_json()
            argv = build_argv(binary, ctx, system_file=system_file, mcp_config=mcp_config, hook_settings=settings)
            res = run_cli(ctx, argv, env, parser)
            parser.settle()
            result = finish(ctx, res, parser, SPEC)
            if hooks is not None and hooks.pending_approval is not None:
                result.pending_approval = hooks.pending_approval  # the task waits for a person
            return result
        finally:
            if hooks is not None:
                hooks.close()
            state.close()


SPEC = ConnectorSpec(
    name="claude-code",
    kind="cli",
    factory=ClaudeCodeConnector,
    binary="claude",
    default_key_env="ANTHROPIC_API_KEY",
    url_strip=("/v1",),  # ANTHROPIC_BASE_URL is the API's root
    config_types={"max_retries": (int,)},
    probe=cli_version,
    prices={},  # Claude Code reports its own cost (total_cost_usd); config prices override it
)

__all__ = [
    "SPEC",
    "ClaudeCodeConnector",
    "ClaudeStream",
    "build_argv",
    "carry_session",
    "permission_args",
    "project_slug",
    "user_skills",
]
