"""A flapping store connection: a real PostgreSQL server stopped and started again under a running daemon.

The daemon must log the outage, keep running (never crash), report the store as
unreachable in `daemon status`, reconnect with backoff when the server is back —
its LISTEN connection too — and finish every task exactly once.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.daemon.conftest import CONFIG, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.postgres
@pytest.mark.slow
def test_daemon_survives_postgres_going_away_and_coming_back(own_pg_server, make_daemon_project):
    url = own_pg_server.create_database()
    p = make_daemon_project(
        config=CONFIG.replace("max_attempts: 5", "max_attempts: 50"), env={"AICTL_DATABASE_URL": url}
    )
    info = p.start("--workers", "2")
    ids = [p.create(f"before {i}", "--command", "sleep 0.3") for i in range(6)]
    wait_for(lambda: p.task(ids[0]).status == "done", 60, "the daemon to start working")

    def daemon_sees_store() -> bool:
        r = p.cli("daemon", "status", "-o", "json")
        return r.returncode == 0 and json.loads(r.stdout)["store"]["reachable"] is True

    for outage in range(2):
        own_pg_server.pause()
        try:

            def sees_outage() -> dict | None:
                r = p.cli("daemon", "status", "-o", "json")
                st = json.loads(r.stdout)
                return st if r.returncode == 0 and st["store"]["reachable"] is False else None

            st = wait_for(sees_outage, 60, "daemon status to report the store unreachable", interval=0.3)
            assert st["running"] and st["store"]["error"]
            assert st["store_from_here"]["reachable"] is False and st["daemons"] is None
            time.sleep(1.5)  # stay down across a few of the daemon's retries
            assert _alive(info["pid"])
        finally:
            own_pg_server.resume()
        ids += [p.create(f"after outage {outage} #{i}", "--command", "sleep 0.2") for i in range(4)]
        # The next outage must start after the daemon reconnected, or its backoff spans both outages as one.
        wait_for(daemon_sees_store, 60, "daemon status to report the store reachable again", interval=0.3)

    def all_done() -> bool:
        with p.store() as store, store.read() as tx:
            rows = tx.all("SELECT status FROM tasks")
        return len(rows) == len(ids) and all(r["status"] == "done" for r in rows)

    wait_for(all_done, 120, "every task to be done after the outages", interval=0.3)
    assert _alive(info["pid"])
    st = json.loads(p.cli("daemon", "status", "-o", "json").stdout)
    assert st["store"]["reachable"] is True and [d["id"] for d in st["daemons"]] == [info["daemon_id"]]
    completes = [e["task_id"] for e in p.events(action="complete")]
    assert sorted(completes) == sorted(ids)  # each exactly once

    log = [json.loads(x) for x in (p.daemon_dir / "daemon.log").read_text().splitlines()]
    events = [e["event"] for e in log]
    assert events.count("store reachable again") >= 2
    assert "store unreachable; retrying" in events
    assert "listening for task notifications again" in events
    retries = [e["retry_in_s"] for e in log if e["event"] == "store unreachable; retrying"]
    assert max(retries) > min(retries)  # backoff, not a hot loop
    assert p.cli("daemon", "stop").returncode == 0
