"""How an idle daemon waits for work without busy polling.

SQLite has no way to tell another process that something changed, so the daemon
polls with backoff: 50 ms after activity, doubling to 1 s while nothing happens
(new work is seen within a second; an idle daemon does ~1 cheap read a second).
Activity — a claimed task, a finished worker, a signal — resets the delay. Between
polls it watches `PRAGMA data_version` (10 probes a second, microseconds each),
which moves when any other connection commits, so a new task usually wakes it at once.

PostgreSQL tells: TaskService sends `NOTIFY aictl_tasks` in every transaction that
can make a task claimable (delivered at commit), and a thread here LISTENs on its own
connection. While it listens the loop may sleep up to `listen_max` between polls;
when the listening connection breaks it falls back to polling with backoff, and
reconnects (a wake-up after reconnecting covers notifications missed meanwhile).
"""

from __future__ import annotations

import threading
from typing import Any

CHANNEL = "aictl_tasks"


class PollWakeup:
    """Backoff poll: wait() sleeps the current delay unless woken; the delay doubles up to poll_max."""

    mode = "poll"

    def __init__(self, *, poll_min: float = 0.05, poll_max: float = 1.0):
        self.poll_min, self.poll_max = poll_min, poll_max
        self.delay = poll_min
        self._event = threading.Event()

    def wake(self) -> None:
        """Something happened here (a worker finished, a signal): look for work now. Thread-safe."""
        self._event.set()

    def reset(self) -> None:
        """Work was found: poll soon again."""
        self.delay = self.poll_min

    def max_delay(self) -> float:
        return self.poll_max

    def next_delay(self) -> float:
        return min(self.delay, self.max_delay())

    def wait(self, cap: float | None = None) -> bool:
        """Sleep the current delay (or less: `cap`); True when woken early. Backs off when not woken."""
        delay = self.next_delay() if cap is None else max(0.0, min(self.next_delay(), cap))
        woken = self._event.wait(delay)
        self._event.clear()
        if woken:
            self.delay = self.poll_min
        else:
            self.delay = min(self.max_delay(), self.delay * 2)
        return woken

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "delay_s": round(self.delay, 3)}

    def close(self) -> None:
        pass


class SqliteWakeup(PollWakeup):
    """Backoff poll, plus a cheap change detector: `PRAGMA data_version` on a read-only connection of its
    own changes whenever another connection (any process) commits. Probing it every `probe_s` costs a few
    microseconds, so a new task is seen within ~0.1 s while the full look for work still backs off to 1 s."""

    mode = "poll+data_version"

    def __init__(self, path: str, *, poll_min: float = 0.05, poll_max: float = 1.0, probe_s: float = 0.1):
        super().__init__(poll_min=poll_min, poll_max=poll_max)
        self.path, self.probe_s = path, probe_s
        self.changes = 0
        self._conn: Any = None
        self._version: int | None = None

    def _probe(self) -> bool:
        """True when someone committed since the last probe (or the probe cannot tell)."""
        import sqlite3

        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            self.close()
            return False  # plain backoff polling still finds the work
        changed = self._version is not None and version != self._version
        self._version = version
        return changed

    def wait(self, cap: float | None = None) -> bool:
        import time

        delay = self.next_delay() if cap is None else max(0.0, min(self.next_delay(), cap))
        end = time.monotonic() + delay
        self._probe()
        woken = False
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            if self._event.wait(min(self.probe_s, left)) or self._probe():
                woken = True
                break
        self._event.clear()
        if woken:
            self.changes += 1
            self.delay = self.poll_min
        else:
            self.delay = min(self.max_delay(), self.delay * 2)
        return woken

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "changes_seen": self.changes}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None


class ListenWakeup(PollWakeup):
    """PostgreSQL LISTEN on its own connection, with backoff polling as the fallback."""

    mode = "listen"

    def __init__(
        self,
        url: str,
        *,
        poll_min: float = 0.05,
        poll_max: float = 1.0,
        listen_max: float = 5.0,
        reconnect_max: float = 10.0,
    ):
        super().__init__(poll_min=poll_min, poll_max=poll_max)
        from aictl.store.postgres import libpq_url

        self.url = libpq_url(url)
        self.listen_max = listen_max
        self.reconnect_max = reconnect_max
        self.listening = False
        self.notifications = 0
        self.last_error: str | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aictl-daemon-listen", daemon=True)
        self._thread.start()

    def max_delay(self) -> float:
        return self.listen_max if self.listening else self.poll_max

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "listening": self.listening,
            "notifications": self.notifications,
            "error": None if self.listening else self.last_error,
        }

    def _run(self) -> None:
        import psycopg

        from aictl.logging import get_logger

        log = get_logger("aictl.daemon")
        backoff = 0.5
        while not self._closed.is_set():
            conn = None
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                conn.execute(f"LISTEN {CHANNEL}")
                if not self.listening and self.last_error:
                    log.info("listening for task notifications again", channel=CHANNEL)
                self.wake()  # whatever was notified while we were not listening
                self.listening, self.last_error, backoff = True, None, 0.5
                while not self._closed.is_set():
                    for _ in conn.notifies(timeout=1.0):
                        self.notifications += 1
                        self.wake()
            except psycopg.Error as e:
                was = self.listening
                self.listening = False
                self.last_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if was or backoff == 0.5:
                    log.warning(
                        "LISTEN connection lost; polling until it is back", error=self.last_error, retry_in_s=backoff
                    )
                self.wake()
                self._closed.wait(backoff)
                backoff = min(self.reconnect_max, backoff * 2)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001 - a broken connection may fail to close; nothing to do
                        pass
        self.listening = False

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=3)


def make_wakeup(url: str, **kw: Any) -> PollWakeup:
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return ListenWakeup(url, **kw)
    poll = {k: v for k, v in kw.items() if k in ("poll_min", "poll_max")}
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return SqliteWakeup(url[len("sqlite:///") :], **poll)
    return PollWakeup(**poll)
