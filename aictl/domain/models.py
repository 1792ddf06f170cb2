"""Plain pydantic types that services take and return (the CLI renders them)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field, field_serializer

from aictl.domain.status import TaskStatus


def ts_to_dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


class _Model(BaseModel):
    model_config = {"use_enum_values": False}


class Task(_Model):
    id: int
    title: str
    description: str = ""
    type: str = "task"
    priority: int = 0
    status: TaskStatus
    labels: list[str] = Field(default_factory=list)
    required_capabilities: list[str] = Field(default_factory=list)
    dependencies: list[int] = Field(default_factory=list)
    lock_paths: list[str] = Field(default_factory=list)
    exclusive: bool = False
    owner: str | None = None
    lease_epoch: int = 0
    lease_expires_at: float | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    next_run_at: float | None = None
    created_at: float
    updated_at: float
    result: Any = None
    command: str | None = None
    verify: str | None = None
    ai: str | None = None  # the registered AI the latest claim was made for
    activity: str | None = None  # the running agent's latest action, one line

    @field_serializer("lease_expires_at", "heartbeat_at", "next_run_at", "created_at", "updated_at")
    def _iso(self, v: float | None) -> str | None:
        dt = ts_to_dt(v)
        return None if dt is None else dt.isoformat(timespec="milliseconds")


class Lease(_Model):
    """What a claimer must present to act on a task."""

    task_id: int
    owner: str
    lease_epoch: int
    lease_expires_at: float

    @field_serializer("lease_expires_at")
    def _iso(self, v: float) -> str:
        return ts_to_dt(v).isoformat(timespec="milliseconds")


class HeldLock(_Model):
    task_id: int
    pattern: str
    owner: str
    lease_epoch: int
    acquired_at: float

    @field_serializer("acquired_at")
    def _iso(self, v: float) -> str:
        return ts_to_dt(v).isoformat(timespec="milliseconds")


class Event(_Model):
    id: int
    ts: float
    actor: str
    action: str
    task_id: int | None = None
    lease_epoch: int | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    data: dict[str, Any] | None = None

    @field_serializer("ts")
    def _iso(self, v: float) -> str:
        return ts_to_dt(v).isoformat(timespec="milliseconds")


class ReadyEntry(_Model):
    """One line of `aictl task ready`: can this task be claimed now, and if not, why."""

    id: int
    title: str
    status: TaskStatus
    priority: int
    ready: bool
    reasons: list[str] = Field(default_factory=list)


class DepNode(_Model):
    id: int
    title: str
    status: TaskStatus
    depth: int
    direction: str  # "dependency" or "dependent"


class AIRecord(_Model):
    """A registered AI: which connector runs it, with which model, and what it may take."""

    id: str
    connector: str  # claude-code | codex | anthropic | openai | ollama | command
    model: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    max_concurrency: int = 1
    # base_url, binary, args (list), api_key_env (the NAME of an env var; never the secret), api (openai: chat|responses),
    # max_turns, max_tokens, model_size_gb, requires_gpu, prices ({input, output, cache_read} USD per million tokens)
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    paused_until: float | None = None  # a rate/usage limit: the router skips it until then
    pause_reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
