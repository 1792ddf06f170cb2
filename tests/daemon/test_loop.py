"""The scheduler loop in-process (a thread), where what it decides is clearer to see than through the CLI."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aictl.config import load_settings
from aictl.daemon.logs import RotatingLogStream, iter_log_lines
from aictl.daemon.loop import Daemon, DaemonOptions
from aictl.daemon.process import DaemonPaths
from aictl.domain.errors import UsageError
from aictl.tasks.queries import TaskQueries
from aictl.tasks.service import TaskService, TaskSpec
from tests.daemon.conftest import Running, make_project, wait_for


def test_runs_command_tasks_and_leaves_tasks_without_a_command_to_an_ai(loop_project):
    settings, store = loop_project
    svc, q = TaskService(store, settings), TaskQueries(store)
    runnable = [svc.create(TaskSpec(title=f"cmd {i}", command="true")).id for i in range(3)]
    needs_ai = svc.create(TaskSpec(title="write the docs", priority=9)).id  # no command, no AI registered
    with Running(Daemon(settings, DaemonOptions(workers=2))) as d:
        wait_for(lambda: all(q.get(t).status == "done" for t in runnable), 60, "the command tasks to finish")
        assert q.get(needs_ai).status == "queued" and q.get(needs_ai).lease_epoch == 0
        owners = {q.get(t).owner for t in runnable}
        assert owners <= {f"{settings.actor}/daemon-{d.id}/w1", f"{settings.actor}/daemon-{d.id}/w2"}
    assert d.counts == {"done": 3}  # read after the stop: a worker counts just after the task is done


def test_a_task_waiting_for_its_retry_time_is_picked_up_when_due_without_fast_polling(loop_project):
    """Polls back off to a minute here, and sweeps are a minute apart: only the task's own due time
    (next_run_at) can wake the daemon in time."""
    settings, store = loop_project
    settings.backoff_base = 1.0
    svc, q = TaskService(store, settings), TaskQueries(store)
    tid = svc.create(TaskSpec(title="flaky", command="true")).id
    claim = svc.claim("someone")
    retry_at = svc.fail(tid, "someone", claim.lease.lease_epoch, reason="flaky", retryable=True).next_run_at
    assert retry_at is not None and retry_at > time.time()
    opts = DaemonOptions(workers=1, poll_min_s=60, poll_max_s=60, sweep_interval_s=60, heartbeat_interval_s=60)
    with Running(Daemon(settings, opts)) as d:
        wait_for(lambda: q.get(tid).status == "done", 30, "the daemon to run the task once it was due")
        claim_ts = [e.ts for e in q.events(task_id=tid) if e.action == "claim"][-1]
        assert claim_ts >= retry_at
    assert d.counts == {"done": 1}


def test_status_snapshot_shows_running_tasks_and_busy_workers(loop_project):
    settings, store = loop_project
    svc, q = TaskService(store, settings), TaskQueries(store)
    tid = svc.create(TaskSpec(title="slow", command="sleep 30")).id
    with Running(Daemon(settings, DaemonOptions(workers=3))) as d:
        snap = wait_for(lambda: (s := d.snapshot())["running"] and s, 60, "a worker to take the task")
        assert snap["workers"] == {"total": 3, "busy": 1, "idle": 2}
        run = snap["running"][0]
        assert (run["task_id"], run["title"], run["connector"], run["worker"]) == (tid, "slow", "command", 1)
        assert run["since"] <= time.time() and snap["store"]["reachable"] is True
        assert snap["wakeup"]["mode"] == "poll+data_version" and snap["last_sweep_at"] is not None
    t = q.get(tid)  # stopped with --now semantics: released, with a reason
    assert t.status == "queued" and d.counts == {"released": 1}


def test_unreachable_store_at_start_is_retried_not_fatal(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = make_project(tmp_path / "repo")
    monkeypatch.chdir(root)
    settings = load_settings(root, {"database_url": f"postgresql+psycopg://nobody@127.0.0.1:{port}/none"})
    d = Daemon(settings, DaemonOptions(workers=1, store_retry_min_s=0.05, store_retry_max_s=0.2))
    runner = Running(d)
    with runner:
        snap = d.snapshot()
        assert snap["store"]["reachable"] is False and "cannot connect" in snap["store"]["error"]
        wait_for(lambda: d.store_generation >= 3, 30, "the daemon to retry the store a few times")
        assert runner.thread.is_alive()
    assert d.state == "stopped"


def test_a_store_url_that_can_never_work_fails_at_start(tmp_path, monkeypatch):
    root = make_project(tmp_path / "repo")
    monkeypatch.chdir(root)
    settings = load_settings(root, {"database_url": "mysql://db/aictl"})
    with pytest.raises(UsageError, match="unsupported database URL"):
        Daemon(settings, DaemonOptions()).prepare()


def test_log_stream_rotates_and_follow_reads_across_rotations(tmp_path):
    paths = DaemonPaths(tmp_path / "daemon")
    stream = RotatingLogStream(paths.log, max_bytes=300, backups=3)
    stream.write('{"n": 0}\n')
    seen: list[str] = []
    stop = threading.Event()
    follower = threading.Thread(
        target=lambda: seen.extend(iter_log_lines(paths, lines=10, follow=True, stop=stop.is_set, poll=0.01))
    )
    follower.start()
    try:
        for n in range(1, 40):
            stream.write(f'{{"n": {n}, "pad": "{"x" * 20}"}}\n')
            time.sleep(0.005)
        wait_for(lambda: seen and '"n": 39' in seen[-1], 10, "the follower to read the last line")
    finally:
        stop.set()
        follower.join(5)
        stream.close()
    assert (paths.dir / "daemon.log.1").exists() and (paths.dir / "daemon.log.3").exists()
    numbers = [int(x.split('"n": ')[1].split(",")[0].rstrip("}")) for x in seen]
    assert numbers == sorted(set(numbers))  # in order, none twice
    # Rotation keeps only 3 backups, but a follower that keeps up misses nothing it was there for.
    assert numbers[0] == 0 and numbers[-1] == 39 and len(numbers) == 40
    assert list(iter_log_lines(paths, lines=2, follow=False)) == [x for x in seen[-2:]]


def test_an_unexpected_error_in_a_pass_is_logged_and_the_loop_goes_on(loop_project, monkeypatch):
    """A bug (not a store error) must not kill the scheduler, nor be mistaken for an outage."""
    settings, store = loop_project
    q = TaskQueries(store)
    tid = TaskService(store, settings).create(TaskSpec(title="after the bug", command="true")).id
    d = Daemon(settings, DaemonOptions(workers=1, store_retry_min_s=0.05))
    real = d.claimer.ready_now
    failures = {"left": 3}

    def buggy(store):
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("a bug in a pass")
        return real(store)

    monkeypatch.setattr(d.claimer, "ready_now", buggy)
    with Running(d):
        wait_for(lambda: q.get(tid).status == "done", 60, "the daemon to get past the failing passes")
    assert failures["left"] == 0 and d.store_generation == 0  # not taken for a store outage


def test_a_run_that_errors_every_time_counts_attempts_and_fails_instead_of_looping(loop_project):
    """An error before the agent even runs (here: the workspace base does not exist) is a failed attempt,
    with the retry backoff — not a release the daemon would claim again at once, forever."""
    settings, store = loop_project
    settings.workspace_base = "no-such-branch"
    settings.backoff_base = 0.0
    q = TaskQueries(store)
    tid = TaskService(store, settings).create(TaskSpec(title="doomed", command="true", max_attempts=3)).id
    with Running(Daemon(settings, DaemonOptions(workers=1, poll_min_s=0.01, poll_max_s=0.01))) as d:
        t = wait_for(lambda: (t := q.get(tid)).status == "failed" and t, 60, "the task to fail for good")
        time.sleep(0.3)  # a looping daemon would go on claiming it
    assert t.attempts == 3 and "no-such-branch" in t.result["error"]
    claims = [e for e in q.events(task_id=tid) if e.action == "claim"]
    assert len(claims) == 3  # one claim per attempt: the executor records the failed attempt itself
    # decided by the executor (two retries, then failed), the same as under `task execute`; no worker crashed
    assert (d.counts.get("retrying"), d.counts.get("failed"), d.counts.get("error")) == (2, 1, None)
