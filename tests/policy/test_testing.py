"""The table-driven policy test runner: passes, failures with diffs, and cases that cannot run."""

from __future__ import annotations

from pathlib import Path

from aictl.policy import run_policy_tests

POLICY = """\
version: 1
rules:
  - id: secrets
    effect: deny
    match: {paths: ['.env']}
  - id: writes
    effect: allow
    match: {actions: [write_path]}
    limits: {max_cost_usd: 1, sandbox: {network: false}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_cases_pass_against_the_sibling_policy(tmp_path):
    write(tmp_path / "p.yaml", POLICY)
    write(
        tmp_path / "p_test.yaml",
        """\
tests:
  - name: secrets denied
    input: {subject: {ai: a}, action: write_path, resource: {path: .env}}
    expect: {effect: deny, rules: [writes, secrets]}
  - name: limits compared by the keys given
    input: {action: write_path, resource: {path: a.py}}
    expect: {effect: allow, default_applied: false, limits: {max_cost_usd: 1, sandbox: {network: false}}}
""",
    )
    report = run_policy_tests(tmp_path)
    assert report.ok and report.passed == 2 and report.failed == 0
    assert report.files == [str(tmp_path / "p_test.yaml")]
    assert report.summary().endswith("2 passed, 0 failed, 0 file error(s) in 1 file(s)")


def test_a_failing_case_reports_expected_and_actual(tmp_path):
    write(tmp_path / "p.yaml", POLICY)
    write(
        tmp_path / "p_test.yaml",
        """\
tests:
  - name: wrong on purpose
    input: {action: write_path, resource: {path: a.py}}
    expect: {effect: deny, rules: [secrets], limits: {max_cost_usd: 3}}
""",
    )
    report = run_policy_tests(tmp_path)
    assert not report.ok and report.failed == 1
    [case] = report.cases
    assert case.line == 2 and case.name == "wrong on purpose"
    assert case.diff == {
        "effect": {"expected": "deny", "actual": "allow"},
        "rules": {"expected": ["secrets"], "actual": ["writes"]},
        "limits.max_cost_usd": {"expected": 3, "actual": 1.0},
    }
    assert (
        f"FAIL {tmp_path / 'p_test.yaml'}:2: wrong on purpose: effect: expected 'deny', got 'allow'" in report.summary()
    )


def test_policy_may_be_named_and_layered(tmp_path):
    write(tmp_path / "base.yaml", POLICY)
    write(tmp_path / "tight.yaml", "version: 1\nrules:\n  - {id: writes, effect: require_approval}\n")
    write(
        tmp_path / "x_test.yaml",
        """\
policy: base.yaml
tests:
  - name: base allows
    input: {action: write_path, resource: {path: a.py}}
    expect: {effect: allow}
  - name: layered requires approval
    policy: [base.yaml, tight.yaml]
    input: {action: write_path, resource: {path: a.py}}
    expect: {effect: require_approval}
""",
    )
    assert run_policy_tests(tmp_path).ok


def test_tests_inside_a_policy_file(tmp_path):
    write(
        tmp_path / "p.yaml",
        POLICY
        + """\
tests:
  - name: inline
    input: {action: write_path, resource: {path: .env}}
    expect: {effect: deny}
""",
    )
    report = run_policy_tests(tmp_path)
    assert report.ok and report.files == [str(tmp_path / "p.yaml")]


def test_cases_that_cannot_run_are_errors(tmp_path):
    write(tmp_path / "broken.yaml", "version: 1\nrules: [{id: a, effect: nope}]\n")
    write(
        tmp_path / "x_test.yaml",
        """\
tests:
  - name: no sibling policy
    input: {action: write_path}
    expect: {effect: deny}
  - name: bad input
    policy: broken.yaml
    input: {action: write_path}
    expect: {effect: deny}
""",
    )
    write(tmp_path / "good.yaml", POLICY)
    write(
        tmp_path / "y_test.yaml",
        "policy: good.yaml\ntests:\n  - name: z\n    input: {action: fly}\n    expect: {effect: deny}\n",
    )
    report = run_policy_tests(tmp_path)
    assert not report.ok and report.failed == 3
    errors = {case.name: case.error for case in report.cases}
    assert "x.yaml does not exist" in errors["no sibling policy"]
    assert "broken.yaml" in errors["bad input"] and "'allow', 'require_approval' or 'deny'" in errors["bad input"]
    assert "invalid input: action" in errors["z"] and "unknown action 'fly'" in errors["z"]


def test_malformed_test_file_is_a_file_error_with_a_line(tmp_path):
    write(tmp_path / "p.yaml", POLICY)
    write(tmp_path / "p_test.yaml", "tests:\n  - name: a\n    inputs: {}\n    expect: {effect: deny}\n")
    report = run_policy_tests(tmp_path)
    assert not report.ok
    missing, unknown = report.issues  # in line order
    assert unknown.line == 3 and "unknown key 'inputs'" in unknown.message and "input, expect" in unknown.message
    assert missing.line == 2 and "missing required key 'input'" in missing.message


def test_an_empty_directory_is_not_ok(tmp_path):
    report = run_policy_tests(tmp_path)
    assert not report.ok and "no *_test.yaml" in report.issues[0].message
