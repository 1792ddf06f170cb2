"""The task plane enforces the policy at claim, start, complete and release, and records every decision."""

from __future__ import annotations

import json

import pytest

from aictl.audit.evidence import EvidenceStore
from aictl.domain.errors import PolicyDenied
from aictl.policy.gate import load_gate
from aictl.policy.records import DecisionLog
from aictl.tasks.fence import check_fence
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
    reason: interns do not touch production tasks
  - id: big-tasks-need-a-human
    effect: require_approval
    match: {actions: [start]}
    when: resource.task.priority >= 9
  - id: tests-must-pass
    effect: allow
    match: {actions: [complete], task_types: [bugfix]}
    limits: {require_evidence: [test_report]}
"""

PASS = b"<testsuite tests='3' failures='0' errors='0' skipped='0'/>"
FAIL = b"<testsuite tests='3' failures='1' errors='0' skipped='0'/>"


@pytest.fixture
def gated(services, tmp_path):
    (tmp_path / "proj" / ".ai").mkdir(parents=True)
    (tmp_path / "proj" / ".ai" / "policy.yaml").write_text(POLICY)
    gate = load_gate(tmp_path / "proj")
    svc = TaskService(services.store, services.settings, policy=gate)
    return svc, DecisionLog(services.store), services


def test_denied_claim_is_skipped_recorded_once(gated):
    svc, log, _ = gated
    prod = svc.create(TaskSpec(title="deploy", labels=["prod"], priority=5))
    docs = svc.create(TaskSpec(title="docs"))
    got = svc.claim("intern-7")
    assert got.task.id == docs.id  # the prod task was refused to this AI and skipped
    denied = log.list(effect="deny")
    assert [(d.task_id, d.ai, d.matched_rules) for d in denied] == [
        (prod.id, "intern-7", ["lifecycle", "interns-stay-off-prod"])
    ]
    assert svc.claim("intern-7") is None  # asks no second time: the refusal stands …
    assert len(log.list(effect="deny")) == 1
    with pytest.raises(PolicyDenied) as e:
        svc.claim("intern-7", task_id=prod.id)  # … and naming the task says why
    assert e.value.exit_code == 5 and "interns-stay-off-prod" in e.value.message
    assert svc.claim("senior-1").task.id == prod.id  # another AI may take it


def test_every_pdr_field_is_filled(gated):
    svc, log, b = gated
    t = svc.create(TaskSpec(title="x", labels=["prod"]))
    svc.claim("intern-1", ai_labels=["junior"])
    rec = log.list()[0]
    assert rec.decision_id and rec.ts > 0 and rec.ai == "intern-1" and rec.actor == "intern-1"
    assert rec.task_id == t.id and rec.action == "claim" and rec.effect == "deny"
    assert rec.matched_rules == ["lifecycle", "interns-stay-off-prod"] and rec.reasons == [
        "interns do not touch production tasks"
    ]
    assert rec.input["subject"]["ai_labels"] == ["junior"] and rec.resource["task"]["labels"] == ["prod"]
    assert rec.sources[0]["path"].endswith("policy.yaml") and len(rec.sources[0]["sha256"]) == 64
    assert len(rec.policy_digest) == 64 and rec.eval_ms > 0 and rec.enforced
    # the chained audit log vouches for the record
    ev = next(e for e in b.q.events() if e.action == "decision")
    assert ev.data["decision_id"] == rec.decision_id and ev.data["sha256"] == rec.digest()
    assert log.get(rec.decision_id[:8]) == rec


def test_require_approval_at_start_refuses_and_rolls_back(gated):
    svc, log, b = gated
    t = svc.create(TaskSpec(title="huge", priority=9))
    r = svc.claim("bot")
    with pytest.raises(PolicyDenied, match="needs approval"):
        svc.start(t.id, "bot", r.lease.lease_epoch)
    assert b.q.get(t.id).status == "claimed"  # nothing half-done
    assert [d.effect for d in log.list(action="start")] == ["require_approval"]


def test_completion_requires_a_passing_test_report(gated, tmp_path):
    svc, log, b = gated
    ev = EvidenceStore(b.store, tmp_path / "home", fence=check_fence)
    t = svc.create(TaskSpec(title="fix", type="bugfix"))
    r = svc.claim("bot")
    epoch = r.lease.lease_epoch
    with pytest.raises(PolicyDenied, match="requires evidence: test_report"):
        svc.complete(t.id, "bot", epoch)
    ev.put(
        FAIL,
        kind="test_report",
        name="junit.xml",
        media_type="application/xml",
        task_id=t.id,
        owner="bot",
        lease_epoch=epoch,
    )
    with pytest.raises(PolicyDenied, match="passing test_report"):
        svc.complete(t.id, "bot", epoch)
    ev.put(
        PASS,
        kind="test_report",
        name="junit2.xml",
        media_type="application/xml",
        task_id=t.id,
        owner="bot",
        lease_epoch=epoch,
    )
    assert svc.complete(t.id, "bot", epoch).status == "done"
    assert [d.effect for d in log.list(action="complete")] == ["deny", "deny", "allow"]


def test_default_deny_when_no_rule_matches(services, tmp_path):
    (tmp_path / "p" / ".ai").mkdir(parents=True)
    (tmp_path / "p" / ".ai" / "policy.yaml").write_text("version: 1\nrules: []\n")
    svc = TaskService(services.store, services.settings, policy=load_gate(tmp_path / "p"))
    svc.create(TaskSpec(title="x"))
    assert svc.claim("anyone") is None
    rec = DecisionLog(services.store).list()[0]
    assert rec.effect == "deny" and rec.matched_rules == [] and "default" in rec.reasons[0]


def test_no_policy_file_means_deny_all_with_a_hint(services, tmp_path):
    gate = load_gate(tmp_path)
    assert gate.empty
    svc = TaskService(services.store, services.settings, policy=gate)
    svc.create(TaskSpec(title="x"))
    assert svc.claim("anyone") is None  # never "no checks": refused, and the refusal is on record
    rec = DecisionLog(services.store).list()[0]
    assert rec.effect == "deny" and rec.sources == [] and "aictl init" in rec.reasons[0]


def test_cli_claim_denied_exit_5_json(project, capsys):
    from aictl.cli.main import main

    (project / ".ai" / "policy.yaml").write_text(POLICY)
    main(["task", "create", "deploy", "-l", "prod"])
    capsys.readouterr()
    assert main(["task", "claim", "--owner", "intern-2", "--id", "1", "-o", "json"]) == 5
    err = json.loads(capsys.readouterr().err)["error"]
    assert err["code"] == "policy_denied" and "interns do not touch production" in err["message"]
    assert main(["task", "claim", "--owner", "intern-2"]) == 3


def test_without_any_policy_file_the_cli_denies_claim_and_execute_with_a_hint(project, capsys):
    from aictl.cli.main import main

    assert main(["task", "create", "work", "--lock", "src/**", "--command", "true"]) == 0
    (project / ".ai" / "policy.yaml").unlink()  # what an agent's `rm ../../policy.yaml` would leave behind
    capsys.readouterr()
    assert main(["task", "claim", "--owner", "w1", "--id", "1", "-o", "json"]) == 5
    err = json.loads(capsys.readouterr().err)["error"]
    assert err["code"] == "policy_denied" and "aictl init" in err["hint"] and "every action is denied" in err["message"]
    assert main(["task", "execute", "1", "-o", "json"]) != 0
    capsys.readouterr()
    assert main(["task", "get", "1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"  # nothing ran
    assert main(["policy", "explain", "--action", "claim", "--ai", "w1"]) == 0
    assert "aictl init" in capsys.readouterr().err
