"""What a policy is asked: who (subject) wants to do what (action) to what (resource), in which context.

Below the engine and matching, which both read it; it depends only on the schema's list of actions.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aictl.policy.schema import KNOWN_ACTIONS


class Subject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ai: str | None = None
    ai_labels: list[str] = Field(default_factory=list)
    task_id: int | None = None
    lease_epoch: int | None = None
    actor: str | None = None


class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: dict[str, Any] | None = None
    path: str | None = None
    paths: list[str] = Field(default_factory=list)
    command: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class PolicyRequest(BaseModel):
    """Who (subject) wants to do what (action) to what (resource), in which context."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject = Field(default_factory=Subject)
    action: str
    resource: Resource = Field(default_factory=Resource)
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        if action not in KNOWN_ACTIONS:
            raise ValueError(f"unknown action {action!r}; known actions: {', '.join(KNOWN_ACTIONS)}")
        return action
