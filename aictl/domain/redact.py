"""Redaction: secrets never reach events, decision records or evidence.

Known key formats (Anthropic, OpenAI, GitHub, AWS, Slack, bearer tokens, private
key blocks, `password=`-style assignments), extra regexes from the
`secret_patterns` setting (AICTL_SECRET_PATTERNS, comma-separated), and the
literal values of this process's environment variables whose names say they
hold a secret (…_API_KEY, …_TOKEN, …SECRET…, …PASSWORD…).

Plus the process-wide registry of known secret values: whatever aictl was told holds a
secret, whatever its name or value looks like — a registered AI's key variable
(`--api-key-env ATK_KEY`), a webhook's `secret_env`, the password in the database URL.
Settings, the AI registry and the executor `register()` them as they load; every sink
(events, evidence, activity, live progress, logs, notifications) calls redact()/redact_text().
The values themselves are never logged.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

MASK = "[REDACTED]"

BUILTIN = [
    r"sk-ant-[A-Za-z0-9_\-]{16,}",  # Anthropic
    r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}",  # OpenAI
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key id
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{16,}=*",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"(?<![A-Za-z])(?i:password|passwd|secret|api[_-]?key|access[_-]?token)\s*[=:]\s*[\"']?[^\s\"',;]{6,}",
]
_configured: tuple[str, ...] = ()
_known: set[str] = set()  # registered secret values (never printed)
MIN_SECRET = 6  # a shorter value would mask ordinary words all over the record
_SECRET_ENV = re.compile(r"(?i)(api_?key|token|secret|password|passwd|credential)")


@lru_cache(maxsize=8)
def _compiled(extra: tuple[str, ...], env_values: tuple[str, ...]) -> re.Pattern[str]:
    parts = [f"(?:{p})" for p in (*BUILTIN, *extra)]
    parts += [re.escape(v) for v in sorted(env_values, key=len, reverse=True)]
    return re.compile("|".join(parts))


_current: re.Pattern[str] | None = None


def configure(patterns: list[str]) -> None:
    """Add the `secret_patterns` setting (validated regexes) to the built-in ones."""
    global _configured
    _configured = tuple(patterns)
    refresh()


def register(*values: str | None) -> None:
    """Add secret values to redact everywhere in this process, whatever they look like."""
    new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET} - _known
    if new:
        _known.update(new)
        refresh()


def register_env(*names: str | None) -> None:
    """Register the values of the named environment variables (unset ones are skipped)."""
    register(*(os.environ.get(n) for n in names if n))


def register_url(url: str | None) -> None:
    """Register the password of a URL such as postgresql://user:PASSWORD@host/db."""
    password = url_password(url)
    if password:
        register(password)
        from urllib.parse import quote

        register(quote(password, safe=""))  # how it appears inside the URL itself


def url_password(url: str | None) -> str | None:
    if not url or "@" not in url:
        return None
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def mask_url(url: str) -> str:
    """The URL with its password masked (for `config show` and error messages)."""
    password = url_password(url)
    if not password:
        return url
    head, _, tail = url.rpartition("@")
    scheme, sep, userinfo = head.partition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:{MASK}@{tail}"


def refresh() -> None:
    """Re-read the environment for secret values (it is read once per process otherwise)."""
    global _current
    _current = None


def _pattern() -> re.Pattern[str]:
    # Scanning os.environ costs ~50 µs; once per process, not once per audit event.
    global _current
    if _current is None:
        extra = _configured + tuple(p for p in os.environ.get("AICTL_SECRET_PATTERNS", "").split(",") if p.strip())
        env_values = tuple(
            v
            for k, v in os.environ.items()
            if _SECRET_ENV.search(k) and len(v) >= 8 and not k.startswith("AICTL_SECRET_PATTERNS")
        )
        _current = _compiled(extra, env_values + tuple(sorted(_known)))
    return _current


def redact_text(text: str) -> str:
    return _pattern().sub(MASK, text)


def redact(value: Any) -> Any:
    """A copy of value with every secret in every string masked (dict keys kept)."""
    return _redact(value, _pattern())  # one environment scan per call, not per string


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, dict):
        return {k: _redact(v, pattern) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, pattern) for v in value]
    return value
