"""Connector registry: one interface, built-ins registered like third-party ones would be."""

from __future__ import annotations

from typing import Callable

from aictl.agents.connectors.base import Connector, ConnectorResult, RunContext
from aictl.domain.errors import UsageError

_FACTORIES: dict[str, Callable[[], Connector]] = {}


def register(name: str, factory: Callable[[], Connector]) -> None:
    _FACTORIES[name] = factory


def get_connector(name: str) -> Connector:
    if name not in _FACTORIES:
        raise UsageError(f"unknown connector {name!r}", hint=f"known connectors: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name]()


def _command() -> Connector:
    from aictl.agents.connectors.command import CommandConnector

    return CommandConnector()


register("command", _command)

__all__ = ["Connector", "ConnectorResult", "RunContext", "get_connector", "register"]
