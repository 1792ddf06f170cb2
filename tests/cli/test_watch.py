"""`aictl task watch`: one frame with --once; -o json streams events committed by other processes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from aictl.cli.main import main


@pytest.fixture
def svc(project):
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService

    settings = load_settings(project)
    store = open_store(settings.resolved_database_url)
    yield TaskService(store, settings)
    store.close()


def board(svc):
    """A running task with its AI and latest action, one awaiting approval, one failed, one ready."""
    from aictl.tasks.service import TaskSpec

    run, appr, bad, ready = svc.create_many(
        [
            TaskSpec(title="Refactor the session store"),
            TaskSpec(title="Deploy to production"),
            TaskSpec(title="Upgrade the ORM"),
            TaskSpec(title="Write release notes", priority=5),
        ]
    )
    c = svc.claim("worker-1", task_id=run.id)
    svc.start(run.id, "worker-1", c.lease.lease_epoch)
    with svc.store.write() as tx:  # what the executor writes while an agent works
        tx.run(
            "UPDATE tasks SET ai = 'claude-opus', activity = 'Edit src/session/store.py' WHERE id = :id", {"id": run.id}
        )
    c = svc.claim("worker-2", task_id=appr.id)
    svc.await_approval(appr.id, "worker-2", c.lease.lease_epoch, reason="policy rule prod-deploy needs a human")
    c = svc.claim("worker-3", task_id=bad.id)
    svc.fail(bad.id, "worker-3", c.lease.lease_epoch, reason="verification failed: pytest -q exited 1")
    return run, appr, bad, ready


def test_once_shows_running_approvals_and_failures(svc, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    run, appr, bad, ready = board(svc)
    assert main(["task", "watch", "--once"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def row(task_id):
        return next(line for line in lines if line.split()[:1] == [str(task_id)])

    assert "running 1" in out and "awaiting approval 1" in out and "failed 1" in out and "queued 1" in out
    assert "Running (1)" in out and "claude-opus" in row(run.id) and "Edit src/session/store.py" in row(run.id)
    assert "Awaiting approval (1)" in out and "prod-deploy needs a human" in row(appr.id)
    assert "Recent failures (1 failed)" in out and "pytest -q exited 1" in row(bad.id)
    assert "Write release notes" in row(ready.id)


def test_once_json_is_one_snapshot(svc, capsys):
    run, appr, bad, ready = board(svc)
    assert main(["task", "watch", "--once", "-o", "json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["counts"] == {"running": 1, "awaiting_approval": 1, "failed": 1, "queued": 1}
    assert [(t["id"], t["ai"], t["activity"]) for t in snap["running"]] == [
        (run.id, "claude-opus", "Edit src/session/store.py")
    ]
    assert [(t["id"], t["reason"]) for t in snap["approvals"]] == [(appr.id, "policy rule prod-deploy needs a human")]
    assert [(t["id"], t["reason"]) for t in snap["failures"]] == [(bad.id, "verification failed: pytest -q exited 1")]
    assert [t["id"] for t in snap["ready"]] == [ready.id]


def test_empty_board(project, capsys):
    assert main(["task", "watch", "--once"]) == 0
    out = capsys.readouterr().out
    assert "nothing running" in out and "no approvals waiting" in out and "no failures" in out
    assert main(["task", "watch", "--once", "-o", "yaml"]) == 2


def popen_watch(project, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "aictl", "task", "watch", "-o", "json", "--interval", "0.2", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def start_watch(project, *args):
    p = popen_watch(project, *args)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in p.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return p, lines


def test_json_streams_events_from_other_processes_until_sigint(svc, project):
    from aictl.tasks.service import TaskSpec

    before = svc.create(TaskSpec(title="before watch started"))
    p, lines = start_watch(project)
    try:
        # The watcher starts at the head it reads when it starts; keep creating tasks until the first
        # line arrives (the events of tasks created before it read the head are, rightly, not streamed).
        created, first = [], None
        for i in range(100):
            created.append(svc.create(TaskSpec(title=f"after {i}")).id)
            try:
                first = lines.get(timeout=0.5)
                break
            except queue.Empty:
                assert p.poll() is None, p.stderr.read()
        assert first is not None, "no event streamed"
        c = svc.claim("w9", task_id=created[-1])
        svc.complete(created[-1], "w9", c.lease.lease_epoch)
        events = [json.loads(first)]
        while events[-1]["action"] != "complete":
            line = lines.get(timeout=30)
            assert line is not None, p.stderr.read()
            events.append(json.loads(line))
        ids = [e["id"] for e in events]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # every event, in order, once
        assert before.id not in [e["task_id"] for e in events]
        assert events[0]["action"] == "create" and events[0]["task_id"] in created
        assert [e["action"] for e in events[-2:]] == ["claim", "complete"]
        assert events[-1]["after"] == {"status": "done"} and events[-1]["task_id"] == created[-1]
    finally:
        p.send_signal(signal.SIGINT)
        try:
            code = p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
    assert code == 0, p.stderr.read()
    assert "Traceback" not in p.stderr.read()


def test_json_since_replays_and_a_closed_pipe_ends_it_quietly(svc, project):
    from aictl.tasks.service import TaskSpec

    svc.create(TaskSpec(title="one"))
    svc.create(TaskSpec(title="two"))
    p = popen_watch(project, "--since", "1")
    import select

    # Events 2.. already exist: the first line comes at once (bounded wait, so a broken watch fails, not hangs).
    if not select.select([p.stdout], [], [], 30)[0]:
        p.kill()
        pytest.fail(f"watch printed nothing in 30 s: {p.stderr.read()}")
    got = json.loads(p.stdout.readline())
    assert got["id"] == 2 and got["action"] == "create"
    p.stdout.close()  # the reader goes away, like `| head -1`
    for i in range(20):  # the next write hits the closed pipe
        svc.create(TaskSpec(title=f"more {i}"))
        try:
            code = p.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        p.kill()
        pytest.fail("watch kept running after its reader went away")
    err = p.stderr.read()
    assert code == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
