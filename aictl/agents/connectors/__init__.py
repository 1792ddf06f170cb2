"""Connectors: one interface (`base.Connector`), one spec per connector (`spec.ConnectorSpec`).

Every connector, built-in or third-party, is found through the ``aictl.connectors``
entry point group (see spec.py); built-ins are listed in aictl's own pyproject.toml.
`get_connector(name)` builds the connector that runs a task; `spec_for(name)` is what the
registry, health, pricing and the router read. Specs load without the model SDKs.
"""

from __future__ import annotations

from aictl.agents.connectors.base import Connector, ConnectorResult, RunContext
from aictl.agents.connectors.spec import SPECS, ConnectorSpec, register, spec_for

# In-process registrations by name (`register(name, factory)`); popping one unregisters it.
_FACTORIES = SPECS.added


def known_connectors() -> list[str]:
    return SPECS.names()


def specs() -> list[ConnectorSpec]:
    """Every connector's spec, by name."""
    return SPECS.specs()


def get_connector(name: str) -> Connector:
    """A new connector of this name, ready to run; UsageError naming the known ones when there is none."""
    return spec_for(name).factory()


__all__ = [
    "Connector",
    "ConnectorResult",
    "ConnectorSpec",
    "RunContext",
    "get_connector",
    "known_connectors",
    "register",
    "spec_for",
    "specs",
]
