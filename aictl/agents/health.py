"""Health checks for registered AIs, from their connector's spec.

Two depths:

- `quick_check(ai)`: what the router asks before every assignment, with no
  network and no subprocess: is the spec's CLI binary there (or its SDK
  installed, found without importing it), is the API key's environment variable set.
- `check(ai)`: what `aictl ai status` runs, for real: the spec's probe (a CLI's
  ``--version``, a provider's model list and whether the AI's model is in it;
  see connectors/probes.py), timed, and never raising.

Only the standard library is used (urllib, subprocess), so importing this is cheap.
"""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING, Any

from aictl.agents.connectors.probes import HTTP_TIMEOUT_S, bearer, get_json, missing_binary, resolve_binary
from aictl.agents.connectors.spec import spec_for

if TYPE_CHECKING:
    from aictl.domain.models import AIRecord


def quick_check(ai: AIRecord) -> list[str]:
    """Reasons this AI cannot run anything now, found without network or subprocess (empty: fine)."""
    spec = spec_for(ai.connector)
    problems = []
    if spec.kind == "cli" and resolve_binary(ai, spec) is None:
        problems.append(missing_binary(ai, spec))
    if spec.sdk_module and importlib.util.find_spec(spec.sdk_module) is None:
        problems.append(f"the {spec.sdk_module} package is not installed (pip install {spec.sdk_module})")
    # The CLIs too: both connectors refuse to start without a key (subscription logins are not carried).
    key_problem = spec.key_problem(ai)
    if key_problem:
        problems.append(key_problem)
    return problems


def check(ai: AIRecord, *, timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    """A real health check: {"ok", "detail", "version" | "models", "model_listed", "elapsed_s"}; never raises."""
    t0 = time.monotonic()
    try:
        spec = spec_for(ai.connector)
        if spec.probe is None:
            result = {"ok": True, "detail": f"connector {ai.connector!r} needs no service"}
        else:
            result = dict(spec.probe(ai, spec, timeout))
    except Exception as e:  # noqa: BLE001 - a health check reports; it never takes the caller down
        result = {"ok": False, "detail": f"health check failed: {type(e).__name__}: {e}"}
    result.setdefault("ok", False)
    result.setdefault("detail", "")
    result["elapsed_s"] = round(time.monotonic() - t0, 3)
    return result


UNHEALTHY_PREFIX = "unhealthy:"  # pause_reason of an AI whose provider failed (the router names it)
UNHEALTHY_PAUSE_S = 300.0  # how long an unhealthy AI is skipped unless a passing probe (aictl ai status) lifts it


def apply_probe(registry: Any, ai: AIRecord, result: dict[str, Any], *, pause_s: float, now: float) -> AIRecord:
    """A failed probe pauses the AI as unhealthy (a rate-limit pause is kept); a passing one lifts such a pause."""
    unhealthy = (ai.pause_reason or "").startswith(UNHEALTHY_PREFIX)
    if not result.get("ok"):
        return registry.pause(ai.id, now + pause_s, f"{UNHEALTHY_PREFIX} {result.get('detail') or 'probe failed'}")
    if unhealthy:
        return registry.resume(ai.id)
    return ai


def ollama_model_size_gb(ai: AIRecord, *, timeout: float = 1.0) -> float | None:
    """The model's size from config `model_size_gb`, else from Ollama's /api/tags; None when unknown."""
    if ai.config.get("model_size_gb"):
        return float(ai.config["model_size_gb"])
    spec = spec_for(ai.connector)
    _, key = spec.api_key(ai)
    try:
        body = get_json(f"{spec.base_url(ai)}/api/tags", bearer(key), timeout)
    except (OSError, ValueError):
        return None
    wanted = {ai.model, f"{ai.model}:latest"} if ai.model and ":" not in ai.model else {ai.model}
    for m in (body or {}).get("models") or []:
        if (m.get("name") or m.get("model")) in wanted and m.get("size"):
            return round(m["size"] / 2**30, 2)
    return None


__all__ = ["UNHEALTHY_PAUSE_S", "UNHEALTHY_PREFIX", "apply_probe", "check", "ollama_model_size_gb", "quick_check"]
