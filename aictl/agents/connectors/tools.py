"""The four tools aictl's own loop offers a raw model: read, write and list files, run a command.

Every path is confined to the task's worktree: absolute paths outside it,
``..`` and symlinks that lead out are refused, and so are writes under
``.git`` (the worktree's link to its repository). A refusal is a tool error
the model reads and can act on, never an exception. Files are read and
written on the host (the worktree is the sandbox's mount); commands run inside
the sandbox, each under its own timeout.

Tool names as the model sees them, and as the policy names them::

    read_file(path)                  read
    write_file(path, content)        write
    list_files(path=".", pattern?)   list
    run_command(command)             run
"""

from __future__ import annotations

import fnmatch
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

# aictl's short tool names (policy, events) → the names the model calls.
TOOL_NAMES = {"read": "read_file", "write": "write_file", "list": "list_files", "run": "run_command"}
SHORT_NAMES = {v: k for k, v in TOOL_NAMES.items()}

READ_LIMIT = 64 * 1024  # bytes of a file shown to the model
WRITE_LIMIT = 1024 * 1024  # bytes one write_file may write
LIST_LIMIT = 500  # entries one list_files returns
OUTPUT_LIMIT = 16 * 1024  # characters of a command's output returned to the model
COMMAND_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments


SPECS: dict[str, ToolSpec] = {
    "read_file": ToolSpec(
        "read_file",
        "Read a text file of the repository. Paths are relative to the repository root.",
        {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "file path, e.g. src/app.py"}},
            "required": ["path"],
        },
    ),
    "write_file": ToolSpec(
        "write_file",
        "Create or overwrite a file of the repository with the given content (parent directories are created). "
        "Paths are relative to the repository root.",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "file path, e.g. src/app.py"},
                "content": {"type": "string", "description": "the whole new content of the file"},
            },
            "required": ["path", "content"],
        },
    ),
    "list_files": ToolSpec(
        "list_files",
        "List the files under a directory of the repository, recursively (.git is skipped). "
        "An optional glob pattern such as '*.py' or 'src/**/*.ts' filters them.",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "directory, relative to the repository root (default '.')"},
                "pattern": {"type": "string", "description": "optional glob on the path or the file name"},
            },
        },
    ),
    "run_command": ToolSpec(
        "run_command",
        "Run a shell command (/bin/sh -c) in the repository root, in a sandbox, and return its exit code and "
        "output. Use it to run tests, linters or builds. It has a time limit and may have no network.",
        {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "e.g. 'pytest -q'"}},
            "required": ["command"],
        },
    ),
}


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


class SandboxUnavailable(Exception):
    """run_command could not start the sandbox (engine down, image missing): the run ends, worth retrying later."""


class ApprovalNeeded(Exception):
    """The policy wants a person to approve this call: the run ends, the task waits (aictl task approve)."""

    def __init__(self, verdict: Any, action: str, target: str):
        super().__init__(verdict.reason)
        self.verdict, self.action, self.target = verdict, action, target

    def pending(self) -> dict[str, Any]:
        """What the task waits for, as ConnectorResult.pending_approval carries it."""
        return {
            "action": self.action,
            "target": self.target,
            "rule": self.verdict.rule,
            "reason": self.verdict.reason,
            "decision_id": self.verdict.decision_id,
        }


@dataclass
class ToolOutcome:
    ok: bool
    output: str


