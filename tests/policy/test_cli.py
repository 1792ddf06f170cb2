"""`aictl policy …` and `aictl audit decisions|decision` as users and CI drive them: exit codes and JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

POLICY = """version: 1
default: deny
rules:
  - id: lifecycle
    effect: allow
    match: {actions: [claim, start, complete, release]}
  - id: interns-stay-off-prod
    effect: deny
    match: {ai: ["intern-*"], actions: [claim], task_labels: [prod]}
    reason: interns do not touch production tasks
  - id: writes
    effect: allow
    match: {actions: [write_path]}
  - id: protect-secrets
    effect: deny
    final: true
    match: {actions: [write_path], paths: [".env", "secrets/**"]}
    reason: secrets are off limits
  - id: protect-ci
    effect: require_approval
    match: {actions: [write_path]}
    when: 'resource.paths.exists(p, p.startsWith(".github/")) && context.branch == "main"'
"""

MALFORMED = """version: 1
rules:
  - id: ok
    effect: allow
  - id: typo
    efect: deny
  - id: bad-when
    effect: deny
    when: 'subject.ai =='
"""


@pytest.fixture
def gated(project):
    (project / ".ai" / "policy.yaml").write_text(POLICY)
    return project


# -- validate ---------------------------------------------------------------------------------


def test_validate_the_project_hierarchy(gated, cli, j):
    assert j("policy", "validate") == []
    code, out, err = cli("policy", "validate")
    assert code == 0 and out == "" and "ok: 5 rules from 1 file" in err


def test_validate_a_malformed_file_lists_every_issue_with_its_line(project, cli, j):
    bad = project / "bad.yaml"
    bad.write_text(MALFORMED)
    issues = j("policy", "validate", str(bad), code=2)
    assert [(i["line"], i["rule_id"]) for i in issues] == [(5, "typo"), (6, "typo"), (9, "bad-when")]
    assert "unknown key 'efect'" in issues[1]["message"] and "does not compile" in issues[2]["message"]
    code, out, err = cli("policy", "validate", str(bad))
    assert code == 2 and out == ""  # issues are messages, on stderr
    assert f"{bad}:6:5: rule 'typo': unknown key 'efect'" in err and "Traceback" not in err


def test_validate_a_broken_project_policy_and_a_loosened_final_rule(gated, monkeypatch, tmp_path, j):
    (gated / ".ai" / "policy.yaml").write_text("version: 1\nrules:\n  - id: x\n    effect: alow\n")
    [issue] = j("policy", "validate", code=2)
    assert issue["file"].endswith(".ai/policy.yaml") and issue["line"] == 4 and "alow" in issue["message"]
    # the hierarchy: the project may not loosen the global policy's final rule
    conf = tmp_path / "conf"
    conf.mkdir()
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(conf))
    (conf / "policy.yaml").write_text(
        "version: 1\nrules:\n  - {id: no-net, effect: deny, final: true, match: {actions: [network]}}\n"
    )
    (gated / ".ai" / "policy.yaml").write_text(
        "version: 1\nrules:\n  - {id: no-net, effect: allow, match: {actions: [network]}}\n"
    )
    [issue] = j("policy", "validate", code=2)
    assert issue["line"] == 3 and issue["rule_id"] == "no-net" and "loosens it" in issue["message"]


def test_validate_reads_test_files_as_tests_and_reports_a_missing_file(project, j):
    examples = sorted(str(p) for p in (REPO / "policies").glob("*.yaml"))
    assert any(p.endswith("_test.yaml") for p in examples)
    assert j("policy", "validate", *examples) == []
    [issue] = j("policy", "validate", str(project / "nope.yaml"), code=2)
    assert "cannot read the file" in issue["message"]


def test_validate_without_any_policy_file_is_ok_but_says_everything_is_denied(project, cli):
    (project / ".ai" / "policy.yaml").unlink()
    code, _out, err = cli("policy", "validate")
    assert code == 0 and "every request is denied" in err


# -- explain ----------------------------------------------------------------------------------


def test_explain_names_the_matching_rule_and_writes_no_record(gated, cli, j):
    why = j("policy", "explain", "--ai", "codex", "--action", "write_path", "--path", ".env")
    assert why["decision"]["effect"] == "deny" and why["decision"]["matched_rules"] == ["writes", "protect-secrets"]
    rules = {r["id"]: r for r in why["rules"]}
    assert rules["protect-secrets"]["matched"] and rules["protect-secrets"]["line"] == 14
    assert not rules["lifecycle"]["matched"] and rules["lifecycle"]["failed"] == "actions"
    code, out, _ = cli("policy", "explain", "--ai", "codex", "--action", "write_path", "--path", ".env")
    assert code == 0 and out.startswith("effect: DENY") and "secrets are off limits" in out
    assert j("audit", "decisions") == []  # a what-if leaves no record


def test_explain_with_a_task_sees_the_task_as_the_task_plane_does(gated, cli, j):
    task = j("task", "create", "deploy", "--label", "prod", "-p", "4")
    why = j("policy", "explain", "--ai", "intern-3", "--action", "claim", "--task", str(task["id"]))
    assert why["decision"]["effect"] == "deny" and "interns-stay-off-prod" in why["decision"]["matched_rules"]
    assert (
        j("policy", "explain", "--ai", "senior", "--action", "claim", "--task", str(task["id"]))["decision"]["effect"]
        == "allow"
    )
    # the real claim by the intern gets the same answer
    code, _, err = cli("task", "claim", "--owner", "intern-3", "--id", str(task["id"]))
    assert code == 5 and "interns-stay-off-prod" in err
    assert cli("policy", "explain", "--ai", "x", "--action", "claim", "--task", "99")[0] == 3


def test_explain_context_labels_and_several_paths(gated, j):
    args = [
        "policy",
        "explain",
        "--ai",
        "codex",
        "--action",
        "write_path",
        "--path",
        "src/a.py",
        "--path",
        ".github/workflows/ci.yml",
    ]
    assert j(*args)["decision"]["effect"] == "allow"
    why = j(*args, "--context", '{"branch": "main"}', "--ai-label", "trusted")
    assert why["decision"]["effect"] == "require_approval" and "protect-ci" in why["decision"]["matched_rules"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--action", "teleport"], "unknown action 'teleport'"),
        (["--action", "claim", "--context", "{not json"], "not valid JSON"),
        (["--action", "claim", "--context", "[1]"], "must be a JSON object"),
    ],
)
def test_explain_usage_errors_exit_2(gated, args, message, cli):
    code, _out, err = cli("policy", "explain", "--ai", "codex", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_explain_under_a_malformed_policy_exits_2_naming_the_line(gated, cli):
    (gated / ".ai" / "policy.yaml").write_text(MALFORMED)
    code, out, err = cli("policy", "explain", "--ai", "codex", "--action", "claim", "-o", "json")
    assert code == 2 and out == ""
    issues = json.loads(err)["error"]["details"]["issues"]
    assert [i["line"] for i in issues] == [5, 6, 9]


# -- test -------------------------------------------------------------------------------------


def test_the_example_policies_pass(project, cli, j):
    report = j("policy", "test", str(REPO / "policies"))
    assert report["failed"] == 0 and report["passed"] == len(report["cases"]) >= 30 and report["issues"] == []
    code, out, _ = cli("policy", "test", str(REPO / "policies"))
    assert code == 0 and out.strip().splitlines()[-1].startswith(f"{report['passed']} passed, 0 failed")


def test_a_broken_case_fails_with_exit_1_and_shows_the_diff(project, cli, j):
    shutil.copytree(REPO / "policies", project / "policies")
    case = project / "policies" / "protect-ci_test.yaml"
    text = case.read_text()
    case.write_text(
        text.replace("expect: {effect: deny, rules: [protect-ci", "expect: {effect: allow, rules: [protect-ci", 1)
    )
    assert text != case.read_text()
    report = j("policy", "test", code=1)  # default: ./policies
    [failed] = [c for c in report["cases"] if not c["passed"]]
    assert failed["diff"] == {"effect": {"expected": "allow", "actual": "deny"}}
    assert report["failed"] == 1
    code, out, _ = cli("policy", "test")
    assert code == 1 and 'effect: expected "allow", got "deny"' in out
    assert out.strip().splitlines()[-1].startswith(f"{report['passed']} passed, 1 failed")


def test_malformed_test_files_exit_2(project, cli, j):
    (project / "p").mkdir()
    (project / "p" / "x.yaml").write_text("version: 1\nrules: []\n")
    (project / "p" / "x_test.yaml").write_text("tests:\n  - name: t\n    inputt: {}\n")
    report = j("policy", "test", str(project / "p"), code=2)
    assert any(i["line"] == 3 and "unknown key 'inputt'" in i["message"] for i in report["issues"])
    # a case whose input is not a request cannot run: also exit 2
    (project / "p" / "x_test.yaml").write_text(
        "tests:\n  - name: t\n    input: {action: teleport}\n    expect: {effect: deny}\n"
    )
    report = j("policy", "test", str(project / "p"), code=2)
    assert "teleport" in report["cases"][0]["error"]
    # nothing to run is not a pass
    assert cli("policy", "test", str(project / "empty"))[0] == 2


# -- schema -----------------------------------------------------------------------------------


def test_schema_is_the_published_one(project, cli):
    code, out, _ = cli("policy", "schema")
    assert code == 0 and out == (REPO / "docs" / "policy.schema.json").read_text()
    assert json.loads(out)["properties"]["version"]


# -- audit decisions / decision ---------------------------------------------------------------


def claim_some(cli, j) -> dict[str, int]:
    ids = {}
    for title, labels in (("docs", "docs"), ("deploy", "prod"), ("api", "backend")):
        ids[title] = j("task", "create", title, "--label", labels)["id"]
    assert cli("task", "claim", "--owner", "intern-1", "--id", str(ids["deploy"]))[0] == 5
    j("task", "claim", "--owner", "intern-1", "--id", str(ids["docs"]))
    r = j("task", "claim", "--owner", "senior-1", "--id", str(ids["deploy"]))
    j("task", "start", str(ids["deploy"]), "--owner", "senior-1", "--epoch", str(r["lease"]["lease_epoch"]))
    return ids


def test_decisions_after_real_claims(gated, cli, j):
    ids = claim_some(cli, j)
    records = j("audit", "decisions")
    assert [(d["ai"], d["action"], d["task_id"], d["effect"]) for d in records] == [
        ("intern-1", "claim", ids["deploy"], "deny"),
        ("intern-1", "claim", ids["docs"], "allow"),
        ("senior-1", "claim", ids["deploy"], "allow"),
        ("senior-1", "start", ids["deploy"], "allow"),
    ]
    assert records[0]["matched_rules"] == ["lifecycle", "interns-stay-off-prod"]
    assert records[0]["reasons"] == ["interns do not touch production tasks"]
    assert records[0]["input"]["resource"]["task"]["labels"] == ["prod"] and records[0]["sources"]
    assert [d["effect"] for d in j("audit", "decisions", "--effect", "deny")] == ["deny"]
    assert len(j("audit", "decisions", "--task", str(ids["deploy"]))) == 3
    assert len(j("audit", "decisions", "--ai", "senior-1")) == 2
    assert [d["action"] for d in j("audit", "decisions", "--action", "start")] == ["start"]
    last = j("audit", "decisions", "--limit", "2")
    assert [d["decision_id"] for d in last] == [d["decision_id"] for d in records[-2:]]
    assert len(j("audit", "decisions", "--since", "1h")) == 4
    assert j("audit", "decisions", "--since", "2999-01-01T00:00:00Z") == []
    code, _out, err = cli("audit", "decisions", "--effect", "maybe")
    assert code == 2 and "unknown effect" in err


def test_one_decision_by_prefix(gated, cli, j):
    claim_some(cli, j)
    first = j("audit", "decisions")[0]
    one = j("audit", "decision", first["decision_id"][:10])
    assert one == first
    code, out, _ = cli("audit", "decision", first["decision_id"][:10])
    assert code == 0 and first["decision_id"] in out and "interns do not touch production tasks" in out
    code, _, err = cli("audit", "decision", "ffffffffffff")
    assert code == 3 and "aictl audit decisions" in err


# -- replay -----------------------------------------------------------------------------------


def test_replay_same_policy_then_a_tightened_one(gated, tmp_path, cli, j):
    ids = claim_some(cli, j)
    for path in ("src/a.py", ".env", ".github/workflows/ci.yml"):
        j("policy", "explain", "--ai", "codex", "--action", "write_path", "--path", path)  # records nothing
    same = gated / ".ai" / "policy.yaml"
    assert j("policy", "replay", str(same)) == []
    everything = j("policy", "replay", str(same), "--all")
    assert len(everything) == 4 and not any(r["changed"] for r in everything)
    tight = tmp_path / "tight.yaml"
    tight.write_text(POLICY.replace('ai: ["intern-*"]', 'ai: ["intern-*", "senior-*"]'))
    [flip] = j("policy", "replay", str(tight))
    assert (flip["ai"], flip["action"], flip["task_id"]) == ("senior-1", "claim", ids["deploy"])
    assert (flip["old_effect"], flip["new_effect"]) == ("allow", "deny")
    assert (flip["old_rules"], flip["new_rules"]) == (["lifecycle"], ["lifecycle", "interns-stay-off-prod"])
    code, out, err = cli("policy", "replay", str(tight))
    assert code == 0 and "4 decision(s) replayed, 1 would change" in err
    assert "allow → deny" in out and "lifecycle → lifecycle,interns-stay-off-prod" in out
    # filters
    assert j("policy", "replay", str(tight), "--ai", "intern-1") == []
    assert j("policy", "replay", str(tight), "--action", "start") == []
    assert len(j("policy", "replay", str(tight), "--since", "1h")) == 1
    assert j("policy", "replay", str(tight), "--until", "1h") == []
    code, _, err = cli("policy", "replay", str(tight), "--since", "last week")
    assert code == 2 and "cannot read the time" in err


def test_replay_with_a_malformed_new_policy_exits_2(gated, tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MALFORMED)
    code, _out, err = cli("policy", "replay", str(bad))
    assert code == 2 and f"{bad}:6:5" in err
    assert cli("policy", "replay", str(tmp_path / "missing.yaml"))[0] == 2


def test_every_policy_command_has_help(cli):
    for command in ("validate", "explain", "test", "replay", "schema"):
        code, out, _ = cli("policy", command, "--help")
        assert code == 0 and "Usage" in out and len(out) > 200
