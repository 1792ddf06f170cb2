"""The records services take and return (the CLI renders them).

Task, Lease, HeldLock, Event, ReadyEntry and DepNode are plain dataclasses with the slice of
pydantic's API the code uses (`model_dump(mode="json")`, `model_copy`, `model_fields`): every
hot CLI command builds them, and importing pydantic and building its models cost ~0.1 s a
process (bench/cli_latency.py). A pydantic model may still hold one as a field (e.g. the
executor's report): `__get_pydantic_core_schema__` serializes it through `model_dump`.
Timestamps are float seconds in Python and ISO-8601 strings (UTC, milliseconds) when dumped,
as the pydantic models did. AIRecord, validated from configuration, stays a pydantic model
in aictl/domain/airecord.py and is imported from here on first use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, dataclass_transform, overload

from aictl.domain.status import TaskStatus

if TYPE_CHECKING:
    from aictl.domain.airecord import AIRecord


@overload
def ts_to_dt(ts: float) -> datetime: ...
@overload
def ts_to_dt(ts: None) -> None: ...
def ts_to_dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def _iso(ts: float | None) -> str | None:
    dt = ts_to_dt(ts)
    return None if dt is None else dt.isoformat(timespec="milliseconds")


def _plain(value: Any, json_mode: bool) -> Any:
    if isinstance(value, Record):
        return value.model_dump(mode="json" if json_mode else "python")
    if isinstance(value, Enum):
        return value.value if json_mode else value
    if isinstance(value, (list, tuple)):
        return [_plain(v, json_mode) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, json_mode) for k, v in value.items()}
    return value


@dataclass_transform(field_specifiers=(field,))  # tells type checkers that subclasses are dataclasses
class Record:
    """Base of the records: dumps like a pydantic model (timestamps in `_timestamps` as ISO strings)."""

    _timestamps: ClassVar[tuple[str, ...]] = ()
    model_fields: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(cls)
        cls.model_fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    def model_dump(
        self, *, mode: str = "python", exclude: set[str] | None = None, exclude_none: bool = False
    ) -> dict[str, Any]:
        json_mode = mode == "json"
        out: dict[str, Any] = {}
        for name in self.model_fields:
            if exclude and name in exclude:
                continue
            value = getattr(self, name)
            if exclude_none and value is None:
                continue
            out[name] = _iso(value) if name in self._timestamps else _plain(value, json_mode)
        return out

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        return dataclasses.replace(self, **(update or {}))  # type: ignore[type-var]

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        return data if isinstance(data, cls) else cls(**data)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.model_validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v, info: v.model_dump(mode=info.mode), info_arg=True
            ),
        )


def _status(value: Any) -> TaskStatus:
    return value if isinstance(value, TaskStatus) else TaskStatus(value)


class Task(Record):
    _timestamps = ("lease_expires_at", "heartbeat_at", "next_run_at", "created_at", "updated_at")

    id: int
    title: str
    status: TaskStatus
    created_at: float
    updated_at: float
    description: str = ""
    type: str = "task"
    priority: int = 0
    labels: list[str] = field(default_factory=list)
    required_capabilities: list[str] = field(default_factory=list)
    dependencies: list[int] = field(default_factory=list)
    lock_paths: list[str] = field(default_factory=list)
    exclusive: bool = False
    owner: str | None = None
    lease_epoch: int = 0
    lease_expires_at: float | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    next_run_at: float | None = None
    result: Any = None
    command: str | None = None
    verify: str | None = None
    ai: str | None = None  # the registered AI the latest claim was made for
    activity: str | None = None  # the running agent's latest action, one line

    # The JSON field order of the pydantic model this replaced (tests and users read it).
    _ORDER: ClassVar[tuple[str, ...]] = (
        "id",
        "title",
        "description",
        "type",
        "priority",
        "status",
        "labels",
        "required_capabilities",
        "dependencies",
        "lock_paths",
        "exclusive",
        "owner",
        "lease_epoch",
        "lease_expires_at",
        "heartbeat_at",
        "attempts",
        "max_attempts",
        "next_run_at",
        "created_at",
        "updated_at",
        "result",
        "command",
        "verify",
        "ai",
        "activity",
    )

    def __post_init__(self) -> None:
        self.status = _status(self.status)

    @property
    def held(self) -> bool:
        """A lease is held on it now (claimed or running); otherwise owner/ai/epoch name the last holder."""
        return self.status in (TaskStatus.CLAIMED, TaskStatus.RUNNING)

    def model_dump(
        self, *, mode: str = "python", exclude: set[str] | None = None, exclude_none: bool = False
    ) -> dict[str, Any]:
        """As stored, except `owner`: the holder now, None when no lease is held (released, done, queued…).

        `last_owner`, `last_ai`, `last_epoch` name the latest claim's holder, whether it still holds it or not.
        """
        out = super().model_dump(mode=mode, exclude=exclude, exclude_none=exclude_none)
        if not self.held and "owner" in out:
            out["owner"] = None
            if exclude_none:
                del out["owner"]
        last = {"last_owner": self.owner, "last_ai": self.ai, "last_epoch": self.lease_epoch or None}
        out.update(
            {k: v for k, v in last.items() if not (exclude and k in exclude) and not (exclude_none and v is None)}
        )
        return out


Task.model_fields = {name: Task.model_fields[name] for name in Task._ORDER}


class Lease(Record):
    """What a claimer must present to act on a task."""

    _timestamps = ("lease_expires_at",)

    task_id: int
    owner: str
    lease_epoch: int
    lease_expires_at: float


class HeldLock(Record):
    _timestamps = ("acquired_at",)

    task_id: int
    pattern: str
    owner: str
    lease_epoch: int
    acquired_at: float


class Event(Record):
    _timestamps = ("ts",)

    id: int
    ts: float
    actor: str
    action: str
    task_id: int | None = None
    lease_epoch: int | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


class ReadyEntry(Record):
    """One line of `aictl task ready`: can this task be claimed now, and if not, why."""

    id: int
    title: str
    status: TaskStatus
    priority: int
    ready: bool
    reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = _status(self.status)


class DepNode(Record):
    id: int
    title: str
    status: TaskStatus
    depth: int
    direction: str  # "dependency" or "dependent"

    def __post_init__(self) -> None:
        self.status = _status(self.status)


def __getattr__(name: str) -> Any:
    if name == "AIRecord":  # pydantic, so imported only by the code that needs it
        from aictl.domain.airecord import AIRecord

        return AIRecord
    raise AttributeError(name)


__all__ = [
    "AIRecord",
    "DepNode",
    "Event",
    "HeldLock",
    "Lease",
    "ReadyEntry",
    "Record",
    "Task",
    "TaskStatus",
    "ts_to_dt",
]
