"""Settings: flag > AICTL_* environment > project .ai/config.yaml > user config > default.

One table of settings (SETTINGS: type, default, bound, description) checked by hand, and
`load_settings` records where each value came from so `aictl config show` can say it. Not
pydantic: every CLI command loads settings, and importing pydantic costs ~0.1 s of a hot
command's 0.2 s budget (bench/cli_latency.py). The `notifications:` entries are nested and
rarer, so they alone are validated by a pydantic model (NotificationChannel), imported only
when some are configured. Deliberately not pydantic-settings either (~0.3 s to import).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl.domain.errors import ConfigError, NotInitialized

if TYPE_CHECKING:
    from aictl.config_channels import NOTIFY_EVENTS, NotificationChannel  # noqa: F401

PROJECT_DIR_NAME = ".ai"
CONFIG_FILE = "config.yaml"


def default_actor() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class SettingError(ValueError):
    """A setting's value is invalid: `loc` names it (and the entry inside it), `msg` says why."""

    def __init__(self, loc: tuple[Any, ...], msg: str):
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc, self.msg = loc, msg


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("Input should be a valid string")
    return v


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise ValueError("Input should be a valid boolean")


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("Input should be a valid integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise ValueError("Input should be a valid integer")


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("Input should be a valid number")
    try:
        number = float(v.strip() if isinstance(v, str) else v) if isinstance(v, (int, float, str)) else None
    except ValueError:
        number = None
    if number is None or number != number or number in (float("inf"), float("-inf")):
        raise ValueError("Input should be a finite number")  # inf/nan would pass every bound below
    return number


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError("Input should be " + ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}")
        return v

    return check


def _optional_str(v: Any) -> str | None:
    return None if v is None else _to_str(v)


def _patterns(v: Any) -> list[str]:
    items = [p for p in v.split(",") if p.strip()] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise ValueError("Input should be a valid list")
    for p in items:
        try:
            re.compile(_to_str(p))
        except re.error as e:
            raise ValueError(f"Value error, secret pattern {p!r} is not a valid regex: {e}") from None
    return list(items)


def _notifications(v: Any) -> list[Any]:
    if isinstance(v, str):  # AICTL_NOTIFICATIONS holds a JSON list
        try:
            v = json.loads(v) if v.strip() else []
        except json.JSONDecodeError as e:
            raise ValueError(f"Value error, expected a JSON list of channels: {e}") from None
    if not isinstance(v, list):
        raise ValueError("Input should be a valid list")
    if not v:
        return []
    from aictl.config_channels import validate_channels

    try:
        return validate_channels(v)
    except ValueError as e:  # pydantic's ValidationError: name the entry and the field
        err = e.errors()[0]  # type: ignore[attr-defined]
        raise SettingError(tuple(err["loc"]), err["msg"]) from None


@dataclass(frozen=True)
class Setting:
    convert: Callable[[Any], Any]
    default: Any
    description: str
    low: float | None = None  # bound, inclusive unless strict
    strict: bool = False

    def check(self, v: Any) -> Any:
        v = self.convert(v)
        if self.low is not None and (v <= self.low if self.strict else v < self.low):
            raise ValueError(f"Input should be greater than {'' if self.strict else 'or equal to '}{self.low:g}")
        return v


SETTINGS: dict[str, Setting] = {
    "database_url": Setting(_optional_str, None, "SQLAlchemy-style URL; default sqlite at <home>/state.db"),
    "output": Setting(_one_of("table", "json", "yaml", "name"), "table", "default output format"),
    "actor": Setting(_to_str, default_actor, "who this process acts as (audit log, default owner)"),
    "lease_ttl": Setting(_to_float, 60.0, "seconds a claim lives without a heartbeat", 0, True),
    "heartbeat_interval": Setting(_to_float, 20.0, "seconds between heartbeats of a running worker", 0, True),
    "max_attempts": Setting(_to_int, 3, "default attempts before a task fails for good", 1),
    "backoff_base": Setting(_to_float, 5.0, "first retry delay in seconds (doubles each attempt)", 0),
    "backoff_max": Setting(_to_float, 300.0, "cap of the retry delay in seconds", 0),
    "on_dependency_failure": Setting(
        _one_of("block", "fail"), "block", "what a failed dependency does to its dependents"
    ),
    "sandbox_backend": Setting(_one_of("local", "docker"), "local", "where agents run: local or docker"),
    "sandbox_image": Setting(_to_str, "aictl-sandbox:latest", "docker image for the sandbox (aictl sandbox build)"),
    "sandbox_network": Setting(_to_bool, False, "let sandboxed runs reach the network (policy may tighten)"),
    "sandbox_memory_mb": Setting(_to_int, 2048, "docker memory limit", 16),
    "sandbox_cpus": Setting(_to_float, 2.0, "docker CPU limit", 0, True),
    "sandbox_pids": Setting(_to_int, 512, "docker pids limit", 8),
    "execution_timeout": Setting(_to_float, 1800.0, "hard timeout of one agent run, seconds", 0, True),
    "workspace_base": Setting(_to_str, "HEAD", "git ref new task workspaces start from"),
    "workspace_pool": Setting(_to_int, 4, "finished worktrees kept per host, reset and reused by later tasks", 0),
    "integration_branch": Setting(
        _optional_str, None, "branch aictl merge lands done tasks on; default the main worktree's branch"
    ),
    "merge_strategy": Setting(
        _one_of("rebase", "merge"),
        "rebase",
        "how aictl merge puts a task's change on the target: rebase (linear) or merge",
    ),
    "remote": Setting(
        _optional_str,
        None,
        "git remote shared by several hosts: task branches are pushed to it, dependencies and the target fetched",
    ),
    "merge": Setting(
        _one_of("manual", "auto"),
        "manual",
        "auto: the daemon runs the merge queue itself whenever tasks are done",
    ),
    "merge_verify": Setting(_optional_str, None, "command run on every merge result, besides the task's verify"),
    "merge_batch": Setting(_to_int, 1, "done tasks aictl merge verifies together (bisected on failure)", 1),
    "merge_conflicts": Setting(
        _one_of("requeue", "resolve_task"),
        "requeue",
        "a rejected merge: send the task back, or create a follow-up resolve task",
    ),
    "busy_timeout_ms": Setting(_to_int, 30000, "SQLite busy timeout", 0),
    "secret_patterns": Setting(_patterns, list, "extra regexes whose matches are redacted from logs and evidence"),
    "log_level": Setting(_one_of("debug", "info", "warning", "error"), "warning", "stderr log level"),
    "daemon_workers": Setting(_to_int, 2, "tasks a daemon runs at once (aictl daemon start --workers)", 1),
    "daemon_grace_s": Setting(_to_float, 30.0, "on stop, seconds running tasks get to finish before release", 0),
    "notifications": Setting(
        _notifications, list, "where events (task.failed, task.done, …) are sent: console, webhook, command"
    ),
}


class Settings:
    """The effective settings: one attribute per SETTINGS key (checked when set), plus where they were found."""

    database_url: str | None
    output: str
    actor: str
    lease_ttl: float
    heartbeat_interval: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    on_dependency_failure: str
    sandbox_backend: str
    sandbox_image: str
    sandbox_network: bool
    sandbox_memory_mb: int
    sandbox_cpus: float
    sandbox_pids: int
    execution_timeout: float
    workspace_base: str
    workspace_pool: int
    integration_branch: str | None
    merge_strategy: str
    merge: str
    remote: str | None
    merge_verify: str | None
    merge_batch: int
    merge_conflicts: str
    busy_timeout_ms: int
    secret_patterns: list[str]
    log_level: str
    daemon_workers: int
    daemon_grace_s: float
    notifications: list[NotificationChannel]

    def __init__(self, **values: Any):
        # Resolved locations, not user settings.
        self.project_dir: Path | None = values.pop("project_dir", None)
        self.home: Path | None = values.pop("home", None)
        self.sources: dict[str, str] = values.pop("sources", None) or {}
        for key in values:
            if key not in SETTINGS:
                raise SettingError((key,), "Extra inputs are not permitted")
        for key, spec in SETTINGS.items():
            if key in values:
                setattr(self, key, values[key])
            elif not callable(spec.default) or spec.default is list:
                object.__setattr__(self, key, spec.default() if callable(spec.default) else spec.default)

    def __getattr__(self, name: str) -> Any:
        # A computed default (the actor: user@host) is made on first use; read-only commands never need it.
        spec = SETTINGS.get(name)
        if spec is None or not callable(spec.default):
            raise AttributeError(name)
        value = spec.default()
        object.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        spec = SETTINGS.get(name)
        if spec is not None:
            try:
                value = spec.check(value)
            except SettingError as e:
                raise SettingError((name, *e.loc), e.msg) from None
            except ValueError as e:
                raise SettingError((name,), str(e)) from None
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in SETTINGS) + ")"

    @property
    def project_home(self) -> Path:
        """The project's .ai/ directory (state, evidence, workspaces); NotInitialized outside a project."""
        if self.home is None:
            raise NotInitialized(
                "not inside an aictl project (no .ai/ directory here or above)",
                hint="create one with: aictl init",
            )
        return self.home

    @property
    def project_root(self) -> Path:
        """The repository aictl manages (the parent of .ai/); NotInitialized outside a project."""
        if self.project_dir is None:
            raise NotInitialized(
                "not inside an aictl project (no .ai/ directory here or above)",
                hint="create one with: aictl init",
            )
        return Path(self.project_dir)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.project_home / 'state.db'}"


