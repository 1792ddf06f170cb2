"""Settings: flag > AICTL_* environment > project .ai/config.yaml > user config > default.

One pydantic model; `load_settings` records where each value came from so
`aictl config show` can say it. Deliberately not pydantic-settings: importing it
costs ~0.3 s, more than the whole budget of a CLI command.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aictl.domain.errors import ConfigError, NotInitialized

PROJECT_DIR_NAME = ".ai"
CONFIG_FILE = "config.yaml"


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


NOTIFY_EVENTS = ("task.failed", "task.awaiting_approval", "task.done", "task.rate_limited",
                 "daemon.started", "daemon.stopped", "test")


class NotificationChannel(BaseModel):
    """One entry of `notifications:` (delivery lives in aictl.daemon.notify; this is only its shape)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="label in logs and `aictl notify test` (default: type + target)")
    on: list[str] = Field(default_factory=lambda: ["*"], description="event types, or '*' for all")
    type: Literal["console", "webhook", "command"]
    url: str | None = Field(None, description="webhook: http(s) URL the event is POSTed to")
    secret_env: str | None = Field(None, description="webhook: NAME of the env var holding the HMAC secret")
    command: list[str] | str | None = Field(None, description="command: argv list, or a string run by /bin/sh -c")
    timeout_s: float = Field(10.0, gt=0, description="seconds one attempt may take")
    retries: int = Field(3, ge=0, le=20, description="attempts after the first one fails")

    @field_validator("on", mode="before")
    @classmethod
    def _on(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        for e in items or []:
            if e != "*" and e not in NOTIFY_EVENTS:
                raise ValueError(f"unknown event {e!r} (known: *, {', '.join(NOTIFY_EVENTS)})")
        return items

    @model_validator(mode="after")
    def _needs(self) -> "NotificationChannel":
        if self.type == "webhook":
            if not self.url:
                raise ValueError("a webhook needs url")
            if not re.match(r"^https?://[^/\s]+", self.url):
                raise ValueError(f"webhook url {self.url!r} must start with http:// or https://")
        elif self.url is not None:
            raise ValueError(f"url is only for webhooks, not {self.type}")
        if self.type == "command" and not self.command:
            raise ValueError("a command hook needs command (an argv list or a shell string)")
        if self.type != "command" and self.command is not None:
            raise ValueError(f"command is only for command hooks, not {self.type}")
        if self.secret_env is not None and self.type != "webhook":
            raise ValueError("secret_env is only for webhooks")
        if self.secret_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.secret_env):
            raise ValueError(f"secret_env must be the NAME of an environment variable, not {self.secret_env!r}")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    database_url: str | None = Field(None, description="SQLAlchemy-style URL; default sqlite at <home>/state.db")
    output: Literal["table", "json", "yaml", "name"] = Field("table", description="default output format")
    actor: str = Field(default_factory=default_actor, description="who this process acts as (audit log, default owner)")
    lease_ttl: float = Field(60.0, gt=0, description="seconds a claim lives without a heartbeat")
    heartbeat_interval: float = Field(20.0, gt=0, description="seconds between heartbeats of a running worker")
    max_attempts: int = Field(3, ge=1, description="default attempts before a task fails for good")
    backoff_base: float = Field(5.0, ge=0, description="first retry delay in seconds (doubles each attempt)")
    backoff_max: float = Field(300.0, ge=0, description="cap of the retry delay in seconds")
    on_dependency_failure: Literal["block", "fail"] = Field(
        "block", description="what a failed dependency does to its dependents"
    )
    sandbox_backend: Literal["local", "docker"] = Field("local", description="where agents run: local or docker")
    sandbox_image: str = Field("aictl-sandbox:latest", description="docker image for the sandbox (aictl sandbox build)")
    sandbox_network: bool = Field(False, description="let sandboxed runs reach the network (policy may tighten)")
    sandbox_memory_mb: int = Field(2048, ge=16, description="docker memory limit")
    sandbox_cpus: float = Field(2.0, gt=0, description="docker CPU limit")
    sandbox_pids: int = Field(512, ge=8, description="docker pids limit")
    execution_timeout: float = Field(1800.0, gt=0, description="hard timeout of one agent run, seconds")
    workspace_base: str = Field("HEAD", description="git ref new task workspaces start from")
    busy_timeout_ms: int = Field(30000, ge=0, description="SQLite busy timeout")
    secret_patterns: list[str] = Field(
        default_factory=list, description="extra regexes whose matches are redacted from logs and evidence"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("warning", description="stderr log level")
    daemon_workers: int = Field(2, ge=1, description="tasks a daemon runs at once (aictl daemon start --workers)")
    daemon_grace_s: float = Field(30.0, ge=0, description="on stop, seconds running tasks get to finish before release")
    notifications: list[NotificationChannel] = Field(
        default_factory=list, description="where events (task.failed, task.done, …) are sent: console, webhook, command"
    )

    # Resolved locations, not user settings.
    project_dir: Path | None = Field(None, exclude=True)
    home: Path | None = Field(None, exclude=True)
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)

    @field_validator("secret_patterns", mode="before")
    @classmethod
    def _patterns(cls, v: Any) -> Any:
        items = [p for p in v.split(",") if p.strip()] if isinstance(v, str) else v
        for p in items or []:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"secret pattern {p!r} is not a valid regex: {e}") from None
        return items

    @field_validator("notifications", mode="before")
    @classmethod
    def _notifications(cls, v: Any) -> Any:
        if isinstance(v, str):  # AICTL_NOTIFICATIONS holds a JSON list
            try:
                return json.loads(v) if v.strip() else []
            except json.JSONDecodeError as e:
                raise ValueError(f"expected a JSON list of channels: {e}") from None
        if isinstance(v, list):  # YAML 1.1 reads the key `on:` as the boolean true
            v = [{("on" if k is True else k): x for k, x in item.items()} if isinstance(item, dict) else item
                 for item in v]
        return v

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.home is None:
            raise NotInitialized(
                "not inside an aictl project (no .ai/ directory here or above)",
                hint="create one with: aictl init",
            )
        return f"sqlite:///{self.home / 'state.db'}"


