"""The file format: JSON Schema kept in sync, strictness order, known actions."""

from __future__ import annotations

import json
from pathlib import Path

from aictl.policy import KNOWN_ACTIONS, Effect, export_json_schema
from aictl.policy.limits import looser_limits, merge_limits
from aictl.policy.schema import Limits, render_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "policy.schema.json"


def test_committed_json_schema_is_up_to_date():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema(), (
        "docs/policy.schema.json is stale; regenerate it with: "
        "python -c 'from aictl.policy import write_json_schema; write_json_schema()'"
    )


def test_json_schema_describes_the_format():
    schema = export_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["required"] == ["version"]
    assert schema["additionalProperties"] is False
    assert json.loads(json.dumps(schema)) == schema


def test_effect_strictness_order():
    assert Effect.allow.strictness < Effect.require_approval.strictness < Effect.deny.strictness


def test_actions_named_in_the_brief_are_known():
    for action in (
        "claim",
        "start",
        "complete",
        "release",
        "execute",
        "write_path",
        "run_command",
        "network",
        "merge",
        "approve",
    ):
        assert action in KNOWN_ACTIONS


def test_limits_merge_and_loosening():
    a = Limits(max_cost_usd=5, allowed_tools=["Read", "Edit"])
    b = Limits(max_cost_usd=2, allowed_tools=["Edit", "Bash"], require_evidence=["diff"])
    merged = merge_limits([a, None, b])
    assert merged.max_cost_usd == 2 and merged.allowed_tools == ["Edit"] and merged.require_evidence == ["diff"]
    assert merge_limits([]).is_empty()
    assert looser_limits(b, a) == ["allowed_tools adds ['Bash']"]
    assert looser_limits(Limits(max_cost_usd=1), Limits(max_cost_usd=2)) == []
    assert looser_limits(Limits(), Limits(max_attempts=2, require_evidence=["x"], sandbox={"network": False})) == [
        "max_attempts 2 -> unset",
        "require_evidence drops ['x']",
        "sandbox.network false -> unset",
    ]
