"""Replaying recorded decisions under a new policy finds exactly the decisions that would change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aictl.domain.errors import ConfigError, PolicyDenied, UsageError
from aictl.policy.gate import load_gate
from aictl.policy.records import DecisionLog, write_record
from aictl.policy.replay import load_replay_policy, parse_when, replay
from aictl.tasks.service import TaskService, TaskSpec

POLICY = """
version: 1
default: deny
rules:
  - id: lifecycle
    effect: allow
    match: {actions: [claim, start, complete, release]}
  - id: interns-stay-off-prod
    effect: deny
    match: {ai: ["intern-*"], actions: [claim], task_labels: [prod]}
  - id: big-tasks-need-a-human
    effect: require_approval
    match: {actions: [start]}
    when: resource.task.priority >= 9
  - id: tests-must-pass
    effect: allow
    match: {actions: [complete], task_types: [bugfix]}
    limits: {require_evidence: [test_report]}
  - id: writes
    effect: allow
    match: {actions: [write_path]}
  - id: secrets
    effect: deny
    match: {actions: [write_path], paths: [".env", "secrets/**"]}
  - id: commands
    effect: allow
    match: {actions: [run_command]}
ai:
  "ollama-*":
    rules:
      - id: no-shell
        effect: deny
        match: {actions: [run_command]}
"""

# Two changes: mid-sized tasks need approval to start, and codex may no longer write docs.
TIGHTENED = (
    POLICY.replace("resource.task.priority >= 9", "resource.task.priority >= 5")
    + """
  "codex":
    rules:
      - id: codex-docs-readonly
        effect: deny
        match: {actions: [write_path], paths: ["docs/**"]}
"""
)


def flips_under_tightened(record) -> bool:
    """Which decisions TIGHTENED changes, read from the records themselves, not from the engine."""
    if record.action == "start":
        return 5 <= record.resource["task"]["priority"] < 9
    return record.ai == "codex" and record.action == "write_path" and record.resource["path"].startswith("docs/")


@pytest.fixture
def recorded(services, tmp_path):
    """A few dozen real decision records: claims, starts, completions, releases through the task
    plane, and file writes and commands through the gate; allow, deny and require_approval."""
    proj = tmp_path / "proj"
    (proj / ".ai").mkdir(parents=True)
    (proj / ".ai" / "policy.yaml").write_text(POLICY)
    gate = load_gate(proj)
    svc = TaskService(services.store, services.settings, policy=gate)

    def work(ai: str, priority: int, *, labels=(), type_="task", finish=True):
        task = svc.create(TaskSpec(title=f"{ai} p{priority}", priority=priority, labels=list(labels), type=type_))
        lease = svc.claim(ai, task_id=task.id).lease
        try:
            svc.start(task.id, ai, lease.lease_epoch)
        except PolicyDenied:
            svc.release(task.id, ai, lease.lease_epoch)
            return
        if not finish:
            svc.release(task.id, ai, lease.lease_epoch)
            return
        try:
            svc.complete(task.id, ai, lease.lease_epoch)
        except PolicyDenied:  # a bugfix without a test report
            svc.release(task.id, ai, lease.lease_epoch)

    for ai in ("claude-1", "codex", "ollama-7"):
        work(ai, 1)
        work(ai, 6)
        work(ai, 9)  # start needs approval: released
        work(ai, 3, finish=False)
    work("codex", 2, type_="bugfix")  # completion refused for missing evidence
    prod = svc.create(TaskSpec(title="deploy", labels=["prod"], priority=4))
    with pytest.raises(PolicyDenied):
        svc.claim("intern-1", task_id=prod.id)
    work("claude-1", 4, labels=["prod"])

    with services.store.write() as tx:
        for ai in ("claude-1", "codex", "ollama-7"):
            for path in ("src/app.py", "docs/guide.md", ".env"):
                write_record(tx, gate.check("write_path", ai=ai, path=path))
            write_record(tx, gate.check("run_command", ai=ai, command="pytest -q"))
    return proj, DecisionLog(services.store).list()


def test_the_fixture_records_a_varied_history(recorded):
    _, records = recorded
    assert len(records) >= 36
    assert {r.effect for r in records} == {"allow", "deny", "require_approval"}
    assert {r.action for r in records} == {"claim", "start", "complete", "release", "write_path", "run_command"}
    assert {r.ai for r in records} == {"claude-1", "codex", "ollama-7", "intern-1"}
    assert any(r.effect == "deny" and r.limits.get("require_evidence") for r in records)


def test_the_same_policy_changes_nothing(recorded, tmp_path):
    proj, records = recorded
    results = replay(records, load_replay_policy(proj / ".ai" / "policy.yaml", proj))
    assert len(results) == len(records)
    assert [r for r in results if r.changed] == []
    evidence = [r for r in results if r.recorded_effect != r.old_effect]
    assert len(evidence) == 1 and evidence[0].recorded_effect == "deny" and evidence[0].new_effect == "allow"
    assert "evidence" in evidence[0].note


def test_a_tightened_policy_reports_exactly_the_decisions_that_flip(recorded, tmp_path):
    proj, records = recorded
    new = tmp_path / "tight.yaml"
    new.write_text(TIGHTENED)
    results = {r.decision_id: r for r in replay(records, load_replay_policy(new, proj))}
    expected = {r.decision_id for r in records if flips_under_tightened(r)}
    assert len(expected) == 4  # three starts of a priority-6 task, one codex write to docs/
    assert {d for d, r in results.items() if r.changed} == expected
    for decision_id in expected:
        r = results[decision_id]
        if r.action == "start":
            assert (r.old_effect, r.new_effect) == ("allow", "require_approval")
            assert (r.old_rules, sorted(r.new_rules)) == (["lifecycle"], ["big-tasks-need-a-human", "lifecycle"])
        else:
            assert (r.ai, r.old_effect, r.new_effect) == ("codex", "allow", "deny")
            assert (r.old_rules, r.new_rules) == (["writes"], ["writes", "codex-docs-readonly"])


def test_a_renamed_rule_is_a_change_even_with_the_same_effect(recorded, tmp_path):
    proj, records = recorded
    new = tmp_path / "renamed.yaml"
    new.write_text(POLICY.replace("id: commands", "id: run-commands"))
    changed = [r for r in replay(records, load_replay_policy(new, proj)) if r.changed]
    assert {(r.ai, r.old_effect, r.new_effect, tuple(r.old_rules), tuple(r.new_rules)) for r in changed} == {
        ("claude-1", "allow", "allow", ("commands",), ("run-commands",)),
        ("codex", "allow", "allow", ("commands",), ("run-commands",)),
        # ollama-7's command stays denied, but the allow rule it also matched has a new id
        ("ollama-7", "deny", "deny", ("commands", "no-shell"), ("run-commands", "no-shell")),
    }


def test_a_secret_the_rule_looked_at_is_masked_in_the_replayed_input(services, tmp_path):
    (tmp_path / ".ai").mkdir()
    (tmp_path / ".ai" / "policy.yaml").write_text("""
