"""Serving the console: the guard decides before anything listens, then uvicorn on a socket bound here."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from aictl.console.security import Guard
from aictl.domain.errors import UsageError

if TYPE_CHECKING:
    from aictl.config import Settings


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without, a response written in two parts waits ~40 ms (Nagle, delayed ACK)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}", hint="pick another --port") from None
    sock.listen(128)  # listening before the address is announced: a browser may connect at once
    return sock


def serve_in_thread(settings: Settings, *, host: str, port: int) -> tuple[Callable[[], None], str]:
    """The console beside a daemon (`daemon start --console`): served from a thread; returns (stop, url)."""
    import asyncio
    import threading

    import uvicorn

    from aictl.console.app import Console, build_app

    guard = Guard.for_bind(host, settings.actor)
    app = build_app(Console(settings, guard))
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1, access_log=False)
    )
    # uvicorn installs signal handlers only in the main thread: the daemon keeps its own
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="aictl-console", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    shown = f"[{host}]" if ":" in host else host
    return stop, f"http://{shown}:{bound}/"


def serve(settings: Settings, *, host: str, port: int, read_only: bool, poll_s: float | None = None) -> None:
    """Serve until interrupted; the URL goes to stderr (port 0 picks a free one)."""
    import anyio
    import uvicorn

    from aictl.console.app import Console, build_app

    guard = Guard.for_bind(host, settings.actor)  # refuses a non-loopback bind without a token
    console = Console(settings, guard, read_only=read_only, poll_s=poll_s)
    app = build_app(console)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1, access_log=False)
    )
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"aictl console: http://{shown}:{bound}/" + (" (read-only)" if read_only else "") + "\n")
    sys.stderr.flush()
    try:
        anyio.run(lambda: server.serve(sockets=[sock]))
    finally:
        sock.close()


__all__ = ["bind", "serve", "serve_in_thread"]
