"""`merge: auto`: the daemon lands done tasks itself, on a thread of its own so a slow verify never holds up
claiming. One run at a time per daemon; across daemons and hosts the merge queue's lease picks one
(`QueueBusy` here just means another holder is merging now, and is not an error).
"""

from __future__ import annotations

import threading
from typing import Any

from aictl.domain.errors import AictlError
from aictl.logging import get_logger

log = get_logger("aictl.daemon")


class AutoMerger:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.thread: threading.Thread | None = None
        self.runs = 0
        self.last: dict[str, Any] | None = None
        self._signature: tuple | None = None  # of the done work the last run saw

    @property
    def enabled(self) -> bool:
        return getattr(self.daemon.settings, "merge", "manual") == "auto"

    def poke(self, store: Any) -> None:
        """Start a merge run when the done work changed since the last run (new done tasks, or a verdict on a
        parked merge) and none is running; a merge parked for approval is not retried every sweep."""
        if not self.enabled or (self.thread is not None and self.thread.is_alive()):
            return
        with store.read() as tx:
            done = tx.all("SELECT id, updated_at FROM tasks WHERE status = 'done' ORDER BY id")
            verdict = tx.one("SELECT MAX(id) AS m FROM events WHERE action IN ('approve', 'reject')")
        signature = (tuple((r["id"], r["updated_at"]) for r in done), verdict["m"] if verdict else None)
        if not done or signature == self._signature:
            return
        self._signature = signature
        self.thread = threading.Thread(target=self._run, name="aictl-automerge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from aictl.merge.lease import QueueBusy
        from aictl.merge.queue import MergeQueue
        from aictl.store import open_store

        d = self.daemon
        store = open_store(d.url, busy_timeout_ms=d.settings.busy_timeout_ms)
        try:
            report = MergeQueue(store, d.settings, policy=d.gate, owner=f"daemon:{d.id}").run()
        except QueueBusy as e:
            log.debug("merge queue busy", reason=e.message)
            self._signature = None  # the holder may die before it is done: look again next sweep
            return
        except AictlError as e:
            log.error("auto merge failed", error=e.message, hint=e.hint)
            self._signature = None
            return
        finally:
            store.close()
        self.runs += 1
        outcomes = [(e.task_id, e.outcome) for e in report.entries]
        self.last = {"into": report.into, "tip": report.target_after, "entries": outcomes}
        if outcomes:
            log.info("auto merge", into=report.into, tip=(report.target_after or "")[:12], entries=outcomes)
            d.notify("merge.ran", {"daemon": d.id, **self.last})

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
