"""`audit verify` checks the rows the chain vouches for (decisions, evidence) and the chain head itself."""

from __future__ import annotations

import pytest

from aictl.audit.chain import verify
from aictl.audit.events import ChainHeadBroken
from aictl.audit.evidence import EvidenceStore
from aictl.policy.gate import load_gate
from aictl.policy.records import DecisionLog, RecordTampered, vouch_decisions
from aictl.tasks.fence import check_fence
from aictl.tasks.service import TaskService, TaskSpec

from .test_chain import tamper

POLICY = """
version: 1
default: deny
rules:
  - id: lifecycle
    effect: allow
    match: {actions: [claim, start, complete, release]}
"""


@pytest.fixture
def record(services, tmp_path):
    """Two tasks, each claimed under a policy (one decision each) with one diff as evidence."""
    (tmp_path / "proj" / ".ai").mkdir(parents=True)
    (tmp_path / "proj" / ".ai" / "policy.yaml").write_text(POLICY)
    svc = TaskService(services.store, services.settings, policy=load_gate(tmp_path / "proj"))
    ev = EvidenceStore(services.store, tmp_path / "home", actor="tester", fence=check_fence)
    refs = []
    for title in ("a", "b"):
        svc.create(TaskSpec(title=title))
        got = svc.claim("w")
        refs.append(
            ev.put(
                f"diff of {title}\n",
                kind="diff",
                name="changes.diff",
                task_id=got.task.id,
                owner="w",
                lease_epoch=got.lease.lease_epoch,
            )
        )
    services.ev, services.refs = ev, refs
    return services


def check(store):
    return verify(store, vouchers={"decision": vouch_decisions})


def test_untouched_record_verifies(record):
    r = check(record.store)
    assert r.ok and r.vouched == 4  # two evidence rows, two decisions


def test_evidence_pointed_at_another_tasks_blob_is_a_break(record):
    a, b = record.refs
    tamper(record.store, f"UPDATE evidence SET digest = '{b.digest}' WHERE id = {a.id}")
    r = check(record.store)
    assert not r.ok and f"evidence row {a.id}" in r.first_break.reason and "modified" in r.first_break.reason
    listed = record.ev.list(a.task_id)
    assert [e.verified for e in listed] == [False]
    assert [e.verified for e in record.ev.list(b.task_id)] == [True]


def test_evidence_row_inserted_outside_aictl_is_a_break(record):
    a, _ = record.refs
    tamper(
        record.store,
        "INSERT INTO evidence (task_id, lease_epoch, kind, name, digest, size, media_type, created_at)"
        f" VALUES ({a.task_id}, 1, 'test_report', 'ok.xml', '{a.digest}', 3, 'text/plain', 0)",
    )
    r = check(record.store)
    assert not r.ok and "matches no audit event" in r.first_break.reason


def test_forged_decision_is_a_break_and_not_shown(record):
    log = DecisionLog(record.store)
    d = log.list()[0]
    tamper(
        record.store,
        f"UPDATE decisions SET effect = 'deny', reasons = '[\"forged\"]' WHERE decision_id = '{d.decision_id}'",
    )
    r = check(record.store)
    assert not r.ok and f"decision {d.decision_id} was modified" in r.first_break.reason
    with pytest.raises(RecordTampered, match="fails verification"):
        log.get(d.decision_id)
    assert log.get(log.list()[1].decision_id).effect == "allow"  # the untouched one still reads


def test_missing_head_is_a_break_and_writes_fail_clearly(record):
    tamper(record.store, "DELETE FROM audit_head")
    r = check(record.store)
    assert not r.ok and "chain head" in r.first_break.reason and "missing" in r.first_break.reason
    with pytest.raises(ChainHeadBroken, match="missing"):
        record.svc.create(TaskSpec(title="after"))
    assert record.q.list() and all(t.title != "after" for t in record.q.list())  # nothing half-written


def test_head_out_of_step_fails_writes_clearly(record):
    tamper(record.store, "UPDATE audit_head SET last_id = 1 WHERE id = 1")
    assert not check(record.store).ok
    with pytest.raises(ChainHeadBroken, match="out of step"):
        record.svc.create(TaskSpec(title="after"))


def test_cli_missing_head_exit_1_no_traceback(project, cli):
    from aictl.store import open_store

    assert cli("task", "create", "x")[0] == 0
    store = open_store(f"sqlite:///{project / '.ai' / 'state.db'}")
    tamper(store, "DELETE FROM audit_head")
    store.close()
    code, _, err = cli("task", "create", "y")
    assert code == 1 and "chain head is missing" in err and "Traceback" not in err
    code, _, err = cli("audit", "verify")
    assert code == 1 and "chain head" in err


def test_cli_task_evidence_says_a_forged_row_fails_verification(project, j, cli, tmp_path):
    from aictl.store import open_store

    tid = j("task", "create", "x")["id"]
    epoch = j("task", "claim", "--owner", "w")["lease"]["lease_epoch"]
    (tmp_path / "a.log").write_text("real\n")
    j("task", "attach", str(tid), "--epoch", str(epoch), str(tmp_path / "a.log"), "--owner", "w")
    code, out, err = cli("task", "evidence", str(tid))
    assert code == 0 and "FAILS" not in out
    store = open_store(f"sqlite:///{project / '.ai' / 'state.db'}")
    tamper(store, "UPDATE evidence SET kind = 'test_report'")
    store.close()
    code, out, err = cli("task", "evidence", str(tid))
    assert code == 1 and "FAILS VERIFICATION" in out and "fail verification" in err
