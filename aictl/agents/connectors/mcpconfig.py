"""MCP servers a run's agent gets: aictl's task-scoped server plus the AI's configured `mcp_servers`, written in
each CLI's own format (Claude Code's --mcp-config JSON, Codex's [mcp_servers.NAME] tables).

An entry is {"command": str, "args": [str], "env": {str: str}} (stdio) or {"url": str, "bearer_token_env": VAR}
(streamable HTTP, the token read from the environment variable VAR).
"""

from __future__ import annotations

import json
from typing import Any

from aictl.domain.errors import ConfigError

AICTL_SERVER = "aictl"  # reserved: the run's own task-scoped server


def configured_servers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The AI's `mcp_servers` config, checked (ConfigError names the server and what is wrong)."""
    raw = config.get("mcp_servers") or {}
    if not isinstance(raw, dict):
        raise ConfigError("mcp_servers: expected a mapping of name -> {command, args, env} or {url}")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        where = f"mcp_servers.{name}"
        if name == AICTL_SERVER:
            raise ConfigError(f"{where}: the name {AICTL_SERVER!r} is the run's own task server", hint="rename it")
        if not isinstance(entry, dict) or ("command" in entry) == ("url" in entry):
            raise ConfigError(
                f"{where}: give either command (stdio) or url (streamable HTTP)",
                hint='e.g. {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"]}',
            )
        if "command" in entry:
            args, env = entry.get("args") or [], entry.get("env") or {}
            if not isinstance(args, list) or not isinstance(env, dict):
                raise ConfigError(f"{where}: args must be a list and env a mapping")
            out[name] = {
                "command": str(entry["command"]),
                "args": [str(a) for a in args],
                "env": {str(k): str(v) for k, v in env.items()},
            }
        else:
            out[name] = {"url": str(entry["url"])}
            if entry.get("bearer_token_env"):
                out[name]["bearer_token_env"] = str(entry["bearer_token_env"])
    return out


def claude_mcp_json(servers: dict[str, dict[str, Any]]) -> str:
    """The file for `claude --mcp-config FILE --strict-mcp-config` (Claude expands ${VAR} in it)."""
    doc: dict[str, Any] = {}
    for name, s in servers.items():
        if "command" in s:
            doc[name] = {"type": "stdio", "command": s["command"], "args": s["args"], "env": s["env"]}
        else:
            doc[name] = {"type": "http", "url": s["url"]}
            if s.get("bearer_token_env"):
                doc[name]["headers"] = {"Authorization": "Bearer ${" + s["bearer_token_env"] + "}"}
    for entry in doc.values():
        entry["alwaysLoad"] = True  # offered from the first turn, not deferred behind a tool search
    return json.dumps({"mcpServers": doc}, indent=2)


def codex_mcp_toml(servers: dict[str, dict[str, Any]]) -> list[str]:
    """[mcp_servers.NAME] tables for CODEX_HOME/config.toml."""
    lines: list[str] = []
    for name, s in servers.items():
        lines += ["", f"[mcp_servers.{json.dumps(name)}]"]
        if "command" in s:
            lines += [f"command = {json.dumps(s['command'])}", f"args = {json.dumps(s['args'])}"]
            if s["env"]:
                lines.append(
                    "env = { " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in s["env"].items()) + " }"
                )
        else:
            lines.append(f"url = {json.dumps(s['url'])}")
            if s.get("bearer_token_env"):
                lines.append(f"bearer_token_env_var = {json.dumps(s['bearer_token_env'])}")
    return lines