USER_KEYS = list(SETTINGS)


def __getattr__(name: str) -> Any:
    if name in ("NotificationChannel", "NOTIFY_EVENTS"):  # pydantic: only for code that delivers notifications
        from aictl import config_channels

        return getattr(config_channels, name)
    raise AttributeError(name)


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
    except SettingError as e:
        key = str(e.loc[0]) if e.loc else "?"
        if len(e.loc) > 1:  # inside a list/mapping setting: name the exact entry and field
            where = key + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in e.loc[1:])
            raise ConfigError(f"{sources.get(key, 'default')}: invalid setting {where}: {e.msg}") from None
        raise ConfigError(
            f"invalid setting {key}={values.get(key)!r} (from {sources.get(key, 'default')}): {e.msg}"
        ) from None
    for k in USER_KEYS:
        sources.setdefault(k, "default")
    settings.project_dir = project_dir
    settings.home = home
    settings.sources = sources
    _register_secrets(settings)
    return settings


def _register_secrets(settings: Settings) -> None:
    """Tell the redactor every secret these settings point at (DB password, webhook secrets, patterns)."""
    secret_envs = [c.secret_env for c in settings.notifications if getattr(c, "secret_env", None)]
    if not (settings.secret_patterns or secret_envs or (settings.database_url and "@" in settings.database_url)):
        return  # the common case stays free of the redact import
    from aictl.domain import redact

    redact.register_url(settings.database_url)
    redact.register_env(*secret_envs)
    if settings.secret_patterns:
        redact.configure(settings.secret_patterns)
