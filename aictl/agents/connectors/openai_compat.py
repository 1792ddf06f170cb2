"""Which OpenAI-compatible server an AI talks to, and the request settings that follow from it.

OpenAI-compatible servers differ where it matters to a tool loop (facts measured
on llama-cpp-python 0.3.36 with ``--chat_format chatml-function-calling``):

- llama.cpp ignores ``stream_options.include_usage`` (no usage while
  streaming; unstreamed it reports it) and ``max_completion_tokens`` (only
  ``max_tokens`` limits it); with no ``tool_choice`` it drops the tools from the
  prompt, streamed with ``tool_choice: "auto"`` it answers empty text, and
  ``"required"`` is an error: unstreamed ``"auto"`` is what makes it call tools;
- OpenAI itself wants ``max_completion_tokens`` (reasoning models refuse
  ``max_tokens``) and reports usage in the stream when asked.

Four per-AI settings (config keys, each overridable with ``aictl ai register …
--config KEY=VALUE``) cover them: ``stream`` (true/false), ``tool_choice``
(``auto``, ``none``, ``required``, ``omit`` = send none, or a tool's name to force
it on the first turn; or a list, one per turn, the last repeating), ``max_tokens_param``
(``max_tokens`` or ``max_completion_tokens``) and ``stream_usage`` (whether the server
reports usage while streaming: when false, ``stream_options`` is not sent). What is not
set comes from the server's profile: ``server`` names it, or ``auto`` (the default) detects it once per base URL and
process from one cheap ``GET /models`` (the ``owned_by`` of its models names the
server; the official API is known by its host).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DETECT_TIMEOUT_S = 2.0
SETTING_KEYS = ("stream", "tool_choice", "max_tokens_param", "stream_usage")
TOOL_CHOICES = ("auto", "none", "required", "omit")
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")

# Server profiles: the settings an AI gets when its config leaves them out.
PROFILES: dict[str, dict[str, Any]] = {
    "openai": {
        "stream": True,
        "tool_choice": "omit",
        "max_tokens_param": "max_completion_tokens",
        "stream_usage": True,
    },
    "llama.cpp": {"stream": False, "tool_choice": "auto", "max_tokens_param": "max_tokens", "stream_usage": False},
    "vllm": {"stream": True, "tool_choice": "auto", "max_tokens_param": "max_tokens", "stream_usage": True},
    "ollama": {"stream": True, "tool_choice": "omit", "max_tokens_param": "max_tokens", "stream_usage": True},
    # Anything else (LM Studio, LocalAI, gateways): the widely accepted forms; usage is not trusted to stream.
    "generic": {"stream": True, "tool_choice": "auto", "max_tokens_param": "max_tokens", "stream_usage": False},
}
SERVERS = ("auto", *PROFILES)

# `owned_by` in GET /models, by server: llama-cpp-python says "me", llama.cpp's own server "llamacpp".
OWNED_BY = {
    "me": "llama.cpp",
    "llamacpp": "llama.cpp",
    "vllm": "vllm",
    "library": "ollama",
    "openai": "openai",
    "system": "openai",
    "openai-internal": "openai",
}
OPENAI_HOSTS = ("api.openai.com",)

_detected: dict[str, str] = {}  # base URL -> server, per process (a daemon probes each server once)
_lock = threading.Lock()


@dataclass(frozen=True)
class Settings:
    server: str  # the profile used
    stream: bool
    tool_choice: str | list[str]  # auto | none | required | omit | a tool name, or one of those per turn
    max_tokens_param: str
    stream_usage: bool
    detected: bool = False  # the server was named by a probe, not by config


def server_from_models(body: Any) -> str:
    """The server a GET /models answer names ("generic" when nothing in it does)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    for model in data if isinstance(data, list) else []:
        owner = model.get("owned_by") if isinstance(model, Mapping) else None
        if isinstance(owner, str) and owner.lower() in OWNED_BY:
            return OWNED_BY[owner.lower()]
    return "generic"


def detect_server(base_url: str, key: str | None, timeout: float = DETECT_TIMEOUT_S) -> str:
    """The server at base_url, probed once per process; "generic" when the probe fails."""
    if (urlsplit(base_url).hostname or "") in OPENAI_HOSTS:
        return "openai"
    with _lock:
        if base_url in _detected:
            return _detected[base_url]
    from aictl.agents.connectors.probes import bearer, get_json

    try:
        server = server_from_models(get_json(f"{base_url}/models", bearer(key), timeout))
    except (OSError, ValueError):
        return "generic"  # not remembered: the next run probes again
    with _lock:
        _detected[base_url] = server
    return server


def forget_detected() -> None:
    """Drop the per-process detections (a server replaced on the same URL; tests)."""
    with _lock:
        _detected.clear()


def resolve(config: Mapping[str, Any], base_url: str, key: str | None) -> Settings:
    """The settings for one run: the AI's config over its server's profile (probed only when needed)."""
    server = str(config.get("server") or "auto")
    detected = False
    if server == "auto":
        if all(config.get(k) is not None for k in SETTING_KEYS):
            server = "generic"  # everything is set: no probe needed
        else:
            server, detected = detect_server(base_url, key), True
    profile = PROFILES.get(server, PROFILES["generic"])
    values = {k: config[k] if config.get(k) is not None else profile[k] for k in SETTING_KEYS}
    return Settings(server=server, detected=detected, **values)


def tool_choice_for(choice: str | list[str], turn: int, tool_names: list[str]) -> Any:
    """The request's tool_choice for turn `turn` (1-based; None: leave it out).

    One value: a forced choice (``required`` or a tool's name) applies to the first turn only, later turns
    are ``auto`` (forcing every turn would never let the model finish). A list gives each turn its own, the
    last one repeating: ``["write_file", "none"]`` forces a write, then asks for the answer in words.
    """
    if not tool_names:
        return None
    if isinstance(choice, list):
        step = choice[min(turn, len(choice)) - 1] if choice else "omit"
    else:
        step = choice if turn == 1 or choice in ("auto", "none", "omit") else "auto"
    if step == "omit":
        return None
    if step in ("auto", "none", "required"):
        return step
    return {"type": "function", "function": {"name": step}}


def tool_choice_problem(choice: Any, tool_names: list[str]) -> str | None:
    """Why a tool_choice setting is unusable for a run offering these tools, or None."""
    steps = choice if isinstance(choice, list) else [choice]
    for step in steps:
        if not isinstance(step, str):
            return f"tool_choice entries must be strings, not {step!r}"
        if tool_names and step not in TOOL_CHOICES and step not in tool_names:
            return f"tool_choice names {step!r}, which is not offered to this run"
    return None


def estimate_tokens(*parts: Any) -> int:
    """A rough token count (4 characters a token) of what was sent or generated, for usage no server reported."""
    import json

    chars = 0
    for part in parts:
        if part:
            chars += len(part) if isinstance(part, str) else len(json.dumps(part, default=str, ensure_ascii=False))
    return (chars + 3) // 4


__all__ = [
    "MAX_TOKENS_PARAMS",
    "PROFILES",
    "SERVERS",
    "SETTING_KEYS",
    "TOOL_CHOICES",
    "Settings",
    "detect_server",
    "estimate_tokens",
    "forget_detected",
    "resolve",
    "server_from_models",
    "tool_choice_for",
    "tool_choice_problem",
]
