"""The egress proxy: the only way out of a sandbox, to the host:port pairs a run may reach.

One EgressProxy per sandbox run, listening on an address the container can
reach (the run network's gateway, see egressnet.py). It speaks the two forms
an HTTP proxy client uses, and nothing else:

    CONNECT host:port HTTP/1.1            -> a byte tunnel (HTTPS and anything over TLS)
    GET http://host:port/path HTTP/1.1    -> the request forwarded in origin form, `Connection: close`

Every attempt is decided before anything is dialled: allowed when host:port is
in `allowed` (exact, case-insensitive host; no DNS games: the proxy resolves the
name itself) or when `decide(host, port)` says so; refused with 403 otherwise.
Each attempt, either way, goes to `on_attempt` (the executor turns it into a
decision record) and into `attempts()` for the run's evidence, folded by
(host, port, verdict) with a count so a retry loop cannot grow it without bound.

Bounded: request heads up to MAX_HEAD_BYTES read within HEAD_TIMEOUT_S,
upstream connects within CONNECT_TIMEOUT_S, a connection idle for IDLE_TIMEOUT_S
is closed, at most max_connections at once (503 past that), and only clients
from `clients` (the run network's subnet) are served. Standard library only;
one thread per connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
# Model APIs stream with pauses while the model thinks; five minutes of silence is a dead connection.
IDLE_TIMEOUT_S = 300.0
MAX_CONNECTIONS = 64
MAX_ATTEMPT_KINDS = 256
CHUNK = 64 * 1024
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te"}


@dataclass(frozen=True)
class ConnectionAttempt:
    """One attempt to leave the sandbox: where to, how, the verdict and why."""

    host: str
    port: int
    method: str  # CONNECT, or the plain HTTP request's method
    allowed: bool
    reason: str
    client: str
    at: float


OnAttempt = Callable[[ConnectionAttempt], None]
Decide = Callable[[str, int], bool]


def parse_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """'Host:443' -> ('host', 443); '[::1]:80' -> ('::1', 80); ValueError when it is neither."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = value, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"{value!r} names no port")
        port_text = str(default_port)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536 or any(c in host for c in " /@\\"):
        raise ValueError(f"{value!r} is not host:port")
    return host.lower().rstrip("."), int(port_text)


