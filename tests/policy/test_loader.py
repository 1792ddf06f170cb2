"""Malformed policy files: every problem reported at once, each with file, line and column."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aictl.domain.errors import ConfigError, ExitCode
from aictl.policy import load_policy_file, load_policy_text, validate_policy_file, validate_policy_text


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def only_issue(text: str):
    issues = validate_policy_text(text, "p.yaml")
    assert len(issues) == 1, issues
    return issues[0]


def test_a_valid_file_loads_with_its_source_hash_and_rule_locations(tmp_path):
    text = "version: 1\nrules:\n  - id: a\n    effect: deny\n"
    path = write(tmp_path, text)
    policy = load_policy_file(path)
    assert policy.source.path == str(path)
    assert policy.source.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert policy.rules[0].location == f"{path}:3"
    assert validate_policy_file(path) == []


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "version: 1\nrules:\n  - id: a\n    effect: [deny\n")
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    error = caught.value
    assert error.exit_code == ExitCode.USAGE
    [issue] = error.details["issues"]
    assert issue["file"] == str(path)
    assert issue["line"] == 5 and issue["column"] == 1
    assert "YAML syntax error" in issue["message"]
    assert f"{path}:5:1: YAML syntax error" in error.message


def test_tab_indentation_is_a_syntax_error_at_its_line():
    issue = only_issue("version: 1\nrules:\n\t- id: a\n")
    assert issue.line == 3 and "YAML syntax error" in issue.message


def test_unknown_key_names_the_allowed_keys_and_its_position():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: deny\n    efect: allow\n")
    assert (issue.line, issue.column) == (5, 5)
    assert issue.rule_id == "a"
    assert "unknown key 'efect'" in issue.message
    assert "allowed keys: id, description, effect, final, match, when, limits, reason" in issue.message


def test_unknown_key_in_match_lists_match_fields():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: deny\n    match:\n      path: [x]\n")
    assert (issue.line, issue.column) == (6, 7)
    assert "match: unknown key 'path'" in issue.message
    assert "ai, ai_labels, actions, paths, commands, programs, task_labels, task_types" in issue.message


def test_unknown_top_level_key():
    issue = only_issue("version: 1\nrule: []\n")
    assert issue.line == 2 and "unknown key 'rule'" in issue.message and "rules" in issue.message


def test_wrong_type_says_what_was_expected():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: deny\n    final: maybe\n")
    assert (issue.line, issue.column) == (5, 12)
    assert "final: Input should be a valid boolean" in issue.message and "'maybe'" in issue.message


def test_bad_effect_lists_the_effects():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: permit\n")
    assert issue.line == 4
    assert "'allow', 'require_approval' or 'deny'" in issue.message and "'permit'" in issue.message


def test_unknown_action_names_the_known_ones():
    issue = only_issue(
        "version: 1\nrules:\n  - id: a\n    effect: deny\n    match: {actions: [write_path, wirte_path]}\n"
    )
    assert (issue.line, issue.column) == (5, 35)
    assert "unknown action 'wirte_path'" in issue.message and "write_path, delete_path" in issue.message


def test_missing_required_key_points_at_the_rule():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: deny\n  - effect: allow\n")
    assert issue.line == 5 and "missing required key 'id'" in issue.message


def test_bad_cel_expression_gives_rule_id_position_and_compiler_message():
    text = "version: 1\nrules:\n  - id: prio\n    effect: deny\n    when: 'resource.task.priority >'\n"
    issue = only_issue(text)
    assert issue.rule_id == "prio"
    assert issue.line == 5
    # The column points at the character the parser stopped at (the end of the expression).
    assert issue.column == len("    when: 'resource.task.priority >") + 1
    assert "condition does not compile" in issue.message and "Syntax error" in issue.message


def test_cel_condition_with_an_unknown_variable_is_rejected_at_load():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: allow\n    when: 'subjet.ai == \"x\"'\n")
    assert issue.line == 5 and "unknown variable(s) 'subjet'" in issue.message
    assert "subject, action, resource, context" in issue.message


def test_macro_variables_are_not_unknown_variables():
    load_policy_text(
        "version: 1\nrules:\n  - id: a\n    effect: deny\n"
        "    when: 'resource.paths.exists(p, p.startsWith(\"vendor/\"))'\n"
    )


def test_duplicate_rule_ids_name_both_lines():
    issue = only_issue(
        "version: 1\nrules:\n  - id: a\n    effect: deny\n  - id: b\n    effect: deny\n  - id: a\n    effect: allow\n"
    )
    assert issue.line == 7 and issue.rule_id == "a"
    assert "duplicate rule id 'a': defined at line 3 and again at line 7" in issue.message


def test_duplicate_yaml_keys_are_an_error():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: allow\n    effect: deny\n")
    assert (issue.line, issue.column) == (5, 5)
    assert "duplicate key 'effect' (first defined at line 4)" in issue.message


def test_unsupported_version_names_the_supported_ones():
    issue = only_issue("version: 2\nrules: [{whatever: 1}]\n")
    assert issue.line == 1 and "unsupported policy version 2; supported versions: 1" in issue.message


def test_missing_version_is_an_error():
    issue = only_issue("rules: []\n")
    assert issue.line == 1 and "missing required key 'version'" in issue.message


def test_empty_file_and_non_mapping():
    assert "empty" in only_issue("").message
    assert "expected a mapping at the top level, got list" in only_issue("- a\n").message


def test_all_errors_of_a_file_are_collected_in_line_order(tmp_path):
    path = write(
        tmp_path,
        """\
