"""Evidence: content-addressed, lease-fenced, redacted, JUnit parsed, tamper detected."""

from __future__ import annotations

import json

import pytest

from aictl.audit.evidence import EvidenceStore, EvidenceTampered, parse_junit
from aictl.domain.errors import LeaseLost
from aictl.tasks.fence import check_fence
from aictl.tasks.service import TaskSpec

JUNIT = b"""<?xml version="1.0"?><testsuites><testsuite name="s" tests="5" failures="1" errors="0" skipped="1">
<testcase name="a"/></testsuite></testsuites>"""


@pytest.fixture
def ev(services, tmp_path):
    return EvidenceStore(services.store, tmp_path / "home", actor="tester", fence=check_fence)


def test_put_get_list_and_event(services, ev):
    t = services.svc.create(TaskSpec(title="t"))
    r = services.svc.claim("w")
    ref = ev.put(
        "diff --git a/x b/x\n+hello\n",
        kind="diff",
        name="changes.diff",
        task_id=t.id,
        owner="w",
        lease_epoch=r.lease.lease_epoch,
    )
    assert len(ref.digest) == 64 and ref.size > 0
    assert ev.get(ref.digest) == b"diff --git a/x b/x\n+hello\n"
    assert ev.get(ref.digest[:10]) == ev.get(ref.digest)
    assert [e.kind for e in ev.list(t.id)] == ["diff"]
    last = services.q.events(task_id=t.id)[-1]
    assert last.action == "evidence" and last.data["digest"] == ref.digest


def test_stale_epoch_cannot_attach(services, ev):
    s = services.make(lease_ttl=0.05)
    t = s.svc.create(TaskSpec(title="t"))
    s.svc.claim("old")
    import time

    time.sleep(0.1)
    s.svc.claim("new")
    with pytest.raises(LeaseLost, match="epoch 2"):
        ev.put("late", kind="log", name="x", task_id=t.id, owner="old", lease_epoch=1)
    assert ev.list(t.id) == []


def test_junit_parsed_to_counts(services, ev):
    t = services.svc.create(TaskSpec(title="t"))
    services.svc.claim("w")
    ref = ev.put(
        JUNIT,
        kind="test_report",
        name="junit.xml",
        media_type="application/xml",
        task_id=t.id,
        owner="w",
        lease_epoch=1,
    )
    assert ref.summary == {"tests": 5, "failures": 1, "errors": 0, "skipped": 1, "passed": 3, "ok": False}
    assert parse_junit(b"<testsuite tests='2' failures='0'/>")["ok"] is True
    assert "parse_error" in parse_junit(b"<not xml")


def test_secrets_redacted_before_hashing(services, ev, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123")
    from aictl.audit import redact as redact_mod

    redact_mod.refresh()
    ref = ev.put(
        "calling with sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123 and ghp_" + "a" * 36, kind="transcript", name="t.txt"
    )
    text = ev.get(ref.digest).decode()
    assert "sk-ant" not in text and "ghp_" not in text and text.count("[REDACTED]") == 2


def test_swapped_blob_is_detected(services, ev, tmp_path):
    ref = ev.put("original", kind="log", name="l")
    if services.store.dialect == "sqlite":
        (tmp_path / "home" / "evidence" / "sha256" / ref.digest[:2] / ref.digest).write_bytes(b"forged")
    else:
        with services.store.write() as tx:
            tx.run("UPDATE evidence_blobs SET content = :c WHERE digest = :d", {"c": b"forged", "d": ref.digest})
    with pytest.raises(EvidenceTampered, match="modified"):
        ev.get(ref.digest)


def test_cli_attach_list_show(project, capsys, tmp_path):
    from aictl.cli.main import main

    main(["task", "create", "t"])
    main(["task", "claim", "--owner", "w"])
    report = tmp_path / "junit.xml"
    report.write_bytes(JUNIT)
    capsys.readouterr()
    assert (
        main(
            ["task", "attach", "1", str(report), "--epoch", "1", "--owner", "w", "--kind", "test_report", "-o", "json"]
        )
        == 0
    )
    ref = json.loads(capsys.readouterr().out)
    assert ref["summary"]["failures"] == 1 and ref["media_type"] == "application/xml"
    assert main(["task", "evidence", "1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["digest"] == ref["digest"]
    assert main(["audit", "evidence", ref["digest"][:12]]) == 0
    assert capsys.readouterr().out.encode() == JUNIT
    assert main(["task", "attach", "1", str(report), "--epoch", "7", "--owner", "w"]) == 4
    assert main(["audit", "evidence", "ffffffffff"]) == 3
