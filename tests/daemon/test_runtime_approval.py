"""The daemon parks a run whose command needs a person's approval, and runs it again once approved: the approval
grants that command to the next attempt (aictl.policy.runtime), and the daemon picks the task up by itself."""

from __future__ import annotations

import pytest

from tests.daemon.conftest import wait_for


@pytest.mark.slow
def test_the_daemon_parks_a_command_for_approval_and_resumes_it_once_approved(make_daemon_project):
    p = make_daemon_project()
    policy = p.root / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text().replace(
            "rules:\n",
            "rules:\n  - id: deploys-need-approval\n    effect: require_approval\n"
            "    match: {actions: [run_command], programs: [touch]}\n    reason: a person says when to deploy\n",
            1,
        )
    )
    p.start("--workers", "1")
    tid = p.create("deploy", "--lock", "deployed.txt", "--command", "touch deployed.txt")
    t = wait_for(lambda: (t := p.task(tid)).status == "awaiting_approval" and t, 60, "the task to wait")
    [parked] = p.events(tid, "await_approval")
    assert parked["data"]["stage"] == "tool" and parked["data"]["pending"]["target"] == "touch deployed.txt"
    assert parked["data"]["pending"]["rule"] == "deploys-need-approval"
    p.jcli("task", "approve", str(tid))
    t = wait_for(lambda: (t := p.task(tid)).status == "done" and t, 60, "the daemon to run it after the approval")
    assert t.result["changed_paths"] == ["deployed.txt"] and t.lease_epoch == 2
