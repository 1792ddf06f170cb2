"""What `Executor.execute` is asked (ExecuteOptions) and what it answers (ExecutionReport, with its Outcome).

An Outcome carries the exit code of `aictl task execute`, so the CLI renders a
report without a table of its own.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from aictl.domain.errors import ExitCode
from aictl.domain.models import Task


class Outcome(str, Enum):
    DONE = "done"
    FAILED = "failed"
    RETRYING = "retrying"  # failed as transient, queued again with backoff while attempts remain
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    AWAITING_APPROVAL = "awaiting_approval"
    RELEASED = "released"  # a routed AI hit its rate limit: back in the queue for another AI

    def __str__(self) -> str:
        return self.value

    @property
    def exit_code(self) -> int:
        return _EXIT[self]


_EXIT = {
    Outcome.DONE: ExitCode.OK,
    Outcome.LEASE_LOST: ExitCode.CONFLICT,
    Outcome.AWAITING_APPROVAL: ExitCode.POLICY_DENIED,
}
_EXIT.update({o: ExitCode.FAILURE for o in Outcome if o not in _EXIT})


class ExecuteOptions(BaseModel):
    owner: str
    ai: str | None = None  # a registered AI runs it (pinned); otherwise the id the policy judges
    # None: the registered AI's connector; `command` for a task with a command; else the router picks an AI.
    connector: str | None = None
    command: str | None = None  # overrides task.command
    verify: str | None = None  # overrides task.verify
    backend: str | None = None  # local | docker; default from settings (policy may tighten)
    base: str | None = None  # git ref; default settings.workspace_base
    timeout_s: float | None = None
    ttl: float | None = None
    epoch: int | None = None  # adopt an existing claim held by (owner, epoch) instead of claiming
    keep_workspace: bool = False
    resume: bool = False  # continue the agent session of the task's latest run
    # With epoch: the adopted claim was the router's choice (the daemon), so a rate limit hands the
    # task to the next AI at once instead of costing an attempt.
    routed: bool = False
    message: str | None = None  # follow-up instructions (resumes the latest session when there is one)


class ExecutionReport(BaseModel):
    task: Task
    outcome: Outcome
    lease_epoch: int
    ai: str | None = None
    connector: str | None = None
    reason: str | None = None
    changed_paths: list[str] = Field(default_factory=list)
    commit: str | None = None
    branch: str | None = None
    workspace: str | None = None  # kept for inspection (failures), None when removed
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    skills: dict[str, Any] | None = None  # the skills that reached the agent (name, version, digest) and those denied
    timings: dict[str, float] = Field(default_factory=dict)
    # What the task waits for when it ends awaiting_approval from a run: {action, target, rule, reason, decision_id}
    pending_approval: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


__all__ = ["ExecuteOptions", "ExecutionReport", "Outcome"]
