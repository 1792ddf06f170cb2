"""The daemon's log: structlog JSON lines into a rotating file, and reading it back (`aictl daemon logs -f`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aictl.daemon.files import DaemonPaths

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


class RotatingLogStream:
    """A file-like sink for structlog's JSON lines that rotates like logging's RotatingFileHandler (it is one)."""

    def __init__(self, path: Path, *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS, tee: Any = None):
        import logging
        import logging.handlers

        path.parent.mkdir(parents=True, exist_ok=True)
        self._logging = logging
        self.handler = logging.handlers.RotatingFileHandler(
            str(path), maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.tee = tee

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line:
                self.handler.handle(self._logging.makeLogRecord({"msg": line, "levelno": 20, "levelname": "INFO"}))
                if self.tee is not None:
                    try:
                        self.tee.write(line + "\n")
                        self.tee.flush()
                    except (OSError, ValueError):
                        pass
        return len(text)

    def flush(self) -> None:
        pass  # the handler flushes every record

    def close(self) -> None:
        self.handler.close()


def setup_logging(paths: DaemonPaths, settings: Any, *, tee_stderr: bool) -> RotatingLogStream:
    """JSON lines into daemon.log (rotated); info level unless log_level was set explicitly."""
    import threading

    from aictl import logging as alog

    stream = RotatingLogStream(paths.log, tee=sys.stderr if tee_stderr else None)
    explicit = settings.sources.get("log_level", "default") != "default"
    alog.configure(level=settings.log_level if explicit else "info", json=True, stream=stream)
    log = alog.get_logger("aictl.daemon")

    def excepthook(args: Any) -> None:  # a thread that dies says why in the log, not on a lost stderr
        import traceback

        log.error(
            "thread crashed",
            thread=args.thread.name if args.thread else None,
            error=f"{args.exc_type.__name__}: {args.exc_value}",
            traceback="".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)),
        )

    threading.excepthook = excepthook
    return stream


def iter_log_lines(
    paths: DaemonPaths, *, lines: int, follow: bool, stop: Callable[[], bool] = lambda: False, poll: float = 0.2
) -> Iterator[str]:
    """The last `lines` lines of daemon.log, then (follow) each new one, across rotations."""
    from collections import deque

    state: dict[str, Any] = {"f": None, "inode": None}

    def reopen() -> bool:
        if state["f"] is not None:
            state["f"].close()
            state["f"] = None
        try:
            state["f"] = open(paths.log, encoding="utf-8", errors="replace")  # noqa: SIM115 - kept open across yields
        except FileNotFoundError:
            return False
        state["inode"] = os.fstat(state["f"].fileno()).st_ino
        return True

    try:
        if reopen():
            yield from deque((line.rstrip("\n") for line in state["f"]), maxlen=max(lines, 0))
        if not follow:
            return
        partial = ""
        while not stop():
            chunk = state["f"].read() if state["f"] is not None else ""
            if chunk:
                partial += chunk
                *done, partial = partial.split("\n")
                yield from done
                continue
            try:
                st = os.stat(paths.log)
            except FileNotFoundError:
                st = None
            f = state["f"]
            if st is not None and (f is None or st.st_ino != state["inode"] or st.st_size < f.tell()):
                if partial:  # the old file is read to its end: what is left was its last line
                    yield partial
                    partial = ""
                reopen()  # rotated (or first created): the new file from its top
                continue
            time.sleep(poll)
    finally:
        if state["f"] is not None:
            state["f"].close()
