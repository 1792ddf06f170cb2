"""Process control for the daemon: its files, the pid file under a lock, detaching, signals, logs.

Everything lives in ``<home>/daemon/``:

    daemon.lock   flock held for the daemon's whole life (freed by the kernel, even on SIGKILL)
    daemon.pid    the pid, for humans and `systemd PIDFile=`; trusted only while the lock is held
    status.json   what the daemon is doing now (rewritten atomically), read by `aictl daemon status`
    daemon.log    JSON lines, rotated (daemon.log.1 … .5; see logs.py)
    daemon.out    the detached process's stdout/stderr: only what bypasses the logger (a crash)

A pid file whose lock is free is stale: its daemon died (SIGKILL, power loss) and the
next start takes over and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aictl.daemon.files import DaemonPaths, read_json, read_status, write_status
from aictl.domain.errors import AictlError, Conflict

# The daemon's files moved to files.py (loop.py and logs.py need them without the process code); callers
# still import them from here.
__all__ = [
    "DAEMON_UMASK",
    "READY_TIMEOUT_S",
    "DaemonPaths",
    "LocalDaemon",
    "PidFile",
    "detach",
    "install_signals",
    "local_daemon",
    "lock_is_held",
    "pid_alive",
    "read_pid",
    "read_status",
    "serve",
    "stop_signal",
    "write_status",
]

DAEMON_UMASK = 0o027  # group may read what the daemon writes; others nothing
READY_TIMEOUT_S = 60.0


def _file_lock(path: Path) -> Any:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    # Hard flock only: a soft (file-exists) lock would outlive a SIGKILLed daemon.
    return FileLock(str(path), timeout=0, thread_local=False, fallback_to_soft=False, preserve_lock_file=True)


def read_pid(paths: DaemonPaths) -> int | None:
    try:
        return int(paths.pid.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_is_held(paths: DaemonPaths) -> bool:
    """True while some process holds the daemon lock (probe: try to take it, give it back at once)."""
    from filelock import Timeout

    if not paths.lock.exists():
        return False
    lock = _file_lock(paths.lock)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


@dataclass
class LocalDaemon:
    """What this host knows about the project's daemon without asking the store."""

    running: bool
    pid: int | None
    stale_pid_file: bool  # a pid file is there, but nothing holds the lock


def local_daemon(paths: DaemonPaths) -> LocalDaemon:
    pid = read_pid(paths)
    held = lock_is_held(paths)
    return LocalDaemon(running=held, pid=pid if held else None, stale_pid_file=paths.pid.exists() and not held)


