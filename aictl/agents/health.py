"""Health checks for registered AIs.

Two depths:

- `quick_check(ai)`: what the router asks before every assignment, with no
  network and no subprocess: is the CLI binary there, is the API key's
  environment variable set.
- `check(ai)`: what `aictl ai status` runs, for real: the CLI's `--version`,
  or a GET of the provider's model list (`/v1/models`, Ollama `/api/tags`)
  with a short timeout, and whether the configured model is listed. A
  connector module that defines `health(ai) -> dict` is asked instead.

Only the standard library is used (urllib, subprocess), so importing this is cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from aictl.agents.registry import (
    CLI_CONNECTORS,
    DEFAULT_BASE_URL,
    DEFAULT_BINARY,
    PROVIDER_CONNECTORS,
    key_env,
)
from aictl.domain.models import AIRecord

HTTP_TIMEOUT_S = 3.0
VERSION_TIMEOUT_S = 10.0


def resolve_binary(ai: AIRecord) -> str | None:
    """The CLI's executable: config `binary` (a path or a name on PATH), else the connector's default name."""
    if ai.connector in DEFAULT_BINARY:
        try:  # the CLI connectors' own lookup (PATH, then the pinned install of .ci/install-agent-clis)
            from aictl.agents.connectors.cli_common import find_binary
        except ImportError:
            pass
        else:
            return find_binary(ai.config.get("binary"), DEFAULT_BINARY[ai.connector])
    name = ai.config.get("binary") or DEFAULT_BINARY.get(ai.connector)
    if not name:
        return None
    if os.sep in name:
        path = Path(name).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name)


def base_url(ai: AIRecord) -> str:
    """The provider's root URL without a trailing /v1 (which SDK-style URLs carry)."""
    url = (ai.config.get("base_url") or DEFAULT_BASE_URL.get(ai.connector, "")).rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def quick_check(ai: AIRecord) -> list[str]:
    """Reasons this AI cannot run anything now, found without network or subprocess (empty: fine)."""
    problems = []
    if ai.connector in CLI_CONNECTORS and resolve_binary(ai) is None:
        name = ai.config.get("binary") or DEFAULT_BINARY[ai.connector]
        where = "" if os.sep in name else " on PATH nor in the agent CLI install (.ci/install-agent-clis)"
        problems.append(f"{name} not found{where} (set it with: aictl ai register {ai.id} … --binary PATH --replace)")
    env = key_env(ai)
    # The CLIs too: both connectors refuse to start without a key (subscription logins are not carried).
    if env and ai.connector in PROVIDER_CONNECTORS | CLI_CONNECTORS and not os.environ.get(env):
        problems.append(f"API key variable {env} is not set")
    return problems


def check(ai: AIRecord, *, timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    """A real health check: {"ok", "detail", "version" | "models", "model_listed", "elapsed_s"}; never raises."""
    from aictl.agents.connectors import connector_module

    t0 = time.monotonic()
    try:
        module = connector_module(ai.connector)
        own = getattr(module, "health", None) if module is not None else None
        if own is not None:
            import inspect

            takes_timeout = "timeout" in inspect.signature(own).parameters
            result = dict(own(ai, timeout=timeout) if takes_timeout else own(ai))
        elif ai.connector in CLI_CONNECTORS:
            result = check_cli(ai)
        elif ai.connector in PROVIDER_CONNECTORS:
            result = check_provider(ai, timeout=timeout)
        else:
            result = {"ok": True, "detail": f"connector {ai.connector!r} needs no service"}
    except Exception as e:  # a health check reports; it never takes the caller down
        result = {"ok": False, "detail": f"health check failed: {type(e).__name__}: {e}"}
    result.setdefault("ok", False)
    result.setdefault("detail", "")
    result["elapsed_s"] = round(time.monotonic() - t0, 3)
    return result


def check_cli(ai: AIRecord) -> dict[str, Any]:
    binary = resolve_binary(ai)
    if binary is None:
        return {"ok": False, "detail": quick_check(ai)[0]}
    try:
        proc = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"{binary} --version did not answer within {VERSION_TIMEOUT_S:g}s",
                "binary": binary}
    except OSError as e:
        return {"ok": False, "detail": f"cannot run {binary}: {e.strerror}", "binary": binary}
    text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    version = text[0].strip() if text else ""
    if proc.returncode != 0:
        return {"ok": False, "detail": f"{binary} --version exited {proc.returncode}: {version}", "binary": binary}
    return {"ok": True, "detail": f"{binary}: {version}", "binary": binary, "version": version}


def _get_json(url: str, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the URL is the AI's own base_url)
            return resp.status, json.loads(resp.read().decode("utf-8") or "null")
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", errors="replace")[:200]
        return e.code, body


def _auth_headers(ai: AIRecord) -> dict[str, str]:
    env = key_env(ai)
    key = os.environ.get(env, "") if env else ""
    if ai.connector == "anthropic":
        return {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}
    if ai.connector == "openai" and key:
        return {"Authorization": f"Bearer {key}"}
    return {}


def list_models(ai: AIRecord, *, timeout: float = HTTP_TIMEOUT_S) -> tuple[list[dict[str, Any]], str]:
    """The provider's models as [{name, size?}], and the URL asked. Raises OSError/ValueError on failure."""
    root = base_url(ai)
    url = f"{root}/api/tags" if ai.connector == "ollama" else f"{root}/v1/models"
    status, body = _get_json(url, _auth_headers(ai), timeout)
    if status != 200:
        raise ValueError(f"GET {url} answered HTTP {status}" + (f": {body}" if isinstance(body, str) and body else ""))
    if ai.connector == "ollama":
        items = (body or {}).get("models") or []
        return [{"name": m.get("name") or m.get("model"), "size": m.get("size")} for m in items], url
    items = (body or {}).get("data") or []
    return [{"name": m.get("id")} for m in items], url


def model_listed(ai: AIRecord, names: list[str]) -> bool:
    if not ai.model:
        return True
    if ai.connector == "ollama" and ":" not in ai.model:
        return ai.model in names or f"{ai.model}:latest" in names
    return ai.model in names


def check_provider(ai: AIRecord, *, timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    problems = quick_check(ai)
    try:
        models, url = list_models(ai, timeout=timeout)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        return {"ok": False, "detail": f"{base_url(ai)}: {reason}", **({"problems": problems} if problems else {})}
    names = [m["name"] for m in models if m["name"]]
    listed = model_listed(ai, names)
    ok = listed and not problems
    detail = f"{url}: {len(names)} model(s)"
    if ai.model:
        detail += f", {ai.model} {'listed' if listed else 'NOT listed'}"
    if problems:
        detail += "; " + "; ".join(problems)
    return {"ok": ok, "detail": detail, "models": names, "model_listed": listed}


def ollama_model_size_gb(ai: AIRecord, *, timeout: float = 1.0) -> float | None:
    """The model's size from config `model_size_gb`, else from Ollama's /api/tags; None when unknown."""
    if ai.config.get("model_size_gb"):
        return float(ai.config["model_size_gb"])
    try:
        models, _ = list_models(ai, timeout=timeout)
    except (OSError, ValueError):
        return None
    wanted = {ai.model, f"{ai.model}:latest"} if ai.model and ":" not in ai.model else {ai.model}
    for m in models:
        if m["name"] in wanted and m.get("size"):
            return round(m["size"] / 2**30, 2)
    return None


__all__ = ["base_url", "check", "list_models", "model_listed", "ollama_model_size_gb", "quick_check",
           "resolve_binary"]
