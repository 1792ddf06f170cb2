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
