"""The policy engine: load `.ai/policy.yaml` files, merge the hierarchy, evaluate requests.

A pure library (no database, no CLI)::

    policy = load_effective_policy(project_dir, ai_id="claude-code")
    decision = evaluate(policy, PolicyRequest(subject=Subject(ai="claude-code"), action="write_path",
                                              resource=Resource(path=".env")))
    decision.effect  # "deny"

Errors: a malformed file raises `aictl.domain.errors.ConfigError` whose `details["issues"]`
lists every problem (file, line, column, message, rule_id). Evaluation never raises.
The language reference is docs/policy.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aictl.policy.engine import (
        Decision,
        Explanation,
        PolicyRequest,
        Resource,
        RuleTrace,
        Subject,
        evaluate,
        explain,
    )
    from aictl.policy.loader import (
        PolicyIssue,
        load_policy_file,
        load_policy_text,
        validate_policy_file,
        validate_policy_text,
    )
    from aictl.policy.merge import (
        EffectivePolicy,
        PolicyLayer,
        default_global_policy_path,
        load_effective_policy,
        merge_policies,
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
    from aictl.policy.testing import CaseResult, TestReport, run_policy_tests

_LAZY = {  # name -> module: importing the package loads nothing, so the gate (gate.py) stays off pydantic
    "Decision": "aictl.policy.engine",
    "Explanation": "aictl.policy.engine",
    "PolicyRequest": "aictl.policy.engine",
    "Resource": "aictl.policy.engine",
    "RuleTrace": "aictl.policy.engine",
    "Subject": "aictl.policy.engine",
    "evaluate": "aictl.policy.engine",
    "explain": "aictl.policy.engine",
    "PolicyIssue": "aictl.policy.loader",
    "load_policy_file": "aictl.policy.loader",
    "load_policy_text": "aictl.policy.loader",
    "validate_policy_file": "aictl.policy.loader",
    "validate_policy_text": "aictl.policy.loader",
    "EffectivePolicy": "aictl.policy.merge",
    "PolicyLayer": "aictl.policy.merge",
    "default_global_policy_path": "aictl.policy.merge",
    "load_effective_policy": "aictl.policy.merge",
    "merge_policies": "aictl.policy.merge",
    "KNOWN_ACTIONS": "aictl.policy.schema",
    "SUPPORTED_VERSIONS": "aictl.policy.schema",
    "AISection": "aictl.policy.schema",
    "Effect": "aictl.policy.schema",
    "Limits": "aictl.policy.schema",
    "Match": "aictl.policy.schema",
    "PolicyFile": "aictl.policy.schema",
    "PolicySource": "aictl.policy.schema",
    "Rule": "aictl.policy.schema",
    "Sandbox": "aictl.policy.schema",
    "export_json_schema": "aictl.policy.schema",
    "write_json_schema": "aictl.policy.schema",
    "CaseResult": "aictl.policy.testing",
    "TestReport": "aictl.policy.testing",
    "run_policy_tests": "aictl.policy.testing",
}

__all__ = [
    "KNOWN_ACTIONS",
    "SUPPORTED_VERSIONS",
    "AISection",
    "CaseResult",
    "Decision",
    "Effect",
    "EffectivePolicy",
    "Explanation",
    "Limits",
    "Match",
    "PolicyFile",
    "PolicyIssue",
    "PolicyLayer",
    "PolicyRequest",
    "PolicySource",
    "Resource",
    "Rule",
    "RuleTrace",
    "Sandbox",
    "Subject",
    "TestReport",
    "default_global_policy_path",
    "evaluate",
    "explain",
    "export_json_schema",
    "load_effective_policy",
    "load_policy_file",
    "load_policy_text",
    "merge_policies",
    "run_policy_tests",
    "validate_policy_file",
    "validate_policy_text",
    "write_json_schema",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aictl.policy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
