"""What aictl knows about a connector, in one frozen `ConnectorSpec`, and the registry of specs.

Each connector module declares its spec (`SPEC`, at the end of the module) and
aictl finds every spec, built-in or third-party, through one Python entry
point group, ``aictl.connectors``: a package ships a connector by naming its
spec in its own ``pyproject.toml``::

    [project.entry-points."aictl.connectors"]
    mine = "mypackage.connector:SPEC"

The registry, router (through health), health, pricing and the connectors read
the spec; none of them keeps its own table of binaries, key variables, base
URLs or defaults. The rules that used to be written once per connector live
here once: the base URL (`ConnectorSpec.base_url`), the key variable
(`ConnectorSpec.key_env`, `ConnectorSpec.api_key`) and the status code → error
kind mapping (`status_error_kind`).

Loading a spec imports its connector module, so a connector module imports its
SDK (anthropic, openai, ollama: 0.1–2 s each) only inside the functions that
run a model; a test keeps it so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from aictl.domain.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from aictl.agents.connectors.base import Connector
    from aictl.domain.models import AIRecord

ENTRY_POINT_GROUP = "aictl.connectors"
ConnectorKind = Literal["cli", "sdk", "command"]
# A health probe: (ai, its spec, timeout in seconds) -> {"ok", "detail", …}; it may raise, health.check catches.
Probe = Callable[["AIRecord", "ConnectorSpec", float], dict[str, Any]]


def status_error_kind(status: int | None) -> str | None:
    """HTTP status → ConnectorResult.error_kind; every kind but auth and other is transient.

    5xx (500, 502, 503, 504 and Anthropic's 529) is `overloaded`: the provider, not the
    request, failed, so the run is retried and the router may send the task to another AI.
    408 (the server gave up waiting) is a `timeout`. None: no status to judge by.
    """
    if status is None:
        return None
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status >= 500:
        return "overloaded"
    if status == 408:
        return "timeout"
    return "other"


TRANSIENT_KINDS = frozenset({"rate_limit", "overloaded", "timeout"})


@dataclass(frozen=True)
class ConnectorSpec:
    """Everything aictl needs to know about one connector besides running it."""

    name: str  # what `aictl ai register … --connector NAME` takes
    kind: ConnectorKind  # cli: an agent CLI; sdk: a model API; command: a shell command, no AI
    factory: Callable[[], Connector]  # builds the connector that runs tasks (its class, usually)
    binary: str | None = None  # cli: the executable's default name (config `binary` overrides)
    sdk_module: str | None = None  # sdk: the package the run imports (never imported by the spec)
    default_key_env: str | None = None  # the variable holding the API key (config `api_key_env` overrides)
    default_base_url: str | None = None  # None: the CLI's or SDK's own default
    url_strip: tuple[str, ...] = ()  # path endings dropped from a configured URL (the SDK adds them itself)
    url_path: str = ""  # appended to a URL that has no path (e.g. /v1 for OpenAI-style SDKs)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # config values used when the AI's leaves them out
    config_types: Mapping[str, tuple[type, ...]] = field(default_factory=dict)  # its own config keys' types
    config_choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # keys taking one of a few values
    secret_env_keys: frozenset[str] = frozenset({"api_key_env"})  # config keys naming a secret's variable
    # Config keys that would hold a secret itself: refused by the registry (besides the names that look like one).
    secret_keys: frozenset[str] = frozenset({"api_key"})
    probe: Probe | None = None  # the real health check (`aictl ai status`); None: nothing to check
    error_kind: Callable[[int | None], str | None] = status_error_kind
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # USD per million tokens, by model
    local: bool = False  # runs models on the user's hardware: they cost nothing unless config prices them

    def config(self, ai: AIRecord | None) -> dict[str, Any]:
        """The AI's config over this connector's defaults."""
        return {**self.defaults, **((ai.config or {}) if ai is not None else {})}

    def base_url(self, ai: AIRecord | None) -> str | None:
        """The URL the SDK or CLI is given: config `base_url`, else the default; None: the tool's own default."""
        configured = ((ai.config or {}).get("base_url") if ai is not None else None) or self.default_base_url
        url = str(configured or "").rstrip("/")
        for suffix in self.url_strip:
            if url.endswith(suffix):
                url = url[: -len(suffix)]
        if url and self.url_path and urlsplit(url).path in ("", "/"):
            url += self.url_path
        return url or None

    def key_env(self, ai: AIRecord | None) -> str | None:
        """The environment variable holding this AI's API key (None: it needs none)."""
        return ((ai.config or {}).get("api_key_env") if ai is not None else None) or self.default_key_env

    def api_key(self, ai: AIRecord | None) -> tuple[str | None, str | None]:
        """(variable name, its value in aictl's environment); the value is never stored or logged."""
        env = self.key_env(ai)
        return env, (os.environ.get(env) or None) if env else None

    def key_problem(self, ai: AIRecord | None) -> str | None:
        """Why the key stops a run here (its variable is unset), or None."""
        env, key = self.api_key(ai)
        if env and key is None:
            return f"API key variable {env} is not set"
        return None

    def secrets(self, ai: AIRecord | None) -> list[str]:
        """The secret values this AI's config points at (to redact from anything written)."""
        config = self.config(ai)
        names = {config.get(k) for k in self.secret_env_keys} | {self.key_env(ai)}
        return [v for v in (os.environ.get(n) for n in names if isinstance(n, str) and n) if v]


def _entry_point_specs() -> dict[str, ConnectorSpec]:
    from importlib.metadata import entry_points

    found: dict[str, ConnectorSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue  # the first distribution on sys.path wins, as for console scripts
        try:
            spec = ep.load()
        except Exception as e:  # a broken plugin names itself instead of taking aictl down
            raise ConfigError(
                f"connector plugin {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}",
                hint="fix or uninstall the package that provides it",
            ) from e
        if not isinstance(spec, ConnectorSpec) or spec.name != ep.name:
            raise ConfigError(
                f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP} ({ep.value}) is not a "
                f"ConnectorSpec named {ep.name!r}"
            )
        found[ep.name] = spec
    if "command" not in found:
        raise ConfigError(
            "aictl's built-in connectors are not registered: its package metadata is missing or stale",
            hint="reinstall aictl: pip install -e . (or make install)",
        )
    return found


class SpecRegistry:
    """Entry points, loaded on first use, plus specs registered in-process (tests, embedding programs)."""

    def __init__(self) -> None:
        self._loaded: dict[str, ConnectorSpec] | None = None
        self.added: dict[str, ConnectorSpec] = {}  # in-process registrations, over the entry points

    def _all(self) -> dict[str, ConnectorSpec]:
        if self._loaded is None:
            self._loaded = _entry_point_specs()
        return {**self._loaded, **self.added}

    def get(self, name: str) -> ConnectorSpec:
        specs = self._all()
        if name not in specs:
            raise UsageError(f"unknown connector {name!r}", hint=f"known connectors: {', '.join(sorted(specs))}")
        return specs[name]

    def find(self, name: str) -> ConnectorSpec | None:
        return self._all().get(name)

    def names(self) -> list[str]:
        return sorted(self._all())

    def specs(self) -> list[ConnectorSpec]:
        specs = self._all()
        return [specs[n] for n in sorted(specs)]


SPECS = SpecRegistry()


def register(spec: ConnectorSpec | str, factory: Callable[[], Connector] | None = None) -> ConnectorSpec:
    """Add a connector in this process: a spec, or (name, factory) for one that needs no key, binary or URL."""
    if isinstance(spec, str):
        if factory is None:
            raise UsageError("register(name, factory) needs the factory that builds the connector")
        spec = ConnectorSpec(name=spec, kind="sdk", factory=factory)
    SPECS.added[spec.name] = spec
    return spec


def spec_for(name: str) -> ConnectorSpec:
    """The spec of connector `name`; UsageError naming the known ones when there is none."""
    return SPECS.get(name)


__all__ = [
    "ENTRY_POINT_GROUP",
    "SPECS",
    "TRANSIENT_KINDS",
    "ConnectorKind",
    "ConnectorSpec",
    "Probe",
    "SpecRegistry",
    "register",
    "spec_for",
    "status_error_kind",
]
