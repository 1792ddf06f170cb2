"""What the API connectors share besides the loop: provider errors and their kinds, retry and reset
headers, and aborting a streamed response. The status → kind rule itself is the spec's
(`spec.status_error_kind`); the key and the base URL come from the spec too.

Only the standard library is imported here; the SDKs stay in the connectors' run paths.
"""

from __future__ import annotations

import email.utils
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aictl.agents.connectors.spec import TRANSIENT_KINDS, status_error_kind


class ProviderError(Exception):
    """A request failed; `kind` is the ConnectorResult.error_kind (rate_limit, overloaded, auth, timeout, unreachable,
    other)."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "other",
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        retry_at: float | None = None,
    ):
        super().__init__(message)
        self.message, self.kind, self.status, self.retryable = message, kind, status, retryable
        self.retry_after, self.retry_at = retry_after, retry_at


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the provider asks us to wait: retry-after-ms, else retry-after (seconds or an HTTP date)."""
    h = _lower(headers)
    try:
        return max(0.0, float(h["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = h.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def reset_at(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """When the provider's rate limit resets (unix time), from its reset headers; the latest one wins."""
    h, now = _lower(headers), time.time() if now is None else now
    found: list[float] = []
    for name, value in h.items():
        if not (
            (name.startswith("anthropic-ratelimit-") and name.endswith("-reset"))
            or name.startswith("x-ratelimit-reset")
        ):
            continue
        value = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", value):  # unix seconds (anthropic-ratelimit-unified-reset)
            found.append(float(value))
        elif re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", value):  # OpenAI durations: 6m0s, 1.5s, 20ms
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            found.append(now + sum(float(n) * scale[u] for n, u in _DURATION.findall(value)))
        else:
            try:
                found.append(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
            except ValueError:
                continue
    return max(found) if found else None


def http_error(
    status: int | None,
    *,
    connector: str,
    base_url: str,
    key_env: str | None,
    message: str = "",
    headers: Mapping[str, str] | None = None,
    error_type: str | None = None,
    error_kind: Callable[[int | None], str | None] = status_error_kind,
    endpoint: str | None = None,
) -> ProviderError:
    """The ProviderError for an HTTP error (or an error event in a stream, by its `error_type`).

    A 404 is told apart by what it says: one that names a model is a wrong model name, any other (FastAPI's
    ``{"detail": "Not Found"}``, an HTML page) an endpoint this server does not have.
    """
    after = retry_after_s(headers)
    where = f"{connector} at {base_url}"
    detail = f": {message}" if message else ""
    code = f" (HTTP {status})" if status is not None else ""
    kind = _TYPE_KINDS.get(error_type or "") or error_kind(status) or "other"
    if kind == "auth":
        what = "rejected the API key" if status != 403 else "refused access (HTTP 403)"
        env = f"the key in ${key_env}" if key_env else "the API key"
        return ProviderError(f"{where} {what}{detail}; check {env}", kind="auth", status=status)
    if kind == "rate_limit":
        at = time.time() + after if after is not None else reset_at(headers)
        return ProviderError(
            f"{where}: rate limited{code}{detail}",
            kind="rate_limit",
            status=status,
            retryable=True,
            retry_after=after,
            retry_at=at,
        )
    if kind in TRANSIENT_KINDS or status == 409:  # 409: a conflicting request in flight, worth another try
        if kind == "overloaded":
            what = "overloaded" if status in (503, 529) or error_type == "overloaded_error" else "server error"
        else:
            what = "gave up waiting" if kind == "timeout" else "conflict"
        return ProviderError(
            f"{where}: {what}{code}{detail}",
            kind=kind,
            status=status,
            retryable=True,
            retry_after=after,
            retry_at=time.time() + after if after is not None else None,
        )
    if status == 404 and "model" not in message.lower():
        path = urlsplit(endpoint).path if endpoint else ""
        what = f"has no endpoint {path}" if path else "has no such endpoint"
        hint = (
            "; set config api=chat (this server does not speak the Responses API)"
            if path.endswith("/responses")
            else ""
        )
        return ProviderError(f"{where} {what} (HTTP 404){detail}{hint}", status=status)
    hint = "; is the model name right?" if status == 404 else ""
    return ProviderError(f"{where}: request refused{code}{detail}{hint}", status=status)


# Error types providers put in a body or a stream's error event, by kind (the status may be absent or 200).
_TYPE_KINDS = {
    "authentication_error": "auth",
    "permission_error": "auth",
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "api_error": "overloaded",
    "server_error": "overloaded",
}


def connection_error(exc: BaseException, *, connector: str, base_url: str, timed_out: bool = False) -> ProviderError:
    if timed_out:
        return ProviderError(
            f"{connector} at {base_url}: no answer in time ({type(exc).__name__})", kind="timeout", retryable=True
        )
    # "unreachable": the executor marks the AI unhealthy and routes the task elsewhere (no attempt spent)
    return ProviderError(f"{connector}: cannot reach {base_url}: {exc}", kind="unreachable", retryable=True)


def provider_message(body: Any, fallback: str = "") -> str:
    """The human part of an error body ({"error": {"message"}}, {"error": "…"}, …), one line, short."""
    msg: Any = body
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
    text = str(msg if isinstance(msg, str) and msg else fallback).strip().splitlines()
    return text[0][:300] if text else ""


def error_type(body: Any) -> str | None:
    """The provider's error type in an error body ({"error": {"type"}} or {"type"}), if any."""
    if not isinstance(body, dict):
        return None
    err = body.get("error", body)
    kind = err.get("type") if isinstance(err, dict) else None
    return kind if isinstance(kind, str) else None


def transport_errors() -> tuple[type[BaseException], ...]:
    """The transport error classes of the HTTP libraries the SDKs use (httpx, httpx2), as loaded."""
    import sys

    found = [getattr(sys.modules.get(m), "TransportError", None) for m in ("httpx", "httpx2")]
    return tuple(c for c in found if isinstance(c, type))


@contextmanager
def sdk_errors(
    sdk: Any,
    *,
    connector: str,
    base_url: str,
    key_env: str | None,
    error_kind: Callable[[int | None], str | None] = status_error_kind,
) -> Iterator[None]:
    """Turn a Stainless SDK's errors (anthropic and openai share the classes) into ProviderError."""
    try:
        yield
    except sdk.APIStatusError as e:
        raise http_error(
            e.status_code,
            connector=connector,
            base_url=base_url,
            key_env=key_env,
            message=provider_message(e.body, e.message),
            headers=e.response.headers,
            error_type=error_type(e.body),
            error_kind=error_kind,
            endpoint=_request_url(e.response),
        ) from None
    except sdk.APITimeoutError as e:
        raise connection_error(e, connector=connector, base_url=base_url, timed_out=True) from None
    except sdk.APIConnectionError as e:
        raise connection_error(e, connector=connector, base_url=base_url) from None
    except transport_errors() as e:  # the stream broke after it started
        raise connection_error(e, connector=connector, base_url=base_url) from None


def _request_url(response: Any) -> str | None:
    try:
        return str(response.request.url)
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError for a response built without a request
        return None


def abort_response(response: Any) -> None:
    """Make a read blocked on this HTTP response fail now: shut its socket down.

    Closing the response from another thread is not enough: on Linux a recv()
    already blocked on a socket is not woken by close(), only by shutdown().
    """
    stream = (getattr(response, "extensions", None) or {}).get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_ssl_contexts: dict[str, Any] = {}


def shared_ssl_context(client_cls: type) -> Any:
    """One TLS context per process for an SDK's HTTP client class (httpx or httpx2, whichever it subclasses).

    Building one loads the CA bundle, about 35 ms: once per run it was most of the tool loop's own time to
    first token. The context is built by the HTTP library itself, with its defaults (SSL_CERT_FILE, …).
    """
    import sys

    name = next((c.__module__.split(".")[0] for c in client_cls.__mro__ if c.__module__.startswith("httpx")), "")
    context = _ssl_contexts.get(name)
    if context is None:
        context = _ssl_contexts[name] = sys.modules[name].create_ssl_context()
    return context


def redact(text: str, *secrets: str | None) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "[REDACTED]")
    return text


__all__ = [
    "ProviderError",
    "abort_response",
    "connection_error",
    "error_type",
    "http_error",
    "provider_message",
    "redact",
    "reset_at",
    "retry_after_s",
    "sdk_errors",
    "shared_ssl_context",
    "transport_errors",
]
