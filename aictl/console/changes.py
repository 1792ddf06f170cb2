"""One poller per console asks the store what changed, and wakes the pages' event streams.

"What changed since" is three indexed reads in one read transaction: the audit head (every task
transition, decision, evidence and AI change appends an event), the held tasks' latest activity
(written without an event, like a heartbeat) and the latest move of a workflow run. The poller runs only
while some page is open, every `interval` seconds; a change bumps `version` and sets every
subscriber's asyncio event from the poller's thread. Pages never poll: their stream waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aictl.audit.events import head_id
from aictl.store.base import Store, Tx
from aictl.tasks.queries import held_activity

POLL_S = 0.1  # a change reaches an open page within this plus one render (bench/console.py measures both)


def change_token(tx: Tx) -> tuple[Any, ...]:
    flows = tx.one("SELECT MAX(updated_at) AS at FROM workflow_runs")  # a run's own moves append no event
    return (head_id(tx), tuple(held_activity(tx)), flows["at"] if flows else None)


class ChangeFeed:
    def __init__(self, open_store: Callable[[], Store], *, interval: float = POLL_S):
        self._open_store = open_store
        self.interval = interval
        self.version = 0
        self._token: tuple[Any, ...] | None = None
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        sub = (asyncio.get_running_loop(), asyncio.Event())
        sub[1].set()  # a new page gets one render at once: the store may have changed since its page was served
        with self._lock:
            self._subscribers.add(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="console-changes", daemon=True)
                self._thread.start()
            self._wake.notify_all()
        return sub

    def unsubscribe(self, sub: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        store = self._open_store()  # the poller's own connection: a SQLite connection stays in its thread
        try:
            while True:
                with self._lock:
                    while not self._subscribers and not self._stopping:
                        self._wake.wait()  # idle: no page open, no queries
                    if self._stopping:
                        return
                with store.read() as tx:
                    token = change_token(tx)
                if token != self._token:
                    self._token = token
                    self.version += 1
                    with self._lock:
                        subs = list(self._subscribers)
                    for loop, event in subs:
                        try:
                            loop.call_soon_threadsafe(event.set)
                        except RuntimeError:  # that page's loop is gone; its stream unsubscribes itself
                            pass
                with self._lock:
                    if not self._stopping:
                        self._wake.wait(self.interval)
        finally:
            store.close()


__all__ = ["POLL_S", "ChangeFeed", "change_token"]
