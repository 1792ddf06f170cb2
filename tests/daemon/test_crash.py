"""A daemon SIGKILLed mid-task loses nothing: its lease expires, another daemon finishes the task, the
dead one's epoch is fenced off. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.daemon.conftest import wait_for


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_env(request) -> dict:
    if request.param == "sqlite":
        return {}
    return {"AICTL_DATABASE_URL": request.getfixturevalue("pg_url")}


@pytest.mark.slow
def test_sigkilled_daemon_mid_task_loses_nothing_and_runs_nothing_twice(make_daemon_project, backend_env):
    p = make_daemon_project(env=backend_env)
    first = p.start("--workers", "1")
    tid = p.create("long job", "--lock", "src/**", "--command", p.sleeper(3))
    wait_for(lambda: p.task(tid).status == "running" and p.runs(), 60, "the first daemon to run the task")
    held = p.task(tid)
    assert held.lease_epoch == 1 and held.owner.endswith(f"/daemon-{first['daemon_id']}/w1")

    os.kill(first["pid"], signal.SIGKILL)  # no cleanup code runs: no release, no sign-off
    for f in p.pid_dir.glob("*.pid"):  # its orphaned command too, as if the machine had died
        os.killpg(int(f.read_text()), signal.SIGKILL)
        f.unlink()

    second = p.start("--workers", "1")
    assert second["took_over"]["pid"] == first["pid"]
    t = wait_for(lambda: (t := p.task(tid)).status == "done" and t, 90, "the second daemon to finish the task")
    assert t.lease_epoch == 2 and t.owner.endswith(f"/daemon-{second['daemon_id']}/w1")

    events = p.events(tid)
    actions = [(e["action"], e["lease_epoch"]) for e in events]
    assert ("lease_expired", 1) in actions  # recovered by expiry, as the sweep found it
    assert [e["lease_epoch"] for e in events if e["action"] == "claim"] == [1, 2]
    completes = [e for e in events if e["action"] == "complete"]
    assert len(completes) == 1 and completes[0]["lease_epoch"] == 2  # finished exactly once
    assert p.runs() == ["run", "run"]  # started twice (the first run died with its daemon), completed once

    # The dead daemon's result, arriving late, is rejected by its epoch.
    r = p.cli("task", "complete", str(tid), "--owner", held.owner, "--epoch", "1", "-o", "json")
    assert r.returncode == 4
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "lease_lost" and err["details"]["current_epoch"] == 2
    assert p.task(tid).lease_epoch == 2 and len(p.events(tid, "complete")) == 1
    assert p.cli("daemon", "stop").returncode == 0