def clip(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the start and, mostly, the end of a long text (the end is where the error is)."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]}\n[... {len(text) - head - tail} characters omitted ...]\n{text[-tail:]}"


class WorkspaceTools:
    def __init__(
        self,
        workdir: Path,
        *,
        sandbox: Any = None,
        spec: Any = None,
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
        on_output: Callable[[str, str], None] | None = None,
        allowed: list[str] | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        deadline: float | None = None,
        policy: Any = None,
    ):
        self.root = Path(os.path.realpath(workdir))
        if not self.root.is_dir():
            raise ToolError(f"workspace {workdir} is not a directory")
        self.sandbox, self.spec, self.labels, self.on_output = sandbox, spec, dict(labels or {}), on_output
        self.cancel = cancel or threading.Event()
        self.allowed = set(TOOL_NAMES) if allowed is None else {a for a in allowed if a in TOOL_NAMES}
        self.command_timeout_s = command_timeout_s
        self.deadline = deadline  # time.monotonic() by which the whole run must end
        # Inside docker the worktree appears at the mount: accept absolute paths there too.
        mount = getattr(spec, "mount", None) if getattr(spec, "backend", None) == "docker" else None
        self.mount = PurePosixPath(mount) if mount else None
        self.sandbox_settings: dict[str, Any] = {}  # the isolation the last command ran with, for evidence
        self.policy = policy  # aictl.policy.runtime.RunPolicy: decides each call before it runs; None: no policy

    def specs(self) -> list[ToolSpec]:
        """The tools the policy allows, in a stable order."""
        return [SPECS[TOOL_NAMES[short]] for short in TOOL_NAMES if short in self.allowed]

    # -- dispatch --------------------------------------------------------------

    def call(self, name: str, args: Any) -> ToolOutcome:
        """Run one tool call. Never raises for anything the model did; only SandboxUnavailable ends the run."""
        short = SHORT_NAMES.get(name)
        if short is None:
            offered = ", ".join(s.name for s in self.specs()) or "none"
            return ToolOutcome(False, f"unknown tool {name!r}; the tools are: {offered}")
        if short not in self.allowed:
            return ToolOutcome(False, f"{name} is not allowed by the policy for this task")
        if not isinstance(args, dict):
            return ToolOutcome(False, f"{name}: the arguments must be a JSON object, not {type(args).__name__}")
        try:
            refused = self._decide(name, args)
            if refused is not None:
                return refused
            if name == "read_file":
                return ToolOutcome(True, self.read_file(_arg(args, "path")))
            if name == "write_file":
                return ToolOutcome(True, self.write_file(_arg(args, "path"), _arg(args, "content", allow_empty=True)))
            if name == "list_files":
                return ToolOutcome(
                    True,
                    self.list_files(
                        _arg(args, "path", default=".", allow_empty=True) or ".",
                        _arg(args, "pattern", default=None, allow_empty=True) or None,
                    ),
                )
            return self.run_command(_arg(args, "command"))
        except ToolError as e:
            return ToolOutcome(False, str(e))
        except OSError as e:
            return ToolOutcome(False, f"{name} failed: {e.strerror or e}")

    def _decide(self, name: str, args: dict[str, Any]) -> ToolOutcome | None:
        """The run's policy on this call: None to go on, a refusal naming the rule, or ApprovalNeeded.

        A path is decided as the real file the tool would touch (a symlink to a secret is the secret)
        and as the model named it."""
        if self.policy is None:
            return None
        if name == "run_command":
            command = _arg(args, "command")
            return self._verdict(self.policy.decide("run_command", command=command), "run_command", command)
        action = {"read_file": "read_path", "write_file": "write_path", "list_files": "read_path"}[name]
        given = _arg(args, "path", default=".", allow_empty=True) or "."
        named = self.policy.decide(action, path=given)
        refused = self._verdict(named, action, given)
        if refused is not None:
            return refused
        real = self._rel(self.resolve(given, write=action == "write_path"))
        if self.policy.normalize(given)[0] != real:  # a symlink: the file it reaches is decided too
            return self._verdict(self.policy.decide(action, path=real), action, real)
        return None

    @staticmethod
    def _verdict(verdict: Any, action: str, target: str) -> ToolOutcome | None:
        if verdict.allowed:
            return None
        if verdict.effect == "require_approval":
            raise ApprovalNeeded(verdict, action, target)
        return ToolOutcome(False, verdict.reason)

    # -- paths -----------------------------------------------------------------

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path inside the worktree that `path` names, or ToolError."""
        if "\x00" in path:
            raise ToolError("a path may not contain a NUL byte")
        p = PurePosixPath(path.strip())
        if p.is_absolute():
            for base in (PurePosixPath(self.root), self.mount):
                if base is not None and (p == base or base in p.parents):
                    p = p.relative_to(base)
                    break
            else:
                raise ToolError(
                    f"{path}: refused, it is outside the workspace; use a path relative to the repository root"
                )
        if ".." in p.parts:
            raise ToolError(f"{path}: refused, '..' may not be used; paths stay inside the workspace")
        real = Path(os.path.realpath(self.root / p))
        if real != self.root and self.root not in real.parents:
            raise ToolError(f"{path}: refused, it leads outside the workspace through a symbolic link")
        if write and real.relative_to(self.root).parts[:1] == (".git",):
            raise ToolError(f"{path}: refused, .git belongs to the repository, not to the task")
        return real

    def _rel(self, real: Path) -> str:
        return real.relative_to(self.root).as_posix() or "."

    # -- the tools -------------------------------------------------------------

    def read_file(self, path: str) -> str:
        real = self.resolve(path)
        if real.is_dir():
            raise ToolError(f"{path} is a directory; list_files shows what is in it")
        if not real.exists():
            raise ToolError(f"{path}: no such file (list_files shows what exists)")
        from aictl.sandbox.safeio import Refused, read_head

        try:  # a regular file only: a FIFO or device left in the worktree must not hang or flood the host
            data, size = read_head(self.root, self._rel(real), limit=READ_LIMIT, deadline=time.monotonic() + 10)
        except Refused as e:
            raise ToolError(f"{path}: {e.reason}") from None
        if b"\x00" in data[:8192]:
            return f"[{self._rel(real)} is a binary file of {size} bytes; not shown]"
        text = data.decode("utf-8", errors="replace")
        if size > READ_LIMIT:
            text += f"\n[truncated: the first {READ_LIMIT} of {size} bytes are shown]"
        return text

    def write_file(self, path: str, content: str) -> str:
        data = content.encode("utf-8")
        if len(data) > WRITE_LIMIT:
            raise ToolError(f"{path}: refused, {len(data)} bytes is more than one write may hold ({WRITE_LIMIT})")
        real = self.resolve(path, write=True)
        if real.is_dir():
            raise ToolError(f"{path} is a directory")
        real.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO the agent made must not hang the host (ENXIO without a reader); regular files only.
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
        with open(fd, "wb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ToolError(f"{path}: refused, it is not a regular file")
            f.truncate(0)
            f.write(data)
        return f"wrote {len(data)} bytes to {self._rel(real)}"

    def list_files(self, path: str = ".", pattern: str | None = None) -> str:
        real = self.resolve(path)
        if not real.exists():
            raise ToolError(f"{path}: no such directory")
        if not real.is_dir():
            return self._rel(real)
        found: list[str] = []
        total = 0
        for top, dirs, files in os.walk(real):  # never follows symlinked directories
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for name in files:
                if name == ".git":
                    continue
                rel = (Path(top) / name).relative_to(self.root).as_posix()
                if pattern and not (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern)):
                    continue
                total += 1
                if len(found) < LIST_LIMIT:
                    found.append(rel)
        if not found:
            return "(no files)" if not pattern else f"(no files match {pattern!r})"
        found.sort()
        if total > len(found):
            found.append(f"[{total - len(found)} more not shown; narrow it with path or pattern]")
        return "\n".join(found)

    def run_command(self, command: str) -> ToolOutcome:
        if self.sandbox is None or self.spec is None:
            raise ToolError("run_command is not available: this run has no sandbox")
        timeout = min(self.command_timeout_s, self.spec.timeout_s)
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
        if timeout <= 0:
            raise ToolError("no time is left in this run for a command")
        spec = self.spec.model_copy(update={"timeout_s": timeout})
        res = self.sandbox.run(
            ["/bin/sh", "-c", command],
            workdir=self.root,
            spec=spec,
            on_output=self.on_output,
            cancel=self.cancel,
            labels=self.labels,
        )
        self.sandbox_settings = dict(res.settings or {})
        if res.start_error:
            raise SandboxUnavailable(res.start_error)
        if res.timed_out:
            head = f"timed out after {timeout:g}s and was killed"
        elif res.cancelled:
            head = "cancelled"
        else:
            head = f"exit code: {res.exit_code}"
        parts = [head]
        if res.stdout:
            parts.append("[stdout]\n" + clip(res.stdout.rstrip("\n")))
        if res.stderr:
            parts.append("[stderr]\n" + clip(res.stderr.rstrip("\n")))
        return ToolOutcome(res.ok, "\n".join(parts))


def _arg(args: dict[str, Any], key: str, *, default: Any = ..., allow_empty: bool = False) -> Any:
    if key not in args or args[key] is None:
        if default is ...:
            raise ToolError(f"missing argument {key!r}")
        return default
    value = args[key]
    if not isinstance(value, str):
        raise ToolError(f"argument {key!r} must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ToolError(f"argument {key!r} may not be empty")
    return value


__all__ = [
    "SHORT_NAMES",
    "SPECS",
    "TOOL_NAMES",
    "ApprovalNeeded",
    "SandboxUnavailable",
    "ToolError",
    "ToolOutcome",
    "ToolSpec",
    "WorkspaceTools",
    "clip",
]
