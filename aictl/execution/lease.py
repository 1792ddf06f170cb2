"""Keep a lease alive while a task runs, and notice when it is lost or the task is cancelled."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from aictl.domain.errors import AictlError


class LeaseKeeper(threading.Thread):
    """Heartbeats the lease from its own store connection (SQLite connections stay in their thread).

    Between heartbeats it polls the task's status, so `aictl task cancel` stops a run
    within about a second. When the lease is lost or the task leaves its leased
    state, it sets `stop` (the sandbox kills the run) and records why.
    """

    def __init__(self, open_service: Callable[[], Any], task_id: int, owner: str, epoch: int, *,
                 ttl: float, interval: float, poll: float = 1.0):
        super().__init__(name=f"lease-keeper-{task_id}", daemon=True)
        self.open_service = open_service
        self.task_id, self.owner, self.epoch = task_id, owner, epoch
        self.ttl, self.interval, self.poll = ttl, interval, min(poll, interval)
        self.stop = threading.Event()  # set: the run must stop (lease lost / cancelled)
        self._done = threading.Event()  # set by the executor: we are finished, exit quietly
        self.lost_reason: str | None = None
        self.cancelled = False

    def run(self) -> None:
        svc = self.open_service()
        try:
            next_beat = time.monotonic() + self.interval
            while not self._done.wait(self.poll):
                try:
                    status = svc.store_status(self.task_id)
                    if status not in ("claimed", "running"):
                        self.cancelled = status == "cancelled"
                        self._lose(f"task {self.task_id} is now {status}")
                        return
                    if time.monotonic() >= next_beat:
                        svc.heartbeat(self.task_id, self.owner, self.epoch, ttl=self.ttl)
                        next_beat = time.monotonic() + self.interval
                except AictlError as e:
                    self._lose(e.message)
                    return
        finally:
            svc.store.close()

    def _lose(self, reason: str) -> None:
        if not self._done.is_set():
            self.lost_reason = reason
            self.stop.set()

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=10)
