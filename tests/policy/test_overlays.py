"""Workflow policy overlays (.ai/policies/workflows/NAME.yaml): they only tighten, only for the tasks of the
workflows naming them (label policy-overlay:NAME), and a bad one is named with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aictl.domain.errors import ConfigError
from aictl.policy import PolicyRequest, evaluate, explain
from aictl.policy.gate import load_gate
from aictl.policy.merge import load_effective_policy

PROJECT = """\
version: 1
default: allow
rules:
  - id: protect-ci
    effect: require_approval
    match: {actions: [write_path], paths: [".github/**"]}
  - id: runs
    effect: allow
    match: {actions: [execute]}
    limits: {max_runtime_s: 3600, allowed_tools: [read, write, run]}
"""

OVERLAY = """\
version: 1
rules:
  - id: protect-ci            # the project's id: namespaced, so it adds a rule and replaces none
    effect: deny
    match: {actions: [write_path], paths: [".github/**", "docs/**"]}
  - id: cap
    effect: allow
    match: {actions: [execute]}
    limits: {max_runtime_s: 600, allowed_tools: [read, write]}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path):
    write(tmp_path / ".ai" / "policy.yaml", PROJECT)
    write(tmp_path / ".ai" / "policies" / "workflows" / "strict.yaml", OVERLAY)
    return tmp_path


def req(action: str, labels: list[str], **resource) -> PolicyRequest:
    return PolicyRequest.model_validate(
        {"subject": {"ai": "codex"}, "action": action, "resource": {**resource, "task": {"id": 7, "labels": labels}}}
    )


IN = ["workflow:feature", "policy-overlay:strict"]


def test_an_overlay_tightens_its_tasks_only(project):
    policy = load_effective_policy(project)
    assert evaluate(policy, req("write_path", IN, path="docs/a.md")).effect == "deny"
    assert evaluate(policy, req("write_path", ["feature"], path="docs/a.md")).effect == "allow"
    ci = evaluate(policy, req("write_path", IN, path=".github/ci.yml"))
    assert ci.effect == "deny" and ci.matched_rules == ["protect-ci", "strict/protect-ci"]
    assert evaluate(policy, req("write_path", [], path=".github/ci.yml")).effect == "require_approval"


def test_an_overlay_allow_rule_caps_limits_and_grants_nothing(project):
    policy = load_effective_policy(project)
    capped = evaluate(policy, req("execute", IN))
    assert capped.effect == "allow" and capped.limits is not None
    assert capped.limits.max_runtime_s == 600 and capped.limits.allowed_tools == ["read", "write"]
    assert evaluate(policy, req("execute", [])).limits.max_runtime_s == 3600  # type: ignore[union-attr]
    write(project / ".ai" / "policy.yaml", "version: 1\ndefault: deny\n")
    refused = evaluate(load_effective_policy(project), req("execute", IN))
    assert refused.effect == "deny" and refused.default_applied and refused.matched_rules == []


def test_the_fast_gate_and_explain_agree_and_an_edit_reaches_the_cache(project):
    gate = load_gate(project)
    assert gate.check("write_path", ai="codex", path="docs/a.md", task={"id": 7, "labels": IN}).effect == "deny"
    trace = explain(load_effective_policy(project), req("write_path", ["x"], path="docs/a.md"))
    why = {rule.id: rule.why for rule in trace.rules}
    assert "policy-overlay:strict" in why["strict/protect-ci"]
    write(project / ".ai" / "policies" / "workflows" / "strict.yaml", "version: 1\nrules: []\n")
    again = load_gate(project).check("write_path", ai="codex", path="docs/a.md", task={"id": 7, "labels": IN})
    assert again.effect == "allow"


def test_a_task_whose_overlay_is_gone_is_refused_everything(project):
    (project / ".ai" / "policies" / "workflows" / "strict.yaml").unlink()
    record = load_gate(project).check("write_path", ai="codex", path="src/a.py", task={"id": 7, "labels": IN})
    assert record.effect == "deny" and "no workflow overlay 'strict'" in record.reasons[0]
    decision = explain(load_effective_policy(project), req("write_path", IN, path="src/a.py")).decision
    assert decision.effect == "deny"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("version: 1\ndefault: allow\nrules: []\n", 2, "cannot set 'default'"),
        ("version: 1\nrules:\n  - id: a\n    effect: deny\nai:\n  codex: {rules: []}\n", 5, "cannot have 'ai:'"),
        ("version: 1\nrules:\n  - id: ok\n    effect: deny\n  - id: grant\n    effect: allow\n", 5, "grants nothing"),
        ("version: 1\nrules:\n  - id: a\n    effect: maybe\n", 4, "effect"),
    ],
)
def test_an_overlay_that_could_loosen_is_refused_with_file_and_line(project, text, line, words):
    path = write(project / ".ai" / "policies" / "workflows" / "strict.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_effective_policy(project)
    issues = caught.value.details["issues"]
    assert any(i["file"] == str(path) and i["line"] == line and words in i["message"] for i in issues), issues
    with pytest.raises(ConfigError):
        load_gate(project)  # enforcement refuses to run on it too (deny-all is the caller's answer)
