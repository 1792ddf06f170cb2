"""The policy engine: load `.ai/policy.yaml` files (evaluation follows).

Errors: a malformed file raises `aictl.domain.errors.ConfigError` whose `details["issues"]`
lists every problem (file, line, column, message, rule_id).
"""

from aictl.policy.loader import (
    PolicyIssue,
    load_policy_file,
    load_policy_text,
    validate_policy_file,
    validate_policy_text,
)
from aictl.policy.schema import (
    KNOWN_ACTIONS,
    SUPPORTED_VERSIONS,
    AISection,
    Effect,
    Limits,
    Match,
    PolicyFile,
    PolicySource,
    Rule,
    Sandbox,
    export_json_schema,
    write_json_schema,
)

__all__ = [
    "KNOWN_ACTIONS",
    "SUPPORTED_VERSIONS",
    "AISection",
    "Effect",
    "Limits",
    "Match",
    "PolicyFile",
    "PolicyIssue",
    "PolicySource",
    "Rule",
    "Sandbox",
    "export_json_schema",
    "load_policy_file",
    "load_policy_text",
    "validate_policy_file",
    "validate_policy_text",
    "write_json_schema",
]
