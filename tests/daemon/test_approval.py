"""Approval round trip through the daemon, and the notifications it sends on the way."""

from __future__ import annotations

import json

from tests.daemon.conftest import CONFIG, wait_for


def test_policy_approval_parks_the_task_and_approving_resumes_it_through_the_daemon(make_daemon_project, tmp_path):
    hook_out = tmp_path / "notified.jsonl"
    config = CONFIG + (
        "notifications:\n"
        f"  - {{type: command, command: 'cat >> {hook_out}; echo >> {hook_out}',"
        " on: [task.awaiting_approval, task.done, daemon.started, daemon.stopped]}\n"
    )
    p = make_daemon_project(config=config)
    policy = p.root / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text()
        + """
  - id: migrations-need-a-human
    effect: require_approval
    match: {actions: [execute], task_labels: [migration]}
    reason: schema changes need a human
"""
    )
    p.start()
    tid = p.create("migrate", "-l", "migration", "--lock", "src/**", "--command", "echo m > src/m.py")
    plain = p.create("plain", "--lock", "docs/**", "--command", "echo d > docs/d.md")

    wait_for(lambda: p.task(tid).status == "awaiting_approval", 60, "the daemon to park the task for approval")
    wait_for(lambda: p.task(plain).status == "done", 60, "the daemon to run the task that needs no approval")
    parked = p.task(tid)
    assert parked.lease_expires_at is None and not p.jcli("task", "locks")  # parked tasks hold nothing
    assert p.jcli("task", "list", "--status", "awaiting_approval") and p.runs() == []

    p.cli("task", "approve", str(tid), "--comment", "reviewed the migration", check=True)
    t = wait_for(lambda: (t := p.task(tid)).status == "done" and t, 60, "the daemon to resume the approved task")
    assert t.result["changed_paths"] == ["src/m.py"]

    execute = [d for d in p.jcli("audit", "decisions", "--task", str(tid)) if d["action"] == "execute"]
    assert [d["effect"] for d in execute] == ["require_approval", "allow"]
    assert any("approved by" in r and "reviewed the migration" in r for r in execute[1]["reasons"])
    assert [e["action"] for e in p.events(tid) if e["action"] in ("await_approval", "approve", "complete")] == [
        "await_approval",
        "approve",
        "complete",
    ]

    assert p.cli("daemon", "stop").returncode == 0
    sent = [json.loads(line) for line in hook_out.read_text().splitlines() if line.strip()]
    kinds = [(e["type"], (e.get("data") or e.get("payload") or {}).get("task_id")) for e in sent]
    assert kinds[0][0] == "daemon.started" and kinds[-1][0] == "daemon.stopped"
    task_events = [k for k in kinds if k[0].startswith("task.")]
    assert ("task.awaiting_approval", tid) in task_events and ("task.done", tid) in task_events
    assert ("task.done", plain) in task_events
    assert task_events.index(("task.awaiting_approval", tid)) < task_events.index(("task.done", tid))
