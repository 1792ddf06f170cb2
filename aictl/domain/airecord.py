"""A registered AI, as a pydantic model: validated from configuration and store rows (not on a hot CLI path)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class _Model(BaseModel):
    model_config = {"use_enum_values": False}


class AIRecord(_Model):
    """A registered AI: which connector runs it, with which model, and what it may take."""

    id: str
    connector: str  # claude-code | codex | anthropic | openai | ollama | command
    model: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    max_concurrency: int = 1
    # base_url, binary, args (list), api_key_env (the NAME of an env var; never the secret),
    # api (openai: chat|responses), max_turns, max_tokens, model_size_gb, requires_gpu,
    # prices ({input, output, cache_read} USD per million tokens)
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    paused_until: float | None = None  # a rate/usage limit: the router skips it until then
    pause_reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
