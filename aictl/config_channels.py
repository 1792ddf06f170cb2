"""The `notifications:` setting's entries, validated by pydantic (imported only when some are configured)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

NOTIFY_EVENTS = (
    "task.failed",
    "task.awaiting_approval",
    "task.done",
    "task.rate_limited",
    "ai.unhealthy",
    "merge.ran",
    "daemon.started",
    "daemon.stopped",
    "test",
)


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
    def _needs(self) -> NotificationChannel:
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


def validate_channels(items: list[Any]) -> list[NotificationChannel]:
    """Channels from config dicts (YAML 1.1 reads the key `on:` as true); raises pydantic's ValidationError."""
    items = [
        {("on" if k is True else k): x for k, x in item.items()} if isinstance(item, dict) else item for item in items
    ]
    return TypeAdapter(list[NotificationChannel]).validate_python(items)
