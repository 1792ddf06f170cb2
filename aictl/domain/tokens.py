"""Bearer tokens of aictl's HTTP servers (`mcp serve --http`, `console`) and what counts as a loopback bind.

A token variable holds `SECRET`, or `NAME:SECRET` pairs separated by commas; the caller acts as the
token's NAME (a bare secret acts as the server's own actor). Secrets come from the environment, never
from a flag: flags show in `ps`.
"""

from __future__ import annotations

import ipaddress

from aictl.domain.errors import UsageError

MIN_SECRET = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_tokens(value: str, where: str, default_name: str) -> dict[str, str]:
    """secret -> name, from a variable's value; `where` names the variable in errors."""
    value = value.strip()
    if not value:
        raise UsageError(
            f"{where}: the variable is empty or unset",
            hint="export it as NAME:SECRET (e.g. a secret from: openssl rand -hex 32)",
        )
    tokens: dict[str, str] = {}
    for item in value.split(","):
        name, sep, secret = item.strip().rpartition(":")
        secret = secret.strip()
        if len(secret) < MIN_SECRET:
            raise UsageError(
                f"{where}: a token is shorter than {MIN_SECRET} characters",
                hint="use a long random secret: openssl rand -hex 32",
            )
        tokens[secret] = name.strip() if sep and name.strip() else default_name
    return tokens


__all__ = ["MIN_SECRET", "is_loopback", "parse_tokens"]
