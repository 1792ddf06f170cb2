"""Streamable HTTP for `aictl mcp serve --http HOST:PORT`: loopback by default, a bearer token on every request.

Tokens come from an environment variable (never a flag: flags show in `ps`): `SECRET`, or `NAME:SECRET` pairs
separated by commas; the caller acts as the token's NAME (a bare secret acts as the server's actor).
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import sys
from typing import Any

from aictl.domain.errors import UsageError
from aictl.domain.tokens import is_loopback, parse_tokens
from aictl.mcp.server import ACTOR_SCOPE_KEY


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--http wants HOST:PORT, not {text!r}", hint="e.g. --http 127.0.0.1:8765 (port 0: any free)")
    return host.strip("[]") or "127.0.0.1", int(port)


def load_tokens(env_var: str | None, default_name: str) -> dict[str, str]:
    """secret -> name, from the variable's value."""
    if env_var is None:
        return {}
    value = os.environ.get(env_var, "")
    if not value.strip():
        raise UsageError(
            f"--token-env {env_var}: the variable is empty or unset",
            hint=f"export {env_var}=NAME:SECRET (e.g. a secret from: openssl rand -hex 32)",
        )
    return parse_tokens(value, f"--token-env {env_var}", default_name)


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`; it sets the caller's name."""

    def __init__(self, app: Any, tokens: dict[str, str]):
        self.app = app
        self.tokens = tokens

    def _name(self, scope: dict[str, Any]) -> str | None:
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
                found = None
                for secret, name in self.tokens.items():  # compare with every token: no early exit to time
                    if hmac.compare_digest(secret.encode(), given.strip().encode()):
                        found = name
                return found
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.tokens:
            await self.app(scope, receive, send)
            return
        name = self._name(scope)
        if name is None:
            body = json.dumps(
                {"error": {"code": "unauthorized", "message": "missing or wrong bearer token", "exit_code": 5}}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope[ACTOR_SCOPE_KEY] = name
        await self.app(scope, receive, send)


def serve_http(mcp: Any, host: str, port: int, tokens: dict[str, str]) -> None:
    """Serve until interrupted; the bound address goes to stderr (port 0 picks a free one)."""
    import anyio
    import uvicorn

    if not is_loopback(host) and not tokens:
        raise UsageError(
            f"--http {host}:{port} is not a loopback address: it needs a bearer token",
            hint="export AICTL_MCP_TOKEN=NAME:SECRET and add --token-env AICTL_MCP_TOKEN",
        )
    app = BearerAuth(mcp.streamable_http_app(host=host), tokens)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)  # listening before the address is announced: a client may connect at once
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"aictl mcp: listening on http://{shown}:{bound}/mcp\n")
    sys.stderr.flush()
    anyio.run(lambda: server.serve(sockets=[sock]))