version: 1
rules:
  - id: a
    effect: allow
    match:
      actions: [wirte_path]
    efect: deny
  - id: b
    effect: permit
    when: 'resource.task.priority >'
  - id: a
    effect: deny
    limits: {max_cost_usd: lots, sandbox: {backend: podman}}
ai:
  codex:
    rules:
      - id: c
        effect: allow
        final: maybe
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    issues = caught.value.details["issues"]
    assert [i["line"] for i in issues] == [6, 7, 9, 10, 11, 13, 13, 19]
    assert all(i["file"] == str(path) for i in issues)
    assert [i["rule_id"] for i in issues] == ["a", "a", "b", "b", "a", "a", "a", "c"]
    message = caught.value.message
    assert message.splitlines()[0] == f"policy file {path} is invalid (8 problems):"
    assert len(message.splitlines()) == 9
    assert "Traceback" not in message
    assert caught.value.hint and "aictl policy validate" in caught.value.hint


def test_validate_returns_issues_and_never_raises(tmp_path):
    assert validate_policy_file(tmp_path / "missing.yaml")[0].message.startswith("cannot read the file")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in validate_policy_file(binary)[0].message


def test_anchors_and_aliases_are_allowed():
    policy = load_policy_text(
        "version: 1\nrules:\n  - id: a\n    effect: deny\n    match: {paths: &p [x]}\n"
        "  - id: b\n    effect: deny\n    match: {paths: *p}\n"
    )
    assert policy.rules[1].match.paths == ["x"]


def test_bad_key_in_ai_section_is_located():
    issue = only_issue("version: 1\nai:\n  codex:\n    rule: []\n")
    assert (
        issue.line == 4 and "unknown key 'rule'" in issue.message and "default, default_final, rules" in issue.message
    )


def test_rule_id_shape_is_checked():
    issue = only_issue("version: 1\nrules:\n  - id: 'has space'\n    effect: deny\n")
    assert issue.line == 3 and "must start with a letter or digit" in issue.message


def test_negative_limits_are_rejected():
    issue = only_issue("version: 1\nrules:\n  - id: a\n    effect: allow\n    limits: {max_runtime_s: -1}\n")
    assert issue.line == 5 and "limits.max_runtime_s" in issue.message


def test_a_value_that_fits_no_union_member_is_one_issue():
    from aictl.policy.loader import load_model_text
    from aictl.policy.schema import PolicyTestFile

    _, issues = load_model_text("policy: 3\ntests: []\n", "t_test.yaml", PolicyTestFile)
    [issue] = issues
    assert (issue.line, issue.column) == (1, 9)
    assert issue.message == "policy: Input should be a valid string, got 3, or Input should be a valid list, got 3"
