"""Connector registry: one interface, built-ins registered like third-party ones would be.

AI connectors are registered lazily by name: their modules (and the SDKs they use)
are imported only when a run or a health check needs them.
"""

from __future__ import annotations

import importlib
from typing import Callable

from aictl.agents.connectors.base import Connector, ConnectorResult, RunContext
from aictl.domain.errors import UsageError

_FACTORIES: dict[str, Callable[[], Connector]] = {}

# connector name → module under aictl.agents.connectors (for the lazy factory and `health`)
BUILTIN_MODULES = {
    "command": "command",
    "claude-code": "claude_code",
    "codex": "codex",
    "anthropic": "anthropic_api",
    "openai": "openai_api",
    "ollama": "ollama_api",
}


def register(name: str, factory: Callable[[], Connector]) -> None:
    _FACTORIES[name] = factory


def known_connectors() -> list[str]:
    return sorted(_FACTORIES)


def get_connector(name: str) -> Connector:
    if name not in _FACTORIES:
        raise UsageError(f"unknown connector {name!r}", hint=f"known connectors: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name]()


def connector_module(name: str):
    """The module of a built-in connector, or None when it is not a built-in or not installed."""
    module = BUILTIN_MODULES.get(name)
    if module is None:
        return None
    try:
        return importlib.import_module(f"aictl.agents.connectors.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"aictl.agents.connectors.{module}":
            return None
        raise


def _lazy(name: str) -> Callable[[], Connector]:
    """A factory that imports the connector's module on first use and builds the class whose `name` is `name`."""

    def factory() -> Connector:
        module = connector_module(name)
        if module is None:
            raise UsageError(f"connector {name!r} is not available in this aictl installation",
                             hint=f"known connectors: {', '.join(sorted(_FACTORIES))}")
        for value in vars(module).values():
            if isinstance(value, type) and getattr(value, "name", None) == name and hasattr(value, "run"):
                return value()
        raise UsageError(f"module {module.__name__} defines no connector named {name!r}")

    return factory


for _name in BUILTIN_MODULES:
    register(_name, _lazy(_name))

__all__ = ["BUILTIN_MODULES", "Connector", "ConnectorResult", "RunContext", "connector_module", "get_connector",
           "known_connectors", "register"]
