"""A PreToolUse hook's tool call (Claude Code's or Codex's) as the policy actions it needs allowed.

    actions_for("Read", {"file_path": "/ws/secrets/token.txt"}, Path("/ws"))
        -> [Action("read_path", {"path": "secrets/token.txt"})]

Claude Code: Read -> read_path; Write/Edit/MultiEdit/NotebookEdit -> write_path;
Grep/Glob/LS -> read_path on the searched directory; WebFetch -> network (host, port).
Codex: apply_patch -> write_path per added/updated/moved-to file, delete_path per deleted one.
Both: Bash -> run_command (RunPolicy's own scan of the line also refuses a secret it names
and decides each URL's host as `network`), then the paths its words name, one record each
(`command_reads`: what rm deletes, what mv/cp/tee/`>` write, the workspace files anything
else is given, globs expanded), so `rm .ai/policy.yaml` meets the locks and `rm
../../policy.yaml` the repository's edge. mcp__server__tool and any other tool -> use_tool
with its name; the agents' bookkeeping tools (todo lists, subagents whose calls are hooked
one by one) -> nothing.

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
_REDIRECTS = frozenset("<>")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_REDIRECT = re.compile(r"(?:^|[^<>&])(?:\d|&)?>>?\|?\s*([^\s;&|<>()`$]+)")
MAX_LINE = 16_384
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ssh": 22, "git": 9418, "ws": 80, "wss": 443}
DELETERS = frozenset({"rm", "unlink", "shred", "rmdir"})
COPIERS = frozenset({"cp", "install", "ln"})
WRITERS = frozenset({"tee", "touch", "truncate"})


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
        return [url_action(str(args.get("url") or ""))]
    if tool in NO_RESOURCE_TOOLS:
        return []
    return [Action("use_tool", {"tool": tool})]


def url_action(text: str) -> Action:
    """network with the URL's host and port (the scheme's default port when none is written)."""
    url = urlsplit(text)
    try:
        port = url.port or DEFAULT_PORTS.get(url.scheme.lower(), 443)
    except ValueError:
        port = None
    return Action("network", {"host": (url.hostname or "").lower(), "port": port})


def patch_actions(patch: str, workdir: Path) -> list[Action]:
    """Codex's apply_patch: write_path for each file it adds, updates or moves to; delete_path for each it deletes."""
    out: list[Action] = []
    for kind, target, moved_to in _PATCH_FILE.findall(patch):
        action = "delete_path" if kind == "Delete" else "write_path"
        out.append(Action(action, {"path": repo_path((target or moved_to).strip(), workdir)}))
    return out or [Action("write_path", {"path": "."})]  # a patch naming no file: judged as a write at the root


def command_reads(line: str, workdir: Path) -> list[Action]:
    """The path actions a command line's words name, per simple command (policy/commands.py splits them):
    rm/unlink/shred/rmdir -> delete_path; mv -> delete_path of its sources and write_path of its target;
    cp/install/ln -> write_path of the target; tee/touch/truncate and `>`/`>>` targets -> write_path;
    any other word naming an existing workspace file -> read_path. A write or delete outside the
    workspace is asked too (and refused by the run's policy); a read outside it is the sandbox's
    business (`/usr/bin/env` is no repository path). Device files (/dev/null) are never asked."""
    from aictl.policy.commands import parse_command

    seen: dict[tuple[str, str], None] = {}
    # parse_command keeps no redirections: their targets are read off the line itself.
    named = [("write_path", m.group(1).strip("'\"")) for m in _REDIRECT.finditer(line[:MAX_LINE])]
    for segment in parse_command(line).segments:
        named += _segment_paths(segment)
    for action, word in named:
        for candidate in _expand(word, workdir):
            rel = repo_path(candidate, workdir)
            outside = rel == ".." or rel.startswith(".." + os.sep)
            if os.path.realpath(candidate).startswith("/dev/"):
                continue
            if action == "read_path" and (outside or not os.path.isfile(candidate)):
                continue
            seen.setdefault((action, rel), None)
            if len(seen) >= MAX_WORDS:
                return [Action(a, {"path": p}) for a, p in seen]
    return [Action(a, {"path": p}) for a, p in seen]


def _segment_paths(segment: str) -> list[tuple[str, str]]:
    """(action, word) for the words of one simple command that may name files."""
    try:
        lexer = shlex.shlex(segment, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = [w for _, w in zip(range(MAX_WORDS), lexer, strict=False)]
    except ValueError:  # an unclosed quote: the words as written
        words = segment.split()[:MAX_WORDS]
    out: list[tuple[str, str]] = []
    args: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:  # a redirection's target: read off the whole line by _REDIRECT already
            skip_next = False
        elif word and set(word) <= _SHELL_PUNCT:
            skip_next = bool(set(word) & _REDIRECTS)
        elif args or not _ASSIGNMENT.match(word):
            args.append(word)
    if not args:
        return out
    program, operands = os.path.basename(args[0]), [a for a in args[1:] if a and not a.startswith("-")]
    operands = [a.split("=", 1)[1] if "=" in a.split("/", 1)[0] else a for a in operands]
    if program in DELETERS:
        out += [("delete_path", a) for a in operands]
    elif program == "mv" and operands:
        out += [("delete_path", a) for a in operands[:-1]] + [("write_path", operands[-1])]
    elif program in COPIERS and operands:
        out += [("read_path", a) for a in operands[:-1]] + [("write_path", operands[-1])]
    elif program in WRITERS:
        out += [("write_path", a) for a in operands]
    else:
        out += [("read_path", a) for a in operands]
    return out


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


__all__ = ["Action", "actions_for", "command_reads", "patch_actions", "repo_path", "url_action"]
