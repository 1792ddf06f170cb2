"""Evaluation semantics: default deny, deny > require_approval > allow, strictest limits, fail-closed CEL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aictl.policy import PolicyRequest, evaluate, explain, load_policy_text, merge_policies


def policy(rules_yaml: str, default: str | None = None):
    head = "version: 1\n" + (f"default: {default}\n" if default else "")
    return merge_policies([load_policy_text(head + "rules:\n" + rules_yaml, "test.yaml")])


def request(action: str = "write_path", **kw) -> PolicyRequest:
    subject = kw.pop("subject", {"ai": "claude-code"})
    return PolicyRequest.model_validate({"subject": subject, "action": action, "resource": kw.pop("resource", kw)})


ALLOW_WRITES = """
  - id: allow-writes
    effect: allow
    match: {actions: [write_path]}
"""


def test_no_rules_means_deny():
    decision = evaluate(policy("  []\n"), request(path="src/a.py"))
    assert decision.effect == "deny" and decision.default_applied and decision.matched_rules == []
    assert "no rule matched; the default is deny" in decision.reasons[0]


def test_default_can_be_set():
    decision = evaluate(policy("  []\n", default="require_approval"), request(path="x"))
    assert decision.effect == "require_approval" and decision.default_applied


def test_deny_beats_allow_whatever_the_order():
    deny = "  - id: secrets\n    effect: deny\n    match: {paths: ['.env']}\n    reason: no secrets\n"
    for rules in (ALLOW_WRITES + deny, deny + ALLOW_WRITES):
        decision = evaluate(policy(rules), request(path=".env"))
        assert decision.effect == "deny"
        assert sorted(decision.matched_rules) == ["allow-writes", "secrets"]
        assert decision.reasons == ["no secrets"]
        assert not decision.default_applied


def test_require_approval_beats_allow_and_loses_to_deny():
    approval = "  - id: ci\n    effect: require_approval\n    match: {paths: ['.github/**']}\n"
    deny = "  - id: workflows\n    effect: deny\n    match: {paths: ['.github/workflows/**']}\n"
    p = policy(ALLOW_WRITES + approval + deny)
    assert evaluate(p, request(path=".github/CODEOWNERS")).effect == "require_approval"
    assert evaluate(p, request(path=".github/workflows/ci.yml")).effect == "deny"
    assert evaluate(p, request(path="src/a.py")).effect == "allow"


def test_limits_merge_to_the_strictest_of_matched_allow_and_approval_rules():
    rules = """
  - id: a
    effect: allow
    limits: {max_cost_usd: 5, max_runtime_s: 100, allowed_tools: [Read, Edit, Bash], require_evidence: [diff],
             sandbox: {backend: local, network: true}}
  - id: b
    effect: require_approval
    limits: {max_cost_usd: 2, max_attempts: 4, allowed_tools: [Read, Bash, Grep], require_evidence: [test_report],
             sandbox: {backend: docker}}
  - id: c
    effect: allow
    limits: {max_runtime_s: 900, sandbox: {network: false}}
  - id: not-matching
    effect: allow
    match: {actions: [merge]}
    limits: {max_cost_usd: 0.01}
