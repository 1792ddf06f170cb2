"""The local backend: a plain child process in the workspace. NOT a sandbox.

What it does promise: the working directory, stdin from /dev/null, a clean
environment (nothing from the parent but PATH, so the parent's API keys do not
leak; HOME and TMPDIR are fresh per-run directories, removed afterwards), a
hard timeout, and that the whole process group dies on timeout, cancel, or
when the main process exits and leaves children behind. If aictl itself is
SIGKILLed, the child gets SIGKILL too (PR_SET_PDEATHSIG), and the group it
recorded (runs.py) is killed by whoever reaps or reclaims the task. What it does not: the
process runs as the invoking user and can read and write anything that user
can, use the network, and escape the group with setsid. Use docker for that.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from aictl.sandbox.base import (
    COMMAND_NOT_FOUND,
    KILL_GRACE_S,
    OutputCallback,
    OutputSink,
    RunResult,
    SandboxSpec,
    check_run_args,
)
from aictl.sandbox.nodump import hide_environment
from aictl.sandbox.runs import forget_run, record_run

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# How often the wait loop looks at the cancel event and the deadline.
POLL_S = 0.05
# Readers still blocked this long after the group is dead mean an escaped process holds the pipe.
READER_JOIN_S = 2.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def clean_env(spec: SandboxSpec, home: Path, tmp: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
    }
    env.update(spec.env)
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when the thread that started it dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child between fork and exec only calls it
    parent = os.getpid()

    def prepare() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(137)

    return prepare


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the id: not ours to signal
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_code(returncode: int) -> int:
    """Killed by signal N -> 128+N, as a shell and docker report it."""
    return 128 - returncode if returncode < 0 else returncode


class LocalSandbox:
    name = "local"

    def run(
        self,
        argv: list[str],
        *,
        workdir: Path,
        spec: SandboxSpec,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunResult:
        workdir = check_run_args(argv, workdir)
        settings = {
            "backend": "local",
            "sandboxed": False,
            "network": True,
            "user": f"{os.getuid()}:{os.getgid()}",
            "read_only": False,
            "workdir": str(workdir),
            "timeout_s": spec.timeout_s,
            "env_keys": sorted(clean_env(spec, Path("-"), Path("-"))),
            "isolation": "none: same user, same filesystem, same network as aictl",
        }
        sink = OutputSink(on_output)
        started = time.monotonic()
        hide_environment()  # the command must not read aictl's keys through /proc/$PPID/environ
        run_dir = Path(tempfile.mkdtemp(prefix="aictl-run-"))
        try:
            home, tmp = run_dir / "home", run_dir / "tmp"
            home.mkdir()
            tmp.mkdir()
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=clean_env(spec, home, tmp),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )
            except FileNotFoundError:
                sink.note("stderr", f"command not found: {argv[0]}")
                out, err = sink.texts()
                return RunResult(
                    backend=self.name,
                    sandboxed=False,
                    exit_code=COMMAND_NOT_FOUND,
                    stdout=out,
                    stderr=err,
                    duration_s=time.monotonic() - started,
                    settings=settings,
                )
            except PermissionError as e:
                sink.note("stderr", f"cannot execute {argv[0]}: {e.strerror}")
                out, err = sink.texts()
                return RunResult(
                    backend=self.name,
                    sandboxed=False,
                    exit_code=126,
                    stdout=out,
                    stderr=err,
                    duration_s=time.monotonic() - started,
                    settings=settings,
                )
            record = record_run(workdir, labels, proc.pid)  # so a later epoch's claimer can kill it if we die
            try:
                return self._supervise(proc, spec, sink, cancel, started, settings)
            finally:
                forget_run(record)
                # Also on KeyboardInterrupt in the caller: nothing we started may outlive run().
                if proc.poll() is None or _group_alive(proc.pid):
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _supervise(
        self,
        proc: subprocess.Popen,
        spec: SandboxSpec,
        sink: OutputSink,
        cancel: threading.Event | None,
        started: float,
        settings: dict,
    ) -> RunResult:
        readers = [
            threading.Thread(target=_pump, args=(pipe, name, sink), daemon=True, name=f"aictl-local-{name}")
            for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for t in readers:
            t.start()
        deadline = started + spec.timeout_s
        timed_out = cancelled = False
        while True:
            try:
                proc.wait(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                cancelled = True
            elif time.monotonic() >= deadline:
                timed_out = True
            if timed_out or cancelled:
                self._stop_group(proc)
                sink.note(
                    "stderr",
                    f"{f'timed out after {spec.timeout_s:g}s' if timed_out else 'cancelled'}: process group terminated",
                )
                break
        # The main process is gone; leftovers in its group (background jobs) go with it.
        if _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
        for t in readers:
            t.join(READER_JOIN_S)
        if any(t.is_alive() for t in readers):
            # Closing a pipe under a blocked reader would not wake it; leave the daemon thread to the escapee.
            sink.note("stderr", "output pipes still open after the process group died: a child escaped it (setsid?)")
        else:
            for pipe in (proc.stdout, proc.stderr):
                _close_quietly(pipe)
        out, err = sink.texts()
        return RunResult(
            backend=self.name,
            sandboxed=False,
            exit_code=_exit_code(proc.returncode),
            timed_out=timed_out,
            cancelled=cancelled,
            stdout=out,
            stderr=err,
            duration_s=time.monotonic() - started,
            settings=settings,
        )

    @staticmethod
    def _stop_group(proc: subprocess.Popen) -> None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _pump(pipe: IO[bytes], name: str, sink: OutputSink) -> None:
    try:
        while True:
            data = pipe.read1(65536)  # type: ignore[attr-defined]
            if not data:
                break
            sink.feed(name, data)
    except (OSError, ValueError):  # closed under us after an escape
        pass
    finally:
        sink.close(name)


def _close_quietly(pipe: IO[bytes] | None) -> None:
    try:
        if pipe is not None:
            pipe.close()
    except OSError:
        pass