version: 1
default: allow
rules:
  - id: no-keys-on-the-command-line
    effect: deny
    match: {actions: [run_command]}
    when: resource.command.contains("sk-ant-")
""")
    gate = load_gate(tmp_path)
    with services.store.write() as tx:
        write_record(tx, gate.check("run_command", ai="codex", command="curl -H 'x-api-key: sk-ant-" + "a" * 30 + "'"))
    [record] = DecisionLog(services.store).list()
    assert record.effect == "deny" and "sk-ant-" not in record.input["resource"]["command"]
    [result] = replay([record], load_replay_policy(tmp_path / ".ai" / "policy.yaml", tmp_path))
    assert result.changed and result.new_effect == "allow"  # the documented limit of a replay


def test_a_stored_input_that_no_longer_validates_is_reported_not_raised(recorded):
    proj, records = recorded
    broken = records[0].model_copy(update={"input": {**records[0].input, "action": "teleport"}})
    [result] = replay([broken], load_replay_policy(proj / ".ai" / "policy.yaml", proj))
    assert result.changed and result.new_effect is None and "teleport" in result.error


def test_the_hierarchy_is_global_then_new_then_per_ai_files(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(conf))
    (conf / "policy.yaml").write_text("""
version: 1
rules:
  - id: no-network
    effect: deny
    final: true
    match: {actions: [network]}
""")
    (tmp_path / ".ai" / "policies" / "ai").mkdir(parents=True)
    (tmp_path / ".ai" / "policies" / "ai" / "codex.yaml").write_text("""
version: 1
rules:
  - id: codex-no-commands
    effect: deny
    match: {actions: [run_command]}
""")
    new = tmp_path / "new.yaml"
    new.write_text("version: 1\nrules:\n  - {id: everything, effect: allow}\n")
    policy = load_replay_policy(new, tmp_path)
    assert [(layer.level, layer.source) for layer in policy.layers] == [
        ("global", str(conf / "policy.yaml")),
        ("project", str(new)),
        ("ai", str(tmp_path / ".ai" / "policies" / "ai" / "codex.yaml")),
    ]
    alone = load_replay_policy(new, tmp_path, alone=True)
    assert [layer.source for layer in alone.layers] == [str(new)]
    # NEW may not loosen a final rule of the global policy
    new.write_text("version: 1\nrules:\n  - {id: no-network, effect: allow, match: {actions: [network]}}\n")
    with pytest.raises(ConfigError, match="final rule 'no-network'"):
        load_replay_policy(new, tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        load_replay_policy(tmp_path / "missing.yaml", tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30m", 1_000_000 - 1800),
        ("2h", 1_000_000 - 7200),
        ("7d", 1_000_000 - 7 * 86400),
        ("45s", 1_000_000 - 45),
        ("1w", 1_000_000 - 604800),
        ("1.5h", 1_000_000 - 5400),
        ("2025-01-31T14:00:00Z", datetime(2025, 1, 31, 14, tzinfo=UTC).timestamp()),
        ("2025-01-31T14:00:00", datetime(2025, 1, 31, 14, tzinfo=UTC).timestamp()),  # naive is UTC
        ("2025-01-31T16:00:00+02:00", datetime(2025, 1, 31, 14, tzinfo=UTC).timestamp()),
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_when(text, expected):
    assert parse_when(text, now=1_000_000) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "5 parsecs", "-3h", ""])
def test_parse_when_refuses_what_it_cannot_read(text):
    with pytest.raises(UsageError, match="cannot read the time"):
        parse_when(text)