class PidFile:
    """The daemon's claim on the project for this host: flock on daemon.lock, pid in daemon.pid."""

    def __init__(self, paths: DaemonPaths):
        self.paths = paths
        self._lock = _file_lock(paths.lock)
        self.stale: dict[str, Any] | None = None  # what we took over, if anything

    def acquire(self) -> PidFile:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            pid = read_pid(self.paths)
            raise Conflict(
                f"a daemon is already running for this project (pid {pid if pid else 'unknown'},"
                f" lock {self.paths.lock})",
                hint="see it with: aictl daemon status; stop it with: aictl daemon stop",
                details={"pid": pid},
            ) from None
        old = read_pid(self.paths)
        if old is not None and old != os.getpid():
            self.stale = {"pid": old, "pid_alive": pid_alive(old), "previous": read_json(self.paths.status)}
        tmp = self.paths.pid.with_suffix(".pid.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.paths.pid)
        return self

    def release(self) -> None:
        try:
            if read_pid(self.paths) == os.getpid():
                self.paths.pid.unlink()
        except OSError:
            pass
        self._lock.release(force=True)


# -- detaching ----------------------------------------------------------------------------


def detach(
    paths: DaemonPaths,
    body: Callable[[Callable[[dict[str, Any]], None]], int],
    *,
    ready_timeout: float = READY_TIMEOUT_S,
) -> dict[str, Any]:
    """Run `body(ready)` in a detached grandchild; return the message it passes to `ready`.

    Classic double fork: the child calls setsid (new session, no controlling terminal)
    and forks again, so the daemon is not a session leader and can never acquire a
    terminal; the middle process exits at once and is reaped here. The daemon keeps the
    project as its working directory (its paths are relative to it), sets a fixed umask,
    and points stdin at /dev/null and stdout/stderr at daemon.out. It reports through a
    pipe once it holds the pid lock (or why it could not start).
    """
    paths.dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        os.waitpid(pid, 0)
        return _read_ready(r, ready_timeout, paths)
    code = 1
    try:
        os.close(r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.umask(DAEMON_UMASK)
        devnull = os.open(os.devnull, os.O_RDONLY)
        out = os.open(str(paths.out), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(devnull)
        os.close(out)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the daemon installs its own handlers
        sent = {"done": False}

        def ready(msg: dict[str, Any]) -> None:
            if sent["done"]:
                return
            sent["done"] = True
            try:
                os.write(w, (json.dumps(msg, default=str) + "\n").encode())
                os.close(w)
            except OSError:
                pass  # the starter gave up waiting; carry on

        try:
            code = body(ready)
        except AictlError as e:
            ready({"ok": False, "error": e.to_dict()})
            code = e.exit_code
        except BaseException as e:  # noqa: BLE001 - the starter must hear about it; then exit
            import traceback

            traceback.print_exc()
            ready({"ok": False, "error": {"code": "error", "message": f"{type(e).__name__}: {e}", "exit_code": 1}})
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _read_ready(fd: int, timeout: float, paths: DaemonPaths) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return {
                    "ok": False,
                    "error": {
                        "code": "error",
                        "exit_code": 1,
                        "message": f"the daemon did not report within {timeout:g}s",
                        "hint": f"see {paths.log} and {paths.out}",
                    },
                }
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    if not buf.strip():
        return {
            "ok": False,
            "error": {
                "code": "error",
                "exit_code": 1,
                "message": "the daemon exited before it was ready",
                "hint": f"see {paths.out} and {paths.log}",
            },
        }
    return json.loads(buf.split(b"\n", 1)[0])


# -- signals ----------------------------------------------------------------------------


def install_signals(on_stop: Callable[[bool], None], on_reload: Callable[[], None]) -> None:
    """SIGTERM/SIGINT: drain (a second one: stop now). SIGQUIT: stop now. SIGHUP: reload the policy."""
    seen = {"n": 0}

    def drain(signum: int, frame: Any) -> None:
        seen["n"] += 1
        on_stop(seen["n"] > 1)

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    signal.signal(signal.SIGQUIT, lambda s, f: on_stop(True))
    signal.signal(signal.SIGHUP, lambda s, f: on_reload())


def stop_signal(now: bool) -> int:
    return signal.SIGQUIT if now else signal.SIGTERM


# -- one daemon's life -------------------------------------------------------------------


def serve(
    settings: Any, options: Any, paths: DaemonPaths, *, foreground: bool, ready: Callable[[dict[str, Any]], None]
) -> int:
    """Take the pid lock, set up logs, prepare, report ready, run until stopped. Foreground or detached."""
    # Here, not at the top: `aictl daemon status|stop` import this module and need none of the loop's services.
    from aictl.daemon.logs import setup_logging
    from aictl.daemon.loop import Daemon
    from aictl.logging import get_logger

    pidfile = PidFile(paths).acquire()
    stack = contextlib.ExitStack()
    try:
        setup_logging(paths, settings, tee_stderr=foreground)
        log = get_logger("aictl.daemon")
        daemon = Daemon(settings, options, status_path=paths.status)
        if pidfile.stale is not None:
            previous = pidfile.stale.get("previous") or {}
            daemon.previous_daemon = previous.get("daemon_id")
            log.warning(
                "stale pid file: its daemon is gone; taking over",
                pid=pidfile.stale["pid"],
                pid_alive=pidfile.stale["pid_alive"],
                previous_daemon=daemon.previous_daemon,
            )
        took_over = pidfile.stale and {"pid": pidfile.stale["pid"], "daemon_id": daemon.previous_daemon}
        daemon.prepare()  # registers this daemon and signs the dead one off (previous_daemon is cleared)
        metrics = _metrics_server(settings, options)
        if metrics is not None:
            stack.callback(metrics[0].shutdown)
        console = None
        if getattr(options, "console_port", None) is not None:
            from aictl.console.server import serve_in_thread

            stop_console, console = serve_in_thread(settings, host=options.console_host, port=options.console_port)
            stack.callback(stop_console)
        install_signals(lambda now: daemon.request_stop(now=now), daemon.request_reload)
        write_status(paths, daemon.snapshot())  # who holds the pid file, even if we die in the next instant
        store = daemon.snapshot()["store"]
        ready(
            {
                "ok": True,
                "pid": os.getpid(),
                "daemon_id": daemon.id,
                "workers": len(daemon.workers),
                "log": str(paths.log),
                "took_over": took_over,
                "store": {"reachable": store["reachable"], "error": store["error"]},
                "metrics": None if metrics is None else f"http://{options.metrics_host}:{metrics[1]}/metrics",
                "console": console,
            }
        )
        daemon.run()
        if daemon.fatal_error is not None:  # logged where it happened; the exit code says it to supervisors
            return daemon.fatal_error.exit_code
        return 0
    finally:
        stack.close()
        pidfile.release()


def _metrics_server(settings: Any, options: Any) -> tuple[Any, int] | None:
    """`--metrics-port`: the console's Prometheus collector on its own loopback port, for this daemon's life."""
    if getattr(options, "metrics_port", None) is None:
        return None
    from aictl.console.metrics import serve_metrics
    from aictl.domain.errors import UsageError

    try:
        return serve_metrics(settings.resolved_database_url, settings.home, options.metrics_host, options.metrics_port)
    except OSError as e:
        raise UsageError(
            f"cannot serve metrics on {options.metrics_host}:{options.metrics_port}: {e.strerror}",
            hint="pick another --metrics-port",
        ) from None
