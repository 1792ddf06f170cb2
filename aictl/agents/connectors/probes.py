"""The health probes connector specs use: a CLI's ``--version`` and a provider's model list.

A probe is ``probe(ai, spec, timeout) -> {"ok", "detail", …}``; `aictl.agents.health.check`
runs it, times it and turns an exception into a failed check. Only the standard library
is used (urllib, subprocess), so a spec that names a probe stays cheap to load.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aictl.agents.connectors.cli_common import INSTALL_HINT, agent_clis_prefix, find_binary

if TYPE_CHECKING:
    from aictl.agents.connectors.spec import ConnectorSpec, Probe
    from aictl.domain.models import AIRecord

HTTP_TIMEOUT_S = 3.0
VERSION_TIMEOUT_S = 10.0  # node CLIs take about a second to print their version; a cold disk more


def resolve_binary(ai: AIRecord, spec: ConnectorSpec) -> str | None:
    """The CLI this AI runs: config `binary` (a path or a name on PATH), else the spec's name on PATH or in the
    pinned install."""
    if spec.binary is None and not (ai.config or {}).get("binary"):
        return None
    return find_binary((ai.config or {}).get("binary"), spec.binary or "")


def missing_binary(ai: AIRecord, spec: ConnectorSpec) -> str:
    """What to say when the CLI is not found, with the command that fixes it."""
    name = (ai.config or {}).get("binary") or spec.binary or "?"
    where = "" if "/" in name else f" on PATH nor in {agent_clis_prefix()}"
    return f"{name} not found{where}; " + INSTALL_HINT.format(connector=spec.name, name=spec.binary or name)


def cli_version(ai: AIRecord, spec: ConnectorSpec, timeout: float) -> dict[str, Any]:
    """The CLI this AI would run answers ``--version``."""
    binary = resolve_binary(ai, spec)
    if binary is None:
        return {"ok": False, "detail": missing_binary(ai, spec)}
    limit = max(timeout, VERSION_TIMEOUT_S)
    try:
        proc = subprocess.run(
            [binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"{binary} --version did not answer within {limit:g}s", "binary": binary}
    except OSError as e:
        return {"ok": False, "detail": f"cannot run {binary}: {e.strerror}", "binary": binary}
    text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    version = text[0].strip() if text else ""
    if proc.returncode != 0:
        return {"ok": False, "detail": f"{binary} --version exited {proc.returncode}: {version}", "binary": binary}
    return {"ok": True, "detail": f"{binary}: {version}", "binary": binary, "version": version}


def get_json(url: str, headers: dict[str, str], timeout: float) -> Any:
    """GET a JSON document; urllib's HTTPError (with .code) or OSError/ValueError when that fails."""
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8") or "null")


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def model_list(
    path: str,
    names: Callable[[Any], list[str]],
    headers: Callable[[str | None], dict[str, str]] = bearer,
    describe: Callable[[Any], dict[str, Any]] | None = None,
) -> Probe:
    """A probe that GETs `path` under the AI's base URL (what a run would reach) and looks for its model;
    `describe` adds what else the answer tells (the openai connector: which server it is)."""

    def probe(ai: AIRecord, spec: ConnectorSpec, timeout: float) -> dict[str, Any]:
        import urllib.error

        _env, key = spec.api_key(ai)
        key_problem = spec.key_problem(ai)
        url = f"{spec.base_url(ai)}{path}"
        try:
            body = get_json(url, headers(key), timeout)
            listed = [n for n in names(body) if n]
        except urllib.error.HTTPError as e:
            detail = f"GET {url}: HTTP {e.code}"
            if e.code in (401, 403):
                detail += f" (check the API key{': ' + key_problem if key_problem else ''})"
            return {"ok": False, "detail": detail, "url": url}
        except (OSError, ValueError) as e:
            return {"ok": False, "detail": f"GET {url}: {getattr(e, 'reason', None) or e}", "url": url}
        model = ai.model
        found = model is None or model in listed or (":" not in model and f"{model}:latest" in listed)
        detail = f"{url}: {len(listed)} model(s)"
        if model:
            detail += f", {model} {'listed' if found else 'NOT listed'}"
        if key_problem:
            detail += f"; {key_problem}"
        extra = describe(body) if describe is not None else {}
        if extra.get("server"):
            detail += f"; server {extra['server']}"
        return {
            "ok": found and not key_problem,
            "detail": detail,
            "url": url,
            "models": listed,
            "model_listed": found,
            **extra,
        }

    return probe


__all__ = [
    "HTTP_TIMEOUT_S",
    "VERSION_TIMEOUT_S",
    "bearer",
    "cli_version",
    "get_json",
    "missing_binary",
    "model_list",
    "resolve_binary",
]
