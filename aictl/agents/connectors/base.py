"""The connector interface: run an agent on a task in a workspace, inside a sandbox."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import BaseModel, Field


class ConnectorResult(BaseModel):
    ok: bool
    exit_code: int | None = None
    summary: str = ""
    error: str | None = None
    transient: bool = False  # worth retrying (sandbox start error, timeout, rate limit)
    timed_out: bool = False
    cancelled: bool = False
    transcript: str = ""  # what the agent said and did, for evidence (redacted on storage)
    stdout: str = ""
    stderr: str = ""
    usage: dict[str, Any] = Field(default_factory=dict)  # tokens, turns, …
    cost_usd: float | None = None
    duration_s: float = 0.0
    sandbox: dict[str, Any] = Field(default_factory=dict)  # the isolation settings used


@dataclass
class RunContext:
    """Everything a connector needs for one run."""

    task: Any  # aictl.domain.models.Task
    workdir: Path
    sandbox: Any  # aictl.sandbox.base.Sandbox
    spec: Any  # aictl.sandbox.base.SandboxSpec
    on_output: Callable[[str, str], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    instructions: str = ""  # task context and skills, for agents that take a prompt
    command: str | None = None  # for the command connector
    labels: dict[str, str] = field(default_factory=dict)  # tag sandbox resources (task, epoch)


class Connector(Protocol):
    name: str

    def run(self, ctx: RunContext) -> ConnectorResult: ...
