"""TaskSpec: what a user gives to create a task, checked by hand.

A plain dataclass rather than a pydantic model: `aictl task create` is a hot command,
and importing pydantic alone costs more than the rest of its start-up. The checks
are the ones the model had (unknown keys refused, a title, max_attempts >= 1, ints
and strings where they belong, labels and capabilities trimmed, sorted and unique);
a failure is a SpecError naming the field, which batch files turn into file:task:field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aictl.domain.errors import UsageError


class SpecError(UsageError):
    """A task spec field is wrong; `field` names it (as the batch file spells it after normalisation)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.reason = message


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(name, f"expected an integer, got {value!r}")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise SpecError(name, f"expected an integer, got {value!r}") from None
    return value


def _opt_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SpecError(name, f"expected a string, got {value!r}")
    return value


def _str_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SpecError(name, f"expected a list of strings, got {value!r}")
    return list(value)


@dataclass
class TaskSpec:
    title: str
    description: str = ""
    type: str = "task"
    priority: int = 0
    labels: list[str] = field(default_factory=list)
    required_capabilities: list[str] = field(default_factory=list)
    depends_on: Sequence[int | str] = field(default_factory=list)  # task ids, or keys of the same batch
    lock_paths: list[str] = field(default_factory=list)
    exclusive: bool = False
    max_attempts: int | None = None
    command: str | None = None  # what the `command` connector runs
    verify: str | None = None  # verification run after the agent (e.g. "pytest -q")
    key: str | None = None  # local name inside a batch file, for depends_on

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title:
            raise SpecError("title", "a task needs a non-empty title")
        self.description = _opt_str("description", self.description) or ""
        self.type = _opt_str("type", self.type) or "task"
        self.priority = _int("priority", self.priority)
        self.labels = sorted({s.strip() for s in _str_list("labels", self.labels) if s.strip()})
        caps = _str_list("required_capabilities", self.required_capabilities)
        self.required_capabilities = sorted({s.strip() for s in caps if s.strip()})
        deps = self.depends_on
        if not isinstance(deps, (list, tuple)) or not all(
            isinstance(d, (int, str)) and not isinstance(d, bool) for d in deps
        ):
            raise SpecError("depends_on", f"expected a list of task ids or batch keys, got {deps!r}")
        self.depends_on = list(deps)
        self.lock_paths = _str_list("lock_paths", self.lock_paths)
        if not isinstance(self.exclusive, bool):
            raise SpecError("exclusive", f"expected true or false, got {self.exclusive!r}")
        if self.max_attempts is not None:
            self.max_attempts = _int("max_attempts", self.max_attempts)
            if self.max_attempts < 1:
                raise SpecError("max_attempts", f"must be at least 1, got {self.max_attempts}")
        self.command = _opt_str("command", self.command)
        self.verify = _opt_str("verify", self.verify)
        self.key = _opt_str("key", self.key)

    @classmethod
    def model_validate(cls, data: Any) -> TaskSpec:
        """A spec from a mapping (a batch file's task, a schedule's stored JSON); unknown keys are refused."""
        if not isinstance(data, dict):
            raise SpecError("task", f"expected a mapping of fields, got {data!r}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise SpecError(unknown[0], "unknown field" + (f" (also: {', '.join(unknown[1:])})" if unknown[1:] else ""))
        if "title" not in data:
            raise SpecError("title", "a task needs a title")
        return cls(**data)

    def model_dump(self, *, mode: str = "json", exclude: set[str] | None = None) -> dict[str, Any]:
        out = asdict(self)
        for name in exclude or ():
            out.pop(name, None)
        return out


_FIELDS = frozenset(f.name for f in fields(TaskSpec))

__all__ = ["SpecError", "TaskSpec"]
