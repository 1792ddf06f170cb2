"""The policy language's fixed words: effects, actions, versions. Imports nothing, so the fast gate can use them."""

from __future__ import annotations

from enum import Enum

SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

# Actions a rule may name. A new action must be added here before a policy can use it.
KNOWN_ACTIONS: tuple[str, ...] = (
    "create",
    "claim",
    "heartbeat",
    "start",
    "complete",
    "fail",
    "release",
    "cancel",
    "retry",
    "execute",
    "read_path",
    "write_path",
    "delete_path",
    "run_command",
    "use_tool",
    "use_skill",
    "network",
    "merge",
    "push",
    "approve",
)


class Effect(str, Enum):
    allow = "allow"
    require_approval = "require_approval"
    deny = "deny"

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]


_STRICTNESS = {Effect.allow: 0, Effect.require_approval: 1, Effect.deny: 2}
