"""Notifications: tell people and programs that something happened (a task failed, needs approval, …).

Channels come from the `notifications:` setting (see aictl.config.NotificationChannel):

- console: one line on stderr;
- webhook: a JSON POST signed like GitHub's webhooks
  (``X-Aictl-Signature: sha256=<hex HMAC-SHA256 of the raw body>``), retried with
  exponential backoff on connection errors, 5xx, 408 and 429 (``Retry-After`` honoured);
- command: a program run with the event JSON on stdin and ``AICTL_EVENT`` in its environment.

``Notifier.notify()`` never blocks its caller: it puts the event on a bounded queue
that one background thread drains (a full queue drops the event with a logged
warning). ``close(timeout)`` lets the thread flush what is queued, up to the
timeout, and then gives up on the rest. A dead webhook therefore costs the
daemon's loop nothing.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aictl.config import NOTIFY_EVENTS, NotificationChannel
from aictl.domain.errors import ConfigError

__all__ = ["NOTIFY_EVENTS", "Delivery", "Notifier", "exec_notification", "sign", "verify_signature"]

QUEUE_SIZE = 1000
BACKOFF_BASE = 1.0  # seconds before the first retry; doubles each attempt
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0  # one delivery thread serves every channel: no server may park it for long
_RETRY_STATUS = {408, 429}  # plus every 5xx
_STOP = object()


def _log():
    from aictl.logging import get_logger

    return get_logger("aictl.notify")


def sign(secret: bytes, body: bytes) -> str:
    """The X-Aictl-Signature value of a body: ``sha256=`` + hex HMAC-SHA256 (GitHub's X-Hub-Signature-256 scheme)."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw body and compare in constant time."""
    import hmac

    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclass
class Delivery:
    """The outcome of sending one event to one channel."""

    channel: str
    type: str
    event: str
    ok: bool
    attempts: int = 0
    status: int | None = None  # last HTTP status (webhook) or exit code (command)
    error: str | None = None
    waits: list[float] = field(default_factory=list)  # seconds waited before each retry
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "type": self.type,
            "event": self.event,
            "ok": self.ok,
            "skipped": self.skipped,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "waits": [round(w, 3) for w in self.waits],
        }


@dataclass
class _Attempt:
    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None


