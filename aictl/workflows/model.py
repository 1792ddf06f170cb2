"""A workflow as aictl holds it after loading: inputs, steps and their kinds, and the states of steps and runs.

Plain dataclasses: the loader (aictl.workflows.loader) builds them from YAML and checks them; the engine
(aictl.workflows.engine) stores a run's copy as JSON (`to_dict` / `from_dict`), so a run finishes with the
definition it started with even when the file changes under it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class StepStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class RunStatus(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


STEP_DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})
RUN_DONE = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
INPUT_TYPES = ("string", "list", "int", "number", "bool")
GATE_CAPABILITY = "workflow-approval"  # no AI has it: only the engine takes an approval step's task


@dataclass
class InputSpec:
    type: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""


@dataclass
class Retry:
    until: str  # CEL over inputs, steps, run: true ends the loop
    max: int = 3  # attempts in all, goto loops included


@dataclass
class Step:
    id: str
    needs: list[str] = field(default_factory=list)
    title: str | None = None
    when: str | None = None  # CEL; false skips the step (and says why)
    prompt: str | None = None  # template: an agent step
    command: str | None = None  # template: a command step (values quoted for the shell)
    ai: dict[str, Any] = field(default_factory=dict)  # id, labels, capabilities: routing constraints
    locks: Any = None  # a list of templates, or one template that renders to a list
    verify: str | None = None  # template
    retry: Retry | None = None
    goto: str | None = None  # a bounded back-edge to an earlier step
    approval: dict[str, Any] | None = None  # {reason}: a human gate
    merge: bool = False  # hand the run's done task commits to the merge queue
    outputs: dict[str, str] = field(default_factory=dict)  # name -> result.<key> | stdout | file:<path>
    for_each: Any = None  # template rendering to a list: one task per item (`item` in templates)
    priority: int = 0
    line: int = 0  # where the step starts in its file

    @property
    def kind(self) -> str:
        if self.approval is not None:
            return "approval"
        if self.merge:
            return "merge"
        if self.goto is not None:
            return "goto"
        if self.command is not None:
            return "command"
        return "agent"

    @property
    def makes_task(self) -> bool:
        return self.kind in ("agent", "command", "approval")


@dataclass
class Workflow:
    name: str
    steps: list[Step]
    version: int = 1
    description: str = ""
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    policy: str | None = None  # a workflow overlay's name: its rules tighten the policy for the steps' tasks
    source: str = ""  # the file it was read from
    sha256: str = ""

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def dependants(self, step_id: str) -> list[str]:
        """Every step that needs `step_id`, directly or through others, in file order."""
        out: set[str] = set()
        frontier = {step_id}
        while frontier:
            nxt = {s.id for s in self.steps if s.id not in out and set(s.needs) & frontier}
            out |= nxt
            frontier = nxt
        return [s.id for s in self.steps if s.id in out]

    def ancestors(self, step_id: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.step(step_id).needs)
        while stack:
            s = stack.pop()
            if s not in out:
                out.add(s)
                stack.extend(self.step(s).needs)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        steps = []
        for s in data["steps"]:
            s = dict(s)
            if s.get("retry") is not None:
                s["retry"] = Retry(**s["retry"])
            steps.append(Step(**s))
        inputs = {k: InputSpec(**v) for k, v in (data.get("inputs") or {}).items()}
        rest = {k: v for k, v in data.items() if k not in ("steps", "inputs")}
        return cls(steps=steps, inputs=inputs, **rest)


__all__ = [
    "GATE_CAPABILITY",
    "INPUT_TYPES",
    "RUN_DONE",
    "STEP_DONE",
    "InputSpec",
    "Retry",
    "RunStatus",
    "Step",
    "StepStatus",
    "Workflow",
]