USER_KEYS = [
    name for name in Settings.model_fields if name not in ("project_dir", "home", "sources")
]


def user_config_dir() -> Path:
    if os.environ.get("AICTL_CONFIG_DIR"):
        return Path(os.environ["AICTL_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aictl"


def find_project(start: Path | None = None) -> Path | None:
    """The nearest directory at or above `start` holding a .ai/ directory."""
    cur = (start or Path.cwd()).resolve()
    for d in (cur, *cur.parents):
        if (d / PROJECT_DIR_NAME).is_dir():
            return d
    return None


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return {}  # only comments (as `aictl init` writes it): no need to import a YAML parser
    from aictl.yamlfile import parse_yaml

    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - set(USER_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s): {', '.join(unknown)}",
            hint=f"known settings: {', '.join(USER_KEYS)}",
        )
    return data


def load_settings(project: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings and remember the source of every value."""
    env = os.environ
    project = project or env.get("AICTL_PROJECT")
    project_dir = Path(project).resolve() if project else find_project()
    home: Path | None
    if env.get("AICTL_HOME"):
        home = Path(env["AICTL_HOME"]).resolve()
        project_dir = project_dir or home.parent
    else:
        home = project_dir / PROJECT_DIR_NAME if project_dir else None

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    user_file = user_config_dir() / CONFIG_FILE
    if user_file.is_file():
        layers.append((str(user_file), _read_yaml_mapping(user_file)))
    if home is not None and (home / CONFIG_FILE).is_file():
        layers.append((str(home / CONFIG_FILE), _read_yaml_mapping(home / CONFIG_FILE)))
    env_layer = {k: env[f"AICTL_{k.upper()}"] for k in USER_KEYS if f"AICTL_{k.upper()}" in env}
    layers.append(("env", {k: v for k, v in env_layer.items() if v != ""}))
    layers.append(("flag", {k: v for k, v in (overrides or {}).items() if v is not None}))
    for source, layer in layers:
        for k, v in layer.items():
            values[k] = v
            sources[k] = f"env AICTL_{k.upper()}" if source == "env" else source
    try:
        settings = Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        if len(err["loc"]) > 1:  # inside a list/mapping setting: name the exact entry and field
            where = key + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err["loc"][1:])
            raise ConfigError(f"{sources.get(key, 'default')}: invalid setting {where}: {err['msg']}") from None
        raise ConfigError(
            f"invalid setting {key}={values.get(key)!r} (from {sources.get(key, 'default')}): {err['msg']}"
        ) from None
    for k in USER_KEYS:
        sources.setdefault(k, "default")
    settings.project_dir = project_dir
    settings.home = home
    settings.sources = sources
    if settings.secret_patterns:
        from aictl.audit import redact

        redact.configure(settings.secret_patterns)
    return settings
