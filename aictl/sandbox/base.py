"""What every sandbox backend takes and returns, and the output plumbing they share.

A backend runs one process for an agent inside a task's workspace directory
(`get_sandbox` in backends.py picks one by name):

    box = get_sandbox("docker")
    result = box.run(["sh", "-c", "make test"], workdir=Path(ws), spec=SandboxSpec(backend="docker"),
                     on_output=lambda stream, line: print(stream, line), cancel=threading.Event())

`run()` does not raise for anything the process does (non-zero exit, timeout,
cancel, OOM) nor when the sandbox itself cannot start (engine down, image
missing): those land in the RunResult, `start_error` being the one a caller
may retry. It raises only for caller mistakes (a workspace that does not exist).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from aictl.domain.errors import AictlError, UsageError

OutputCallback = Callable[[str, str], None]

# Captured output keeps only the end of each stream: the end is where the error is.
TAIL_BYTES = 1024 * 1024
# A "line" longer than this is delivered to on_output in pieces, so one endless line cannot exhaust memory.
MAX_LINE_BYTES = 64 * 1024
# After SIGTERM (local) the process group gets this long to exit before SIGKILL.
KILL_GRACE_S = 2.0
# Exit code reported when the command does not exist (the shell's convention).
COMMAND_NOT_FOUND = 127


class SandboxError(AictlError):
    """The sandbox tooling itself failed (image build, engine unreachable for a CLI command)."""

    code = "sandbox_error"


class BindMount(BaseModel):
    """A host path shown inside a docker run (the agent's state dir, a worktree's git metadata)."""

    source: str = Field(pattern=r"^/")
    target: str = Field(pattern=r"^/[^:]+$")
    read_only: bool = True


class SandboxSpec(BaseModel):
    """What the policy/config asks for. Limits apply to the docker backend; local enforces only the timeout."""

    backend: Literal["local", "docker"] = "local"
    image: str = "aictl-sandbox:latest"
    network: bool = False
    cpus: float = Field(1.0, gt=0)
    memory_mb: int = Field(1024, ge=6, description="docker refuses less than 6 MB")
    pids: int = Field(256, ge=1)
    timeout_s: float = Field(600.0, gt=0)
    mounts: list[BindMount] = Field(default_factory=list, description="docker: more host paths inside the run")
    egress: list[str] | None = Field(
        None, description="docker: host:port pairs reachable through a per-run egress proxy; None = no proxy"
    )
    # Told of every connection attempt through the egress proxy (decision records); not part of the spec's data.
    on_egress: Callable[[Any], None] | None = Field(None, exclude=True, repr=False)
    # Asked (host, port) for a destination not in `egress` (the run's policy); None: the list alone decides.
    egress_decide: Callable[[str, int], bool] | None = Field(None, exclude=True, repr=False)
    env: dict[str, str] = Field(default_factory=dict, description="extra env for the process; secrets go here")
    mount: str = Field("/workspace", pattern=r"^/[^:]+$", description="where the workspace appears inside docker")
    masked_paths: list[str] = Field(
        default_factory=list,
        description="workspace files the policy forbids reading: docker mounts an empty read-only file over each",
    )


class RunResult(BaseModel):
    backend: str
    sandboxed: bool = Field(description="false for local: the process runs as the invoking user with full access")
    exit_code: int | None = Field(description="None when it never started; killed by signal N -> 128+N")
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False
    start_error: str | None = Field(None, description="the sandbox could not start (engine down, image missing): retry")
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    settings: dict = Field(default_factory=dict, description="effective isolation settings, for evidence")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.cancelled or self.start_error)


class Sandbox(Protocol):
    name: str

    def run(
        self,
        argv: list[str],
        *,
        workdir: Path,
        spec: SandboxSpec,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunResult: ...


def check_run_args(argv: list[str], workdir: Path) -> Path:
    if not argv or not all(isinstance(a, str) for a in argv):
        raise UsageError("a sandbox run needs a command: a non-empty list of strings")
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise UsageError(f"workspace {workdir} is not a directory")
    return workdir


class Tail:
    """The last `limit` bytes written, and how many were dropped before them."""

    def __init__(self, limit: int = TAIL_BYTES):
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self.dropped = 0

    def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        while self._size > self.limit:
            first = self._chunks[0]
            excess = self._size - self.limit
            if len(first) <= excess:
                self._chunks.popleft()
                self._size -= len(first)
                self.dropped += len(first)
            else:
                self._chunks[0] = first[excess:]
                self._size -= excess
                self.dropped += excess

    def text(self) -> str:
        body = b"".join(self._chunks).decode("utf-8", errors="replace")
        if self.dropped:
            return f"[aictl: output truncated, {self.dropped} earlier bytes dropped]\n" + body
        return body


class OutputSink:
    """Collects both streams into tails and hands complete lines to on_output, one call at a time.

    Fed from reader threads; a callback that raises is switched off (so the
    process never blocks on a full pipe) and the failure is noted in stderr.
    """

    def __init__(self, on_output: OutputCallback | None):
        self.on_output = on_output
        self.tails = {"stdout": Tail(), "stderr": Tail()}
        self._partial = {"stdout": b"", "stderr": b""}
        self._lock = threading.Lock()
        self.callback_error: str | None = None

    def feed(self, stream: str, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self.tails[stream].write(data)
            if self.on_output is None:
                return
            buf = self._partial[stream] + data
            *lines, rest = buf.split(b"\n")
            while len(rest) > MAX_LINE_BYTES:
                lines.append(rest[:MAX_LINE_BYTES])
                rest = rest[MAX_LINE_BYTES:]
            self._partial[stream] = rest
            for line in lines:
                self._emit(stream, line)

    def close(self, stream: str) -> None:
        """The stream ended: deliver a last line that had no newline."""
        with self._lock:
            rest, self._partial[stream] = self._partial[stream], b""
            if rest and self.on_output is not None:
                self._emit(stream, rest)

    def note(self, stream: str, message: str) -> None:
        """A line from aictl itself (OOM, kill), captured but not streamed as the process's output."""
        with self._lock:
            self.tails[stream].write(f"[aictl: {message}]\n".encode())

    def _emit(self, stream: str, line: bytes) -> None:
        if self.on_output is None:
            return
        try:
            self.on_output(stream, line.decode("utf-8", errors="replace"))
        except Exception as e:  # noqa: BLE001 - a broken consumer must not hang the process
            self.on_output = None
            self.callback_error = f"on_output raised {type(e).__name__}: {e}; streaming stopped"

    def texts(self) -> tuple[str, str]:
        if self.callback_error:
            self.note("stderr", self.callback_error)
        return self.tails["stdout"].text(), self.tails["stderr"].text()
