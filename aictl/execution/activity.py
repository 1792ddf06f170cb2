"""A running agent's events: streamed to the executor's listener, and its latest action kept on the task.

`tasks.activity` holds one line (the latest tool call or message) for `task watch`.
It is written from a thread of its own over its own store connection (connectors
call `on_event` from their reader threads), at most once a second, and only while
(owner, epoch) still holds the lease. It is not an audit event: like a heartbeat,
it changes no state a reader must be able to replay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aictl.agents.context import activity_line

THROTTLE_S = 1.0


class ActivityWriter:
    def __init__(
        self,
        open_store: Callable[[], Any],
        task_id: int,
        owner: str,
        epoch: int,
        emit: Callable[[dict[str, Any]], None],
        *,
        interval: float = THROTTLE_S,
    ):
        self._open_store = open_store
        self.task_id, self.owner, self.epoch = task_id, owner, epoch
        self._emit = emit
        self.interval = interval
        self._lock = threading.Lock()
        self._latest: str | None = None
        self._written: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0

    def on_event(self, event: dict[str, Any]) -> None:
        """The connector's ctx.on_event: forward, and remember the latest line."""
        self._emit({"type": "agent", "task_id": self.task_id, "event": event})
        line = activity_line(event)
        if line is None:
            return
        with self._lock:
            self._latest = line
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"activity-{self.task_id}", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        store = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                with self._lock:
                    line = self._latest
                if line != self._written:
                    store = store or self._open_store()
                    self._write(store, line)
                if self._stop.is_set():
                    return
                self._stop.wait(self.interval)  # the throttle: at most one write per interval
        finally:
            if store is not None:
                store.close()

    def _write(self, store: Any, line: str | None) -> None:
        try:
            from aictl.tasks.fence import write_activity

            with store.write() as tx:
                write_activity(tx, self.task_id, self.owner, self.epoch, line)
            self._written = line
            self.writes += 1
        except Exception:  # noqa: BLE001 - activity is best effort; the run's result does not depend on it
            pass

    def finish(self) -> None:
        """Write the last line (if it changed) and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


__all__ = ["ActivityWriter"]
