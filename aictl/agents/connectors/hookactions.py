"""A PreToolUse hook's tool call (Claude Code's or Codex's) as the policy actions it needs allowed.

    actions_for("Read", {"file_path": "/ws/secrets/token.txt"}, Path("/ws"))
        -> [Action("read_path", {"path": "secrets/token.txt"})]

Claude Code: Read -> read_path; Write/Edit/MultiEdit/NotebookEdit -> write_path;
Grep/Glob/LS -> read_path on the searched directory; WebFetch -> network (host, port).
Codex: apply_patch -> write_path per added/updated/moved-to file, delete_path per deleted one.
Both: Bash -> run_command, then read_path for each word of the command that names a file of
the workspace (globs expanded there), so `cat secrets/token.txt` meets the secret's read
rule (files outside the workspace are not the policy's paths: left to the sandbox);
mcp__server__tool and any other tool -> use_tool with its name; the agents' bookkeeping
tools (todo lists, subagents whose calls are hooked one by one) -> nothing.

Paths are made relative to the workspace with symlinks resolved (a link is judged by what
it points at); a path that leaves the workspace stays "../…", which the run's policy
refuses (RunPolicy.normalize) with a record. The Bash word scan is a best effort, not a
shell: a name built at run time (`cat $(echo c2VjcmV0cw== | base64 -d)/*`) is not seen.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Claude's and Codex's own bookkeeping: no file, command or host of their own.
NO_RESOURCE_TOOLS = frozenset(
    {"TodoWrite", "Task", "Agent", "ToolSearch", "ExitPlanMode", "TaskOutput", "KillShell", "update_plan"}
)
READ_TOOLS = {"Read": "file_path"}
WRITE_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}
SEARCH_TOOLS = ("Grep", "Glob", "LS")
SHELL_TOOLS = ("Bash", "shell", "exec_command", "local_shell")
# Bounds on the word scan of one command: a hostile command line cannot make the check slow.
MAX_WORDS = 256
MAX_GLOB_MATCHES = 64
_PATCH_FILE = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$|^\*\*\* Move to: (.+)$", re.MULTILINE)
_SHELL_PUNCT = frozenset(";|&()<>")


@dataclass
class Action:
    """One policy question a tool call asks: the action and its resource (RunPolicy.decide's keywords)."""

    action: str
    resource: dict[str, Any] = field(default_factory=dict)


def repo_path(raw: Any, workdir: Path) -> str:
    """`raw` relative to the workspace, symlinks resolved ("../…" when it leaves the workspace)."""
    joined = os.path.join(workdir, str(raw or "."))  # an absolute path replaces the workspace, as the tools do
    return os.path.relpath(os.path.realpath(joined), os.path.realpath(workdir))


def actions_for(tool: str, tool_input: Any, workdir: Path) -> list[Action]:
    """The policy actions one tool call needs allowed, in the order they are asked."""
    args = tool_input if isinstance(tool_input, dict) else {}
    if tool in READ_TOOLS:
        return [Action("read_path", {"path": repo_path(args.get(READ_TOOLS[tool]), workdir)})]
    if tool in WRITE_TOOLS:
        return [Action("write_path", {"path": repo_path(args.get(WRITE_TOOLS[tool]), workdir)})]
    if tool in SEARCH_TOOLS:
        return [Action("read_path", {"path": repo_path(args.get("path") or ".", workdir)})]
    if tool in SHELL_TOOLS:
        command = args.get("command") if "command" in args else args.get("cmd")
        line = " ".join(command) if isinstance(command, list) else str(command or "")
        return [Action("run_command", {"command": line}), *command_reads(line, workdir)]
    if tool == "apply_patch":
        return patch_actions(str(args.get("command") or args.get("input") or ""), workdir)
    if tool == "WebFetch":
        url = urlsplit(str(args.get("url") or ""))
        try:
            port = url.port or (80 if url.scheme == "http" else 443)
        except ValueError:
            port = None
        return [Action("network", {"host": (url.hostname or "").lower(), "port": port})]
    if tool in NO_RESOURCE_TOOLS:
        return []
    return [Action("use_tool", {"tool": tool})]


def patch_actions(patch: str, workdir: Path) -> list[Action]:
    """Codex's apply_patch: write_path for each file it adds, updates or moves to; delete_path for each it deletes."""
    out: list[Action] = []
    for kind, target, moved_to in _PATCH_FILE.findall(patch):
        action = "delete_path" if kind == "Delete" else "write_path"
        out.append(Action(action, {"path": repo_path((target or moved_to).strip(), workdir)}))
    return out or [Action("write_path", {"path": "."})]  # a patch naming no file: judged as a write at the root


def command_reads(line: str, workdir: Path) -> list[Action]:
    """read_path for each word of a command line that names an existing file of the workspace.

    Files outside the workspace are left to the sandbox (`/usr/bin/env` is no repository path)."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = [w for _, w in zip(range(MAX_WORDS), lexer, strict=False)]
    except ValueError:  # an unclosed quote: the words as written
        words = line.split()[:MAX_WORDS]
    seen: dict[str, None] = {}
    for word in words:
        if not word or word.startswith("-") or set(word) <= _SHELL_PUNCT:
            continue
        word = word.split("=", 1)[1] if word.startswith("--") or "=" in word.split("/", 1)[0] else word
        for candidate in _expand(word, workdir):
            rel = repo_path(candidate, workdir)
            if not rel.startswith("..") and os.path.isfile(candidate):  # outside the workspace: not the policy's
                seen.setdefault(rel, None)
    return [Action("read_path", {"path": p}) for p in seen]


def _expand(word: str, workdir: Path) -> list[str]:
    path = os.path.join(workdir, os.path.expanduser(word))
    if not glob.has_magic(word):
        return [path]
    matches = []
    for match in glob.iglob(path, recursive=False):
        matches.append(match)
        if len(matches) >= MAX_GLOB_MATCHES:
            break
    return matches


__all__ = ["Action", "actions_for", "command_reads", "patch_actions", "repo_path"]
