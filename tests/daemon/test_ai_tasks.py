"""AI tasks through the daemon: routed to a registered AI (the real anthropic SDK against the fake provider),
a rate-limited AI paused and skipped, and command tasks and policy refusals handled without churn."""

from __future__ import annotations

import time

from aictl.agents.registry import Registry
from aictl.daemon.loop import DaemonOptions
from aictl.domain.models import AIRecord
from aictl.tasks.queries import TaskQueries
from aictl.tasks.service import TaskService, TaskSpec
from tests.daemon.conftest import Running, git, wait_for
from tests.fakeprovider import error, reply, tool

KEY = "sk-ant-test-KEYVALUE-0001"


def register(store, fp, ai_id: str) -> None:
    Registry(store, actor="ops").register(
        AIRecord(
            id=ai_id,
            connector="anthropic",
            model="claude-haiku-4-5",
            config={"base_url": fp.url, "api_key_env": "ANTHROPIC_API_KEY", "retry_backoff_s": 0.01},
        )
    )


def test_an_ai_task_is_routed_run_and_a_rate_limited_ai_is_paused_and_skipped(loop_project, fake_provider, monkeypatch):
    from aictl.daemon.loop import Daemon

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    settings, store = loop_project
    register(store, fake_provider, "api-1")
    register(store, fake_provider, "api-2")
    q = TaskQueries(store)
    tid = (
        TaskService(store, settings)
        .create(TaskSpec(title="create hello.txt containing hi", lock_paths=["hello.txt"]))
        .id
    )
    # The first AI asked hits a long usage limit; whoever runs it next writes the file.
    fake_provider.script(
        error(429, retry_after=3600),
        reply("I'll add it.", [tool("write_file", {"path": "hello.txt", "content": "hi\n"})]),
        reply("Added hello.txt."),
    )
    with Running(Daemon(settings, DaemonOptions(workers=1))) as d:
        t = wait_for(lambda: (t := q.get(tid)).status == "done" and t, 90, "the daemon to run the AI task")
    first = next(e for e in q.events(task_id=tid) if e.action == "claim").data["ai"]
    other = "api-2" if first == "api-1" else "api-1"
    assert t.ai == other  # the paused AI was not routed to again
    paused = Registry(store).get(first)
    assert paused.paused_until is not None and paused.paused_until > time.time() + 3000
    assert Registry(store).get(other).paused_until is None
    assert git(settings.project_dir, "show", f"aictl/task-{tid}:hello.txt") == "hi\n"
    assert t.owner.startswith(f"{settings.actor}/daemon-{d.id}/w1")
    assert len(fake_provider.calls()) == 3 and d.counts.get("done") == 1
    # The daemon's claim was the router's choice: the limit hands the task on, it costs no failed attempt.
    actions = [e.action for e in q.events(task_id=tid)]
    assert "fail" not in actions and "release" in actions, actions


def test_only_the_named_ais_are_used(loop_project, fake_provider, monkeypatch):
    import pytest

    from aictl.daemon.loop import Daemon
    from aictl.domain.errors import NotFound

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    settings, store = loop_project
    register(store, fake_provider, "api-1")
    register(store, fake_provider, "api-2")
    q = TaskQueries(store)
    svc = TaskService(store, settings)
    ai_task = svc.create(TaskSpec(title="for api-1 only", labels=["ai:api-1"])).id
    cmd_task = svc.create(TaskSpec(title="a command", command="true")).id
    with Running(Daemon(settings, DaemonOptions(workers=1, ai_ids=["api-2"]))):
        wait_for(lambda: q.get(cmd_task).status == "done", 60, "the command task to run")  # commands always run
        time.sleep(0.5)
        assert q.get(ai_task).status == "queued" and not fake_provider.calls()
    with pytest.raises(NotFound, match="no AI registered as nobody"):
        Daemon(settings, DaemonOptions(ai_ids=["api-2", "nobody"])).prepare()


def test_a_policy_refusal_of_a_command_task_is_recorded_once_per_worker_not_on_every_poll(loop_project):
    from aictl.daemon.loop import Daemon

    settings, store = loop_project
    policy = settings.project_dir / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text()
        + """
  - id: nobody-runs-forbidden
    effect: deny
    match: {actions: [claim], task_labels: [forbidden]}
    reason: not here
"""
    )
    q = TaskQueries(store)
    svc = TaskService(store, settings)
    refused = svc.create(TaskSpec(title="forbidden", command="true", labels=["forbidden"], priority=5)).id
    fine = svc.create(TaskSpec(title="fine", command="true")).id
    opts = DaemonOptions(workers=2, poll_min_s=0.02, poll_max_s=0.02)
    with Running(Daemon(settings, opts)):
        wait_for(lambda: q.get(fine).status == "done", 60, "the allowed task to run")
        time.sleep(1.0)  # ~50 polls, each of which sees the refused task queued
    with store.read() as tx:
        denials = tx.all(
            "SELECT ai FROM decisions WHERE task_id = :t AND action = 'claim' AND effect = 'deny'", {"t": refused}
        )
    assert q.get(refused).status == "queued"
    assert 1 <= len(denials) <= 2 and len({d["ai"] for d in denials}) == len(denials)  # once per worker at most