"""
    decision = evaluate(policy(rules), request(path="x"))
    assert decision.effect == "require_approval"
    assert decision.limits.model_dump(mode="json") == {
        "max_cost_usd": 2.0,
        "max_runtime_s": 100.0,
        "max_attempts": 4,
        "allowed_tools": ["Read", "Bash"],
        "require_evidence": ["diff", "test_report"],
        "sandbox": {"backend": "docker", "network": False, "memory_mb": None},
    }


def test_limits_of_deny_rules_are_ignored_and_default_has_none():
    rules = "  - id: d\n    effect: deny\n    limits: {max_cost_usd: 1}\n" + ALLOW_WRITES
    assert evaluate(policy(rules), request(path="x")).limits.max_cost_usd is None
    assert evaluate(policy("  []\n", default="allow"), request(path="x")).limits.is_empty()


@pytest.mark.parametrize(
    ("match", "req", "expected"),
    [
        ("{ai: ['claude-*']}", {"subject": {"ai": "claude-code"}}, True),
        ("{ai: ['claude-*']}", {"subject": {"ai": "Claude-code"}}, False),  # case matters
        ("{ai: ['claude-*']}", {"subject": {}}, False),
        ("{ai_labels: [trusted, fast]}", {"subject": {"ai": "x", "ai_labels": ["fast", "trusted", "z"]}}, True),
        ("{ai_labels: [trusted, fast]}", {"subject": {"ai": "x", "ai_labels": ["trusted"]}}, False),
        ("{task_labels: [migration, schema]}", {"resource": {"task": {"labels": ["schema"]}}}, True),
        ("{task_labels: [migration]}", {"resource": {"task": {"labels": ["ui"]}}}, False),
        ("{task_labels: [migration]}", {"resource": {}}, False),
        ("{task_types: [bugfix]}", {"resource": {"task": {"type": "bugfix"}}}, True),
        ("{task_types: [bugfix]}", {"resource": {"task": {"type": "feature"}}}, False),
        ("{paths: ['secrets/**']}", {"resource": {"paths": ["a.py", "secrets/k"]}}, True),
        ("{paths: ['secrets/**']}", {"resource": {"path": "./secrets/k"}}, True),
        ("{paths: ['secrets/**']}", {"resource": {"path": "docs/../secrets/k"}}, True),
        ("{paths: ['secrets/**']}", {"resource": {"path": "other/secrets/k"}}, False),  # anchored: has a slash
        ("{paths: ['*.pem']}", {"resource": {"path": "deep/dir/x.pem"}}, True),
        ("{paths: ['secrets/**', '!secrets/README.md']}", {"resource": {"path": "secrets/README.md"}}, False),
        ("{paths: ['x']}", {"resource": {}}, False),
        ("{commands: ['rm -rf *']}", {"resource": {"command": "rm  -rf  /"}}, True),
        ("{commands: ['git push*']}", {"resource": {"command": "git status"}}, False),
        ("{commands: ['git push*']}", {"resource": {}}, False),
    ],
)
def test_match_fields(match, req, expected):
    p = policy(f"  - id: r\n    effect: deny\n    match: {match}\n", default="allow")
    r = PolicyRequest.model_validate({"action": "write_path", **req})
    assert (evaluate(p, r).effect == "deny") is expected


def test_all_present_match_fields_must_match():
    p = policy("  - id: r\n    effect: allow\n    match: {actions: [write_path], paths: ['docs/**']}\n")
    assert evaluate(p, request(path="docs/a.md")).effect == "allow"
    assert evaluate(p, request("read_path", path="docs/a.md")).effect == "deny"
    assert evaluate(p, request(path="src/a.py")).effect == "deny"


def test_cel_condition_sees_subject_action_resource_context():
    rule = """
  - id: r
    effect: allow
    when: >-
      resource.task.priority > 5 && subject.ai != "ollama-small" && action == "execute"
      && context.hour >= 9 && resource.path == "src/a.py" && "x" in subject.ai_labels
