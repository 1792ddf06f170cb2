"""The run's decision socket for Claude Code's PreToolUse hook: each tool call decided by the pinned policy.

    with HookServer(ctx.run_policy.decide, workdir) as hooks:
        argv += ["--settings", hooks.settings_json()]   # PreToolUse -> python -I -S pretooluse.py SOCKET

One Unix socket in a private (0700) temporary directory, served by a thread of the
process running the connector (the executor), for as long as the CLI runs. Claude Code
starts the hook client (pretooluse.py) for every tool call; the client sends the hook's
JSON here and prints what comes back. Here the call becomes policy actions
(hookactions.py), with paths relative to the workspace the server was given (never the
cwd the hook claims). Each action goes to `decide` (the run's RunPolicy, which writes
the decision record), the first refusal ends the check, and its rule and reason are
what the model is told. Claude Code and Codex (>= 0.124) speak the same hook JSON. A call
the policy wants a person to approve is refused for now and kept (`pending_approval`): the
connector puts it on its result, and the executor parks the task until `aictl task approve`
grants that action to the next attempt.

The request is untrusted (it comes from a process next to the agent): it is size-capped,
read with a timeout, and anything malformed is answered with a deny.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aictl.agents.connectors import pretooluse
from aictl.agents.connectors.hookactions import actions_for

# Claude Code kills a hook after this many seconds; the client gives up earlier and denies on its own.
HOOK_TIMEOUT_S = 60
# A request must arrive whole within this (total, not per read): a client cannot hold the line by trickling.
READ_TIMEOUT_S = 5.0
# Claude's own bookkeeping: they touch no file, command or host (a subagent's calls are hooked one by one).
NO_RESOURCE_TOOLS = frozenset({"TodoWrite", "Task", "Agent", "ToolSearch", "ExitPlanMode", "TaskOutput", "KillShell"})
READ_TOOLS = {"Read": "file_path"}
WRITE_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}
SEARCH_TOOLS = ("Grep", "Glob", "LS")


Decide = Callable[..., Any]  # RunPolicy.decide: (action, **resource) -> ActionVerdict


def judge(
    decide: Decide, request: Any, workdir: Path, on_approval: Callable[[dict[str, Any]], None] | None = None
) -> tuple[str, str]:
    """("allow" | "deny", reason) for one hook request; every action asked is recorded by `decide`.

    A require_approval is refused too (nobody can approve inside a headless run); `on_approval`
    hears what the task will wait for (ConnectorResult.pending_approval's shape)."""
    if not isinstance(request, dict) or not isinstance(request.get("tool_name"), str):
        return "deny", "aictl: not a PreToolUse request"
    for act in actions_for(request["tool_name"], request.get("tool_input"), workdir):
        verdict = decide(act.action, **act.resource)
        if verdict.allowed:
            continue
        if verdict.effect == "require_approval" and on_approval is not None:
            target = next(iter(act.resource.values()), None)
            on_approval(
                {
                    "action": act.action,
                    "target": target,
                    "rule": verdict.rule,
                    "reason": verdict.reason,
                    "decision_id": verdict.decision_id,
                }
            )
        ref = f" (aictl decision {verdict.decision_id[:12]})" if verdict.decision_id else ""
        return "deny", f"aictl {verdict.reason}{ref}"
    return "allow", ""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(READ_TIMEOUT_S)
        try:
            data = _read_all(sock, pretooluse.MAX_INPUT_BYTES)
            try:
                request = json.loads(data)
            except ValueError:
                request = None
            decision, reason = judge(self.server.decide, request, self.server.workdir, self.server.note_approval)
        except OSError:
            return  # the client went away (or stalled): it denies on its own
        except Exception as e:  # noqa: BLE001 - the store failed under decide: deny, never let it through
            decision, reason = "deny", f"aictl: the policy decision failed ({type(e).__name__}): denied"
        try:
            sock.sendall(f"{decision}\n{reason}".encode())
        except OSError:
            pass


def _read_all(sock: socket.socket, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the hook request did not arrive in time")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return b""  # judged malformed: denied
        chunks.append(chunk)


class _Server(socketserver.UnixStreamServer):
    """One request at a time, on the server's one thread: a decision takes ~1.5 ms, and a process next to the
    agent that opens connections by the thousand gets no thread per connection. A client that stalls holds
    the line for READ_TIMEOUT_S at most, and only its own agent's calls wait (and deny on their timeout)."""

    def __init__(self, path: str, decide: Decide, workdir: Path):
        self.decide = decide
        self.workdir = workdir
        self.pending: dict[str, Any] | None = None
        self._lock = threading.Lock()
        super().__init__(path, _Handler)

    def note_approval(self, pending: dict[str, Any]) -> None:
        with self._lock:
            if self.pending is None:  # the first one the run met is what the task waits for
                self.pending = pending


class HookServer:
    """The decision socket for one Claude Code run; a context manager that starts and stops its thread."""

    def __init__(self, decide: Decide, workdir: Path, *, in_container: bool = False):
        """`in_container`: the CLI runs in the docker backend, where neither this interpreter nor the client's
        file exist: the client is copied beside the socket, the folder is lent to the container's user and
        mounted at the same path (`for_run`), and the container's python3 runs it. Left on the host, the
        hook's command would not exist inside, and Claude Code takes a hook that cannot run as no objection."""
        self.workdir = Path(workdir)
        self.in_container = in_container
        self._dir = tempfile.mkdtemp(prefix="aictl-hook-", dir=_short_tmp())
        self.path = os.path.join(self._dir, "decide.sock")
        self._server = _Server(self.path, decide, self.workdir)
        os.chmod(self.path, 0o600)
        self.client = pretooluse.__file__
        if in_container:
            from aictl.sandbox.ownership import sandbox_user

            self.client = shutil.copy(pretooluse.__file__, os.path.join(self._dir, "pretooluse.py"))
            uid, gid = sandbox_user()
            if (uid, gid) != (os.getuid(), os.getgid()):  # aictl runs as root, the container as nobody
                for path in (self._dir, self.path, self.client):
                    os.chown(path, uid, gid)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="aictl-hook-server"
        )

    @classmethod
    def for_run(cls, ctx: Any) -> HookServer:
        """The run's hook server, started; inside docker, its folder is added to the container's mounts."""
        hooks = cls(ctx.run_policy.decide, ctx.workdir, in_container=ctx.spec.backend == "docker")
        if hooks.in_container:
            from aictl.sandbox.base import BindMount

            mount = BindMount(source=hooks._dir, target=hooks._dir, read_only=True)
            ctx.spec = ctx.spec.model_copy(update={"mounts": [*ctx.spec.mounts, mount]})
        hooks.start()
        return hooks

    @property
    def pending_approval(self) -> dict[str, Any] | None:
        """The first call the policy wanted a person to approve (refused for now), or None."""
        return self._server.pending

    def __enter__(self) -> HookServer:
        self.start()
        return self

    def start(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def command(self) -> str:
        """The hook's command line (Claude Code runs it through a shell)."""
        python = "python3" if self.in_container else sys.executable
        return shlex.join([python, "-I", "-S", self.client, self.path])

    def settings(self) -> dict[str, Any]:
        hook = {"type": "command", "command": self.command(), "timeout": HOOK_TIMEOUT_S}
        return {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [hook]}]}}

    def settings_json(self) -> str:
        return json.dumps(self.settings())


def _short_tmp() -> str | None:
    """A Unix socket path has ~100 bytes: a long TMPDIR falls back to /tmp."""
    base = tempfile.gettempdir()
    return None if len(base) < 60 else "/tmp"


__all__ = ["HOOK_TIMEOUT_S", "HookServer", "judge"]
