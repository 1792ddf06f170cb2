"""What a model's tokens cost: the providers' published tables, overridable per AI, and never a guess.

Prices are USD per million tokens: ``{"input", "output", "cache_read", "cache_write"}``.
An AI's ``config.prices`` wins over its connector's table (`ConnectorSpec.prices`;
that is how a new model, a negotiated rate or a gateway's markup is priced). A
model that is in neither has no cost: ``cost_usd`` returns None rather than an
estimate, and a budget cannot be enforced for it. `run_cost` is what every
connector calls: one cost function for the CLIs and the tool loop alike.

Usage is counted the Anthropic way: ``input_tokens`` excludes cache reads and
cache writes, which are priced separately. Connectors convert other providers'
fields to this shape (OpenAI's ``prompt_tokens`` include ``cached_tokens``).

A connector whose spec is ``local`` (Ollama: models on your own hardware) prices
them at zero unless ``config.prices`` says otherwise (a hosted endpoint that bills per token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aictl.domain.errors import ConfigError

if TYPE_CHECKING:
    from aictl.agents.connectors.spec import ConnectorSpec
    from aictl.domain.models import AIRecord

# Published list prices (USD per million tokens), as of 2025-10. Cache writes are Anthropic's
# 5-minute cache (1.25 x input). Check the provider's page before relying on these for billing.
ANTHROPIC_PRICES: dict[str, dict[str, float]] = {
    "claude-opus-4-5": {"input": 5.0, "output": 25.0, "cache_read": 0.5, "cache_write": 6.25},
    "claude-opus-4-1": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
    "claude-opus-4": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "claude-3-7-sonnet": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
    "claude-3-5-haiku": {"input": 0.8, "output": 4.0, "cache_read": 0.08, "cache_write": 1.0},
}
OPENAI_PRICES: dict[str, dict[str, float]] = {
    "gpt-5": {"input": 1.25, "output": 10.0, "cache_read": 0.125},
    "gpt-5-mini": {"input": 0.25, "output": 2.0, "cache_read": 0.025},
    "gpt-5-nano": {"input": 0.05, "output": 0.4, "cache_read": 0.005},
    "gpt-4.1": {"input": 2.0, "output": 8.0, "cache_read": 0.5},
    "gpt-4.1-mini": {"input": 0.4, "output": 1.6, "cache_read": 0.1},
    "gpt-4.1-nano": {"input": 0.1, "output": 0.4, "cache_read": 0.025},
    "gpt-4o": {"input": 2.5, "output": 10.0, "cache_read": 1.25},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6, "cache_read": 0.075},
    "o4-mini": {"input": 1.1, "output": 4.4, "cache_read": 0.275},
    "o3": {"input": 2.0, "output": 8.0, "cache_read": 0.5},
}

PRICES = {**ANTHROPIC_PRICES, **OPENAI_PRICES}  # for a model asked about without its connector

FREE = {"input": 0.0, "output": 0.0, "cache_read": 0.0, "cache_write": 0.0}

# Dated snapshots share their family's price: claude-sonnet-4-5-20250929, gpt-4o-2024-08-06, claude-3-5-haiku-latest.
_SNAPSHOT = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)$")


def _validated(prices: Any, where: str) -> dict[str, float]:
    if not isinstance(prices, Mapping):
        raise ConfigError(f"{where} must be a mapping like {{input: 3, output: 15}} (USD per million tokens)")
    out: dict[str, float] = {}
    for key, value in prices.items():
        if key not in ("input", "output", "cache_read", "cache_write"):
            raise ConfigError(f"{where}: unknown price {key!r}", hint="known: input, output, cache_read, cache_write")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{key} must be a number >= 0 (USD per million tokens), not {value!r}")
        out[key] = float(value)
    missing = {"input", "output"} - set(out)
    if missing:
        raise ConfigError(f"{where} needs {' and '.join(sorted(missing))} (USD per million tokens)")
    return out


def prices_for(
    model: str | None, *, connector: str | ConnectorSpec | None = None, override: Mapping[str, Any] | None = None
) -> dict[str, float] | None:
    """The prices to use for this model (its connector's table, else all known), or None when nobody knows them."""
    if override is not None:
        return _validated(override, "config.prices")
    spec = None
    if connector is not None:
        from aictl.agents.connectors.spec import ConnectorSpec, spec_for

        spec = connector if isinstance(connector, ConnectorSpec) else spec_for(connector)
    table = spec.prices if spec is not None else PRICES
    if model:
        name = model.strip().lower()
        if name in table:
            return dict(table[name])
        base = _SNAPSHOT.sub("", name)
        if base in table:
            return dict(table[base])
    if spec is not None and spec.local:
        return dict(FREE)
    return None


def cost_usd(usage: Mapping[str, Any], prices: Mapping[str, float] | None) -> float | None:
    """USD for `usage` ({input_tokens, output_tokens, cache_read_tokens, cache_write_tokens}); None without prices."""
    if prices is None:
        return None
    per_token = {k: v / 1_000_000 for k, v in prices.items()}
    total = (
        usage.get("input_tokens", 0) * per_token["input"]
        + usage.get("output_tokens", 0) * per_token["output"]
        + usage.get("cache_read_tokens", 0) * per_token.get("cache_read", per_token["input"])
        + usage.get("cache_write_tokens", 0) * per_token.get("cache_write", per_token["input"])
    )
    return round(total, 8)


def run_cost(
    spec: ConnectorSpec, ai: AIRecord | None, usage: Mapping[str, Any], reported: float | None = None
) -> float | None:
    """USD for one run's usage: at the AI's prices (config, else its connector's table), else what the agent
    itself reported (Claude Code's total_cost_usd), else None."""
    model = ai.model if ai is not None else None
    config = (ai.config or {}) if ai is not None else {}
    priced = cost_usd(usage, prices_for(model, connector=spec, override=config.get("prices")))
    return priced if priced is not None else reported


__all__ = ["ANTHROPIC_PRICES", "FREE", "OPENAI_PRICES", "PRICES", "cost_usd", "prices_for", "run_cost"]
