"""Who may use the console: a loopback bind, or a bearer token; and no state change without a CSRF token.

- A non-loopback bind needs a token (`AICTL_CONSOLE_TOKEN`: `SECRET` or `NAME:SECRET` pairs, as for
  `aictl mcp serve --http`); the server refuses to start without one. With a token, every request carries
  it as `Authorization: Bearer`, or as the cookie `/login?token=` sets (HttpOnly, SameSite=Strict).
- A loopback bind without a token still checks the Host header, so a page of another site that rebinds
  its DNS name to 127.0.0.1 cannot read the console.
- Every POST carries the per-server CSRF token in a form field, and an Origin header, when sent, must be
  the console's own: a cross-site form cannot know the token.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aictl.domain.errors import UsageError
from aictl.domain.tokens import is_loopback, parse_tokens

TOKEN_ENV = "AICTL_CONSOLE_TOKEN"
COOKIE = "aictl_console"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class Guard:
    host: str
    tokens: dict[str, str]  # secret -> name
    actor: str  # who a loopback user without a token acts as
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def for_bind(cls, host: str, actor: str, *, env_var: str = TOKEN_ENV) -> Guard:
        """Refuses a non-loopback bind without a token (before anything listens)."""
        import os

        value = os.environ.get(env_var, "")
        tokens = parse_tokens(value, env_var, actor) if value.strip() else {}
        if not is_loopback(host) and not tokens:
            raise UsageError(
                f"--host {host} is not a loopback address: the console needs a bearer token there",
                hint=f"export {env_var}=NAME:SECRET (a secret from: openssl rand -hex 32), or bind 127.0.0.1",
            )
        return cls(host=host, tokens=tokens, actor=actor)

    def user(self, authorization: str | None, cookie: str | None) -> str | None:
        """The caller's name, or None when a token is required and none matches."""
        if not self.tokens:
            return self.actor
        given = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                given = value.strip()
        return self.name_of(given or cookie)

    def name_of(self, given: str | None) -> str | None:
        if not given:
            return None
        found = None
        for secret, name in self.tokens.items():  # compare with every token: no early exit to time
            if hmac.compare_digest(secret.encode(), given.encode()):
                found = name
        return found

    def host_allowed(self, host_header: str | None) -> bool:
        """Without a token, only loopback names reach a loopback console (DNS rebinding)."""
        if self.tokens or not is_loopback(self.host):
            return True
        name = (host_header or "").rsplit(":", 1)[0] if not (host_header or "").startswith("[") else "[::1]"
        return name in LOOPBACK_NAMES

    def csrf_ok(self, form_token: str | None, origin: str | None, host_header: str | None) -> bool:
        if not form_token or not hmac.compare_digest(self.csrf.encode(), form_token.encode()):
            return False
        if origin and origin != "null":
            return urlsplit(origin).netloc == (host_header or "")
        return origin != "null"


__all__ = ["COOKIE", "TOKEN_ENV", "Guard", "is_loopback"]
