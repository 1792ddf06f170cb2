"""Keep a lease alive while a task runs, and notice when it is lost or the task is cancelled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from aictl.domain.errors import AictlError


class LeaseKeeper(threading.Thread):
    """Heartbeats the lease from its own store connection (SQLite connections stay in their thread).

    Between heartbeats it polls the task's status, so `aictl task cancel` stops a run
    within about a second. When the lease is lost or the task leaves its leased
    state, it sets `stop` (the sandbox kills the run) and records why.
    """

    def __init__(
        self,
        open_service: Callable[[], Any],
        task_id: int,
        owner: str,
        epoch: int,
        *,
        ttl: float,
        interval: float,
        poll: float = 1.0,
    ):
        super().__init__(name=f"lease-keeper-{task_id}", daemon=True)
        self.open_service = open_service
        self.task_id, self.owner, self.epoch = task_id, owner, epoch
        self.ttl, self.interval, self.poll = ttl, interval, min(poll, interval)
        self.stop = threading.Event()  # set: the run must stop (lease lost / cancelled)
        self._done = threading.Event()  # set by the executor: we are finished, exit quietly
        self.lost_reason: str | None = None
        self.cancelled = False
        self.store_error: str | None = None  # the last store outage, while it lasts

    def run(self) -> None:
        from aictl.store.base import is_store_error

        svc = None
        # The claim (or the adopting heartbeat) just renewed the lease: it runs until last_renewal + ttl.
        last_renewal = time.monotonic()
        next_beat = last_renewal + self.interval
        try:
            while not self._done.wait(self.poll):
                try:
                    if svc is None:
                        svc = self.open_service()
                    status = svc.store_status(self.task_id)
                    if status not in ("claimed", "running"):
                        self.cancelled = status == "cancelled"
                        self._lose(f"task {self.task_id} is now {status}")
                        return
                    if time.monotonic() >= next_beat:
                        svc.heartbeat(self.task_id, self.owner, self.epoch, ttl=self.ttl)
                        last_renewal = time.monotonic()
                        next_beat = last_renewal + self.interval
                    self.store_error = None
                except Exception as e:
                    if not is_store_error(e):
                        if isinstance(e, AictlError):
                            self._lose(e.message)
                            return
                        raise
                    # The store is unreachable: the lease is still ours until it expires, so keep the
                    # run going and retry; once it may have expired, another worker may own the task.
                    self.store_error = str(getattr(e, "message", e))
                    svc = self._close(svc)
                    if time.monotonic() - last_renewal >= self.ttl:
                        self._lose(
                            f"could not reach the store to renew the lease for {self.ttl:g}s "
                            f"(it may now belong to another worker): {self.store_error}"
                        )
                        return
        finally:
            self._close(svc)

    @staticmethod
    def _close(svc: Any) -> None:
        if svc is not None:
            try:
                svc.store.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass
        return None

    def _lose(self, reason: str) -> None:
        if not self._done.is_set():
            self.lost_reason = reason
            self.stop.set()

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=10)
