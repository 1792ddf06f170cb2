"""The `load_skill` tool of the API connectors' loop: a skill's body and file list, or one of its files, on demand."""

from __future__ import annotations

from typing import Any

from aictl.agents.connectors.tools import ToolOutcome, ToolSpec
from aictl.skills.delivery import LOAD_SKILL, load_skill

SPEC = ToolSpec(
    LOAD_SKILL,
    "Read one of the skills listed in the system prompt: its instructions and the list of its files. "
    "With `file`, read that file of the skill instead.",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "the skill's name, as listed"},
            "file": {"type": "string", "description": "optional: a file of the skill, e.g. scripts/check.sh"},
        },
        "required": ["name"],
    },
)


def call(skills: list[Any], args: Any) -> ToolOutcome:
    if not isinstance(args, dict) or not args.get("name"):
        return ToolOutcome(False, f"{LOAD_SKILL} needs a 'name'")
    ok, text = load_skill(skills, args["name"], args.get("file"))
    return ToolOutcome(ok, text)


__all__ = ["SPEC", "call"]