def envelope(event_type: str, payload: dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON every channel receives."""
    now = time.time()
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "created_at": datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds"),
        "source": source or {},
        "data": payload,
    }


class Channel:
    """One configured destination."""

    def __init__(self, cfg: NotificationChannel, index: int, secret: bytes | None = None):
        self.cfg = cfg
        self.index = index
        self.secret = secret

    @property
    def name(self) -> str:
        if self.cfg.name:
            return self.cfg.name
        target = {"webhook": self.cfg.url, "console": "stderr"}.get(self.cfg.type)
        if self.cfg.type == "command":
            c = self.cfg.command
            target = c if isinstance(c, str) else " ".join(c or [])
        return f"{self.cfg.type}:{target}"

    def wants(self, event_type: str) -> bool:
        return "*" in self.cfg.on or event_type in self.cfg.on

    def attempt(self, event: dict[str, Any], body: bytes) -> _Attempt:
        return getattr(self, f"_{self.cfg.type}")(event, body)

    # -- the three kinds -------------------------------------------------------------

    def _console(self, event: dict[str, Any], body: bytes) -> _Attempt:
        sys.stderr.write(console_line(event) + "\n")
        sys.stderr.flush()
        return _Attempt(ok=True)

    def _webhook(self, event: dict[str, Any], body: bytes) -> _Attempt:
        import http.client
        import urllib.error
        import urllib.request

        from aictl import __version__

        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"aictl/{__version__}",
            "X-Aictl-Event": event["type"],
            "X-Aictl-Delivery": str(uuid.uuid4()),
        }
        if self.secret is not None:
            headers["X-Aictl-Signature"] = sign(self.secret, body)
        assert self.cfg.url is not None  # NotificationChannel refuses a webhook without a url
        req = urllib.request.Request(self.cfg.url, data=body, method="POST", headers=headers)
        try:
            with _opener().open(req, timeout=self.cfg.timeout_s) as resp:
                resp.read(65536)
                return _Attempt(ok=True, status=resp.status)
        except urllib.error.HTTPError as e:
            code = e.code
            e.close()
            retryable = code >= 500 or code in _RETRY_STATUS
            where = e.headers.get("Location") if 300 <= code < 400 else None
            error = f"HTTP {code}" + (
                f" redirect to {where} (aictl does not follow redirects; use the final URL)" if where else ""
            )
            return _Attempt(
                ok=False,
                status=code,
                error=error,
                retryable=retryable,
                retry_after=parse_retry_after(e.headers.get("Retry-After")),
            )
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            return _Attempt(ok=False, error=f"{type(reason).__name__}: {reason}", retryable=True)

    def _command(self, event: dict[str, Any], body: bytes) -> _Attempt:
        import subprocess

        c = self.cfg.command
        argv = ["/bin/sh", "-c", c] if isinstance(c, str) else list(c or [])
        env = {**os.environ, "AICTL_EVENT": event["type"], "AICTL_EVENT_ID": event["id"]}
        try:
            p = subprocess.run(argv, input=body, env=env, capture_output=True, timeout=self.cfg.timeout_s)
        except subprocess.TimeoutExpired:
            return _Attempt(ok=False, error=f"timed out after {self.cfg.timeout_s:g}s", retryable=True)
        except OSError as e:  # not found, not executable: retrying cannot help
            return _Attempt(ok=False, error=f"cannot run {argv[0]!r}: {e.strerror or e}")
        if p.returncode != 0:
            tail = p.stderr.decode("utf-8", "replace").strip().splitlines()
            return _Attempt(
                ok=False,
                status=p.returncode,
                retryable=True,
                error=f"exit {p.returncode}" + (f": {tail[-1][:200]}" if tail else ""),
            )
        return _Attempt(ok=True, status=0)


_OPENER: list[Any] = []


def _opener() -> Any:
    """urllib without redirects: a POST silently turned into a GET would report success for nothing."""
    if not _OPENER:
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        _OPENER.append(urllib.request.build_opener(NoRedirect))
    return _OPENER[0]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def exec_notification(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The notification an executor progress event calls for (daemon and `task execute` alike), if any."""
    kind = {"ai_paused": "task.rate_limited", "ai_unhealthy": "ai.unhealthy"}.get(str(event.get("type")))
    if kind is None:
        return None
    return kind, {k: event.get(k) for k in ("task_id", "ai", "until", "reason")}


def console_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    parts = []
    for k, v in data.items():
        if isinstance(v, (str, int, float, bool)) and v != "":
            text = str(v).replace("\n", " ")
            parts.append(f"{k}={json.dumps(text) if ' ' in text else text}")
    return f"aictl: {event['type']}" + (f" {' '.join(parts)}" if parts else "")


def deliver(
    channel: Channel,
    event: dict[str, Any],
    body: bytes,
    *,
    abort: threading.Event | None = None,
    backoff_base: float = BACKOFF_BASE,
) -> Delivery:
    """Send one event to one channel, retrying transient failures; never raises."""
    abort = abort or threading.Event()
    d = Delivery(channel=channel.name, type=channel.cfg.type, event=event["type"], ok=False)
    attempts = channel.cfg.retries + 1
    while True:
        d.attempts += 1
        try:
            a = channel.attempt(event, body)
        except Exception as e:  # noqa: BLE001 - a bug in a channel must not kill the delivery thread
            a = _Attempt(ok=False, error=f"{type(e).__name__}: {e}")
        d.ok, d.status, d.error = a.ok, a.status, a.error
        if a.ok or not a.retryable or d.attempts >= attempts or abort.is_set():
            return d
        delay = min(BACKOFF_CAP, backoff_base * 2 ** (d.attempts - 1))
        if a.retry_after is not None:
            delay = min(a.retry_after, RETRY_AFTER_CAP)
        d.waits.append(delay)
        if abort.wait(delay):
            d.error = f"{d.error} (gave up: notifier closing)"
            return d


class Notifier:
    """Fan events out to the configured channels from one background thread."""

    def __init__(
        self,
        channels: list[Channel],
        *,
        source: dict[str, Any] | None = None,
        queue_size: int = QUEUE_SIZE,
        backoff_base: float = BACKOFF_BASE,
        on_delivery: Callable[[Delivery], None] | None = None,
    ):
        self.channels = channels
        self.source = source or {}
        self.backoff_base = backoff_base
        self.on_delivery = on_delivery
        self.stats = {"queued": 0, "delivered": 0, "failed": 0, "dropped": 0}
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._abort = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> Notifier:
        """Channels from `settings.notifications`; a webhook's secret is read from its env var now."""
        where = settings.sources.get("notifications", "settings") if getattr(settings, "sources", None) else "settings"
        channels = []
        for i, cfg in enumerate(settings.notifications):
            secret = None
            if cfg.secret_env:
                value = os.environ.get(cfg.secret_env)
                if not value:
                    raise ConfigError(
                        f"{where}: notifications[{i}].secret_env names {cfg.secret_env}, which is not set",
                        hint=f"export {cfg.secret_env}=<the webhook secret>, or remove secret_env",
                    )
                from aictl.domain.redact import register

                register(value)
                secret = value.encode("utf-8")
            channels.append(Channel(cfg, i, secret))
        source = {"actor": settings.actor}
        if getattr(settings, "project_dir", None):
            source["project"] = str(settings.project_dir)
        return cls(channels, source=source, **kwargs)

    def wanted(self, event_type: str) -> list[Channel]:
        return [c for c in self.channels if c.wants(event_type)]

    def notify(self, event_type: str, payload: dict[str, Any] | None = None) -> bool:
        """Queue an event for delivery and return at once; False when it was dropped (or nobody wants it)."""
        targets = self.wanted(event_type)
        if not targets:
            return False
        if self._closed:
            _log().warning("notification after close dropped", event_type=event_type)
            return False
        self._start()
        try:
            self._queue.put_nowait((event_type, dict(payload or {}), targets))
        except queue.Full:
            with self._lock:
                self.stats["dropped"] += 1
            _log().warning(
                "notification queue full; event dropped", event_type=event_type, dropped_total=self.stats["dropped"]
            )
            return False
        with self._lock:
            self.stats["queued"] += 1
        return True

    def send_now(
        self, event_type: str, payload: dict[str, Any] | None = None, *, all_channels: bool = False
    ) -> list[Delivery]:
        """Deliver synchronously to each channel (for `aictl notify test`); a channel not subscribed is skipped."""
        event = envelope(event_type, dict(payload or {}), self.source)
        body = _body(event)
        out = []
        for c in self.channels:
            if all_channels or c.wants(event_type):
                out.append(deliver(c, event, body, abort=self._abort, backoff_base=self.backoff_base))
            else:
                out.append(
                    Delivery(
                        channel=c.name,
                        type=c.cfg.type,
                        event=event_type,
                        ok=False,
                        skipped=True,
                        error=f"not subscribed to {event_type} (on: {', '.join(c.cfg.on)})",
                    )
                )
        return out

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> bool:
        """Flush queued events for up to `timeout` seconds; True when everything was attempted in time."""
        self._closed = True
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=max(0.0, timeout))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()  # cut retry waits short; the (daemon) thread ends after its current attempt
            left = self._queue.qsize()
            _log().warning("notifier closed before every event was delivered", undelivered=left)
            return False
        return True

    # -- the delivery thread ----------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="aictl-notify", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._abort.is_set():
                return
            event_type, payload, targets = item
            event = envelope(event_type, payload, self.source)
            body = _body(event)
            for c in targets:
                if self._abort.is_set():
                    return
                d = deliver(c, event, body, abort=self._abort, backoff_base=self.backoff_base)
                with self._lock:
                    self.stats["delivered" if d.ok else "failed"] += 1
                if not d.ok:
                    _log().error(
                        "notification not delivered",
                        channel=d.channel,
                        event_type=event_type,
                        attempts=d.attempts,
                        error=d.error,
                    )
                if self.on_delivery is not None:
                    try:
                        self.on_delivery(d)
                    except Exception:  # noqa: BLE001 - a caller's callback must not stop deliveries
                        pass


def _body(event: dict[str, Any]) -> bytes:
    from aictl.domain.redact import redact

    # a notification leaves the host: no known secret in any field of it
    return json.dumps(redact(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode(
        "utf-8"
    )