"""
    p = policy(rule)
    ok = PolicyRequest.model_validate(
        {
            "subject": {"ai": "claude", "ai_labels": ["x"]},
            "action": "execute",
            "resource": {"task": {"priority": 7}, "path": "./src/a.py"},
            "context": {"hour": 10},
        }
    )
    assert evaluate(p, ok).effect == "allow"
    assert evaluate(p, ok.model_copy(update={"context": {"hour": 8}})).effect == "deny"


def test_has_works_on_missing_task_fields():
    p = policy("  - id: r\n    effect: allow\n    when: 'has(resource.task.priority) && resource.task.priority > 1'\n")
    assert evaluate(p, request(task={"priority": 3})).effect == "allow"
    assert evaluate(p, request(task={})).effect == "deny"
    assert evaluate(p, request()).effect == "deny"


def test_cel_error_fails_closed_for_deny_rules():
    p = policy("  - id: guard\n    effect: deny\n    when: 'resource.task.priority > 5'\n" + ALLOW_WRITES)
    decision = evaluate(p, request(path="x"))  # no task: the condition errors
    assert decision.effect == "deny"
    assert "guard" in decision.matched_rules
    assert any("rule guard: condition error, treated as matched (deny fails closed)" in r for r in decision.reasons)


def test_cel_error_does_not_match_for_allow_rules():
    p = policy("  - id: maybe\n    effect: allow\n    when: 'resource.task.priority > 5'\n")
    decision = evaluate(p, request(path="x"))
    assert decision.effect == "deny" and decision.default_applied
    assert any("rule maybe: condition error, treated as not matched" in r for r in decision.reasons)


def test_non_boolean_condition_is_an_error_not_a_truthy_value():
    p = policy("  - id: r\n    effect: allow\n    when: 'resource.task.priority'\n")
    decision = evaluate(p, request(task={"priority": 3}))
    assert decision.effect == "deny"
    assert any("expected a bool" in r for r in decision.reasons)


def test_type_mismatch_in_condition_does_not_raise():
    p = policy("  - id: r\n    effect: deny\n    when: 'resource.task.priority + \"x\" == 1'\n", default="allow")
    assert evaluate(p, request(task={"priority": 3})).effect == "deny"


def test_values_cel_cannot_hold_fail_closed_for_deny_rules():
    p = policy("  - id: guard\n    effect: deny\n    when: 'context.n > 1'\n" + ALLOW_WRITES)
    r = request(path="x").model_copy(update={"context": {"n": {1, 2}}})  # a set has no CEL type
    decision = evaluate(p, r)
    assert decision.effect == "deny" and "cannot be converted for CEL" in " ".join(decision.reasons)


def test_eval_ms_is_measured():
    decision = evaluate(policy(ALLOW_WRITES), request(path="x"))
    assert 0 < decision.eval_ms < 1000


def test_requests_with_unknown_actions_or_fields_are_rejected():
    with pytest.raises(ValidationError, match="unknown action 'wirte_path'"):
        PolicyRequest.model_validate({"action": "wirte_path"})
    with pytest.raises(ValidationError, match="resources"):
        PolicyRequest.model_validate({"action": "write_path", "resources": {}})


def test_explain_says_why_each_rule_did_not_match():
    rules = """
  - id: by-action
    effect: allow
    match: {actions: [merge]}
  - id: by-ai
    effect: allow
    match: {ai: ['codex*']}
  - id: by-label
    effect: allow
    match: {ai_labels: [trusted]}
  - id: by-path
    effect: deny
    match: {paths: ['.env']}
  - id: by-command
    effect: deny
    match: {commands: ['rm *']}
  - id: by-task-label
    effect: allow
    match: {task_labels: [migration]}
  - id: by-type
    effect: allow
    match: {task_types: [bugfix]}
  - id: by-condition
    effect: allow
    when: 'context.hour < 9'
  - id: by-error
    effect: allow
    when: 'resource.task.priority > 1'
  - id: by-error-deny
    effect: deny
    when: 'resource.task.priority > 1'
  - id: hit
    effect: allow
    match: {actions: [write_path]}
"""
    explanation = explain(
        policy(rules),
        PolicyRequest.model_validate(
            {
                "subject": {"ai": "claude-code"},
                "action": "write_path",
                "resource": {"path": "src/a.py"},
                "context": {"hour": 12},
            }
        ),
    )
    why = {t.id: t for t in explanation.rules}
    assert (
        why["by-action"].failed == "actions" and "action 'write_path' is not one of ['merge']" in why["by-action"].why
    )
    assert why["by-ai"].failed == "ai" and "AI 'claude-code' matches none of ai ['codex*']" in why["by-ai"].why
    assert why["by-label"].failed == "ai_labels" and "lacks label(s) ['trusted']" in why["by-label"].why
    assert why["by-path"].failed == "paths" and "no path of ['src/a.py'] matches paths ['.env']" in why["by-path"].why
    assert why["by-command"].failed == "commands" and "no command" in why["by-command"].why
    assert why["by-task-label"].failed == "task_labels"
    assert why["by-type"].failed == "task_types"
    assert why["by-condition"].failed == "when" and "condition is false: context.hour < 9" in why["by-condition"].why
    assert why["by-error"].failed == "when" and why["by-error"].condition_error
    assert not why["by-error"].matched
    assert why["by-error-deny"].matched and "fails closed" in why["by-error-deny"].why
    assert why["hit"].matched and why["hit"].failed is None
    assert [t.id for t in explanation.rules if t.matched] == ["by-error-deny", "hit"]
    assert explanation.decision.effect == "deny"
    assert why["hit"].source == "test.yaml" and why["hit"].line == 34
    assert explanation.default == "deny"


def test_explain_and_evaluate_agree():
    p = policy(ALLOW_WRITES + "  - id: d\n    effect: deny\n    match: {paths: ['.env']}\n")
    for path in (".env", "a.py"):
        r = request(path=path)
        a, b = evaluate(p, r), explain(p, r).decision
        assert (a.effect, a.matched_rules, a.reasons) == (b.effect, b.matched_rules, b.reasons)