class EgressProxy:
    def __init__(
        self,
        allowed: Iterable[str],
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        clients: str | None = None,
        on_attempt: OnAttempt | None = None,
        decide: Decide | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ):
        self.allowed = {parse_hostport(a) for a in allowed}
        self.on_attempt = on_attempt
        self.decide = decide
        self.clients = ipaddress.ip_network(clients, strict=False) if clients else None
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._folded: dict[tuple[str, int, bool], dict[str, Any]] = {}
        self._live: set[socket.socket] = set()
        self._closed = threading.Event()
        self._sock = socket.create_server((bind, port), backlog=128)
        self._thread = threading.Thread(target=self._accept_loop, name="aictl-egress", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def attempts(self) -> list[dict[str, Any]]:
        """Every attempt, folded by (host, port, verdict): first seen, reason, count."""
        with self._lock:
            return [dict(v) for v in self._folded.values()]

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            live = list(self._live)
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> EgressProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return  # closed
            if self.clients is not None and ipaddress.ip_address(peer[0]) not in self.clients:
                conn.close()
                continue
            if not self._slots.acquire(blocking=False):
                threading.Thread(target=_refuse, args=(conn,), daemon=True, name="aictl-egress-busy").start()
                continue
            threading.Thread(target=self._serve, args=(conn, peer[0]), daemon=True, name="aictl-egress-conn").start()

    def _serve(self, conn: socket.socket, client: str) -> None:
        upstream: socket.socket | None = None
        self._track(conn, True)
        try:
            conn.settimeout(HEAD_TIMEOUT_S)
            head, rest = _read_head(conn)
            if head is None:
                _reply(conn, 431 if rest == b"too big" else 400, "bad or oversized request head")
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                _reply(conn, 400, "not an HTTP/1.x request")
                return
            method, target, _version = parts
            try:
                if method == "CONNECT":
                    host, port = parse_hostport(target)
                else:
                    url = urlsplit(target)
                    if url.scheme != "http" or not url.netloc:
                        raise ValueError("only absolute http:// URLs (and CONNECT) go through this proxy")
                    host, port = parse_hostport(url.netloc.rpartition("@")[2], 80)
            except ValueError as e:
                _reply(conn, 400, str(e))
                return
            allowed, reason = self._verdict(host, port)
            self._record(ConnectionAttempt(host, port, method, allowed, reason, client, self.clock()))
            if not allowed:
                _reply(conn, 403, f"aictl egress: {host}:{port} is not allowed ({reason})")
                return
            try:
                upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
            except OSError as e:
                _reply(conn, 502, f"aictl egress: cannot reach {host}:{port}: {e}")
                return
            self._track(upstream, True)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if method == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                self._pipe(conn, upstream, rewrite_response=False)
            else:
                url = urlsplit(parts[1])
                origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
                headers = [h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in HOP_HEADERS]
                request = "\r\n".join([f"{method} {origin} HTTP/1.1", *headers, "Connection: close", "", ""])
                upstream.sendall(request.encode("latin-1") + rest)
                self._pipe(conn, upstream, rewrite_response=True)
        except OSError:
            pass  # the client or the upstream went away: nothing to report to either
        finally:
            for s in (conn, upstream):
                if s is not None:
                    self._track(s, False)
                    s.close()
            self._slots.release()

    def _verdict(self, host: str, port: int) -> tuple[bool, str]:
        if (host, port) in self.allowed:
            return True, "on the run's allow list"
        if self.decide is not None:
            try:
                if self.decide(host, port):
                    return True, "allowed by policy"
            except Exception as e:  # noqa: BLE001 - a failing decision is a refusal, never a way out
                return False, f"the decision failed: {type(e).__name__}"
            return False, "denied by policy"
        return False, "not on the run's allow list"

    def _record(self, attempt: ConnectionAttempt) -> None:
        with self._lock:
            key = (attempt.host, attempt.port, attempt.allowed)
            folded = self._folded.get(key)
            if folded is not None:
                folded["count"] += 1
            elif len(self._folded) < MAX_ATTEMPT_KINDS:
                self._folded[key] = {**asdict(attempt), "count": 1}
            else:  # past this many distinct destinations, one row counts the rest
                other = self._folded.setdefault(
                    ("*", 0, attempt.allowed),
                    {**asdict(attempt), "host": "*", "port": 0, "reason": "more destinations", "count": 0},
                )
                other["count"] += 1
        if self.on_attempt is not None:
            with contextlib.suppress(Exception):  # a broken recorder must not open or hang the proxy
                self.on_attempt(attempt)

    def _track(self, s: socket.socket, live: bool) -> None:
        with self._lock:
            (self._live.add if live else self._live.discard)(s)

    def _pipe(self, client: socket.socket, upstream: socket.socket, *, rewrite_response: bool) -> None:
        """Bytes both ways until either side closes or nothing moves for idle_timeout_s."""
        client.setblocking(False)
        upstream.setblocking(False)
        pending_head = b"" if rewrite_response else None
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._closed.is_set():
                ready = sel.select(self.idle_timeout_s)
                if not ready:
                    return
                for key, _ in ready:
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    try:
                        data = src.recv(CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:
                        if pending_head:
                            _send(dst, pending_head)
                        return
                    if src is upstream and pending_head is not None:
                        pending_head += data
                        data = b""
                        # Interim 1xx heads pass as they are; the final response's head gets Connection: close.
                        while pending_head is not None and (end := pending_head.find(b"\r\n\r\n")) >= 0:
                            head, pending_head = pending_head[: end + 4], pending_head[end + 4 :]
                            if head.startswith(b"HTTP/1.1 1") or head.startswith(b"HTTP/1.0 1"):
                                data += head
                            else:
                                data += _close_response(head) + pending_head
                                pending_head = None
                        if pending_head is not None and len(pending_head) > MAX_HEAD_BYTES:
                            return
                        if not data:
                            continue
                    _send(dst, data)


def _send(sock: socket.socket, data: bytes) -> None:
    """sendall on a non-blocking socket: wait for room, at most IDLE_TIMEOUT_S per stall."""
    view = memoryview(data)
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_WRITE)
        while view:
            try:
                sent = sock.send(view)
                view = view[sent:]
            except BlockingIOError:
                if not sel.select(IDLE_TIMEOUT_S):
                    raise TimeoutError("peer stopped reading") from None


def _close_response(head: bytes) -> bytes:
    """The response head with `Connection: close`: the client must not reuse a connection the proxy ends."""
    lines = head.decode("latin-1").split("\r\n")
    kept = [h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")]
    return "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")


def _read_head(conn: socket.socket) -> tuple[bytes | None, bytes]:
    """(the request head, what came after it), or (None, why) when it is oversized, cut or too slow."""
    buf = b""
    deadline = time.monotonic() + HEAD_TIMEOUT_S
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD_BYTES:
            return None, b"too big"
        if time.monotonic() > deadline:
            return None, b"too slow"
        try:
            data = conn.recv(4096)
        except TimeoutError:
            return None, b"too slow"
        if not data:
            return None, b"cut"
        buf += data
    end = buf.index(b"\r\n\r\n")
    if end > MAX_HEAD_BYTES:
        return None, b"too big"
    return buf[:end], buf[end + 4 :]


def _refuse(conn: socket.socket) -> None:
    """503, then read what the client sent before closing: closing over unread bytes would reset, losing the 503."""
    _reply(conn, 503, "too many connections through the egress proxy")
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        for _ in range(MAX_HEAD_BYTES // 4096 + 1):
            if not conn.recv(4096):
                break
    conn.close()


def _reply(conn: socket.socket, status: int, message: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reasons.get(status, 'Service Unavailable')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        conn.sendall(head.encode() + body)


__all__ = ["ConnectionAttempt", "Decide", "EgressProxy", "OnAttempt", "parse_hostport"]
