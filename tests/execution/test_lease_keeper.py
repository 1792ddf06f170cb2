"""The lease keeper rides out a store outage shorter than the lease, and gives up once the lease may be gone.

A real PostgreSQL server of the test's own is stopped (pg_ctl stop) under a running
keeper and started again on the same port.
"""

from __future__ import annotations

import time

import pytest

from aictl.execution.lease import LeaseKeeper
from aictl.store import open_store
from aictl.tasks.queries import TaskQueries
from aictl.tasks.service import TaskService, TaskSpec

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _keeper(url, make_settings, ttl):
    settings = make_settings(database_url=url)
    svc = TaskService(open_store(url), settings)
    task = svc.create(TaskSpec(title="long run"))
    claim = svc.claim("w1", task_id=task.id, ttl=ttl)
    keeper = LeaseKeeper(
        lambda: TaskService(open_store(url), settings),
        task.id,
        "w1",
        claim.lease.lease_epoch,
        ttl=ttl,
        interval=0.3,
        poll=0.1,
    )
    keeper.start()
    return svc, task, keeper


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_an_outage_shorter_than_the_lease_does_not_stop_the_run(own_pg_server, make_settings):
    url = own_pg_server.create_database()
    svc, task, keeper = _keeper(url, make_settings, ttl=30)
    try:
        svc.store.close()
        own_pg_server.pause()
        _wait(lambda: keeper.store_error is not None, 20, "the keeper to notice the outage")
        assert not keeper.stop.is_set()
        own_pg_server.resume()
        svc = TaskService(open_store(url), svc.settings)
        before = svc.store_status(task.id)

        def expires():
            return TaskQueries(svc.store).get(task.id).lease_expires_at

        first = expires()
        _wait(lambda: expires() > first, 20, "a heartbeat after the server came back")
        assert before == "claimed" and not keeper.stop.is_set() and keeper.store_error is None
    finally:
        keeper.finish()


def test_an_outage_longer_than_the_lease_stops_the_run_with_the_reason(own_pg_server, make_settings):
    url = own_pg_server.create_database()
    svc, _task, keeper = _keeper(url, make_settings, ttl=2)
    try:
        svc.store.close()
        own_pg_server.pause()
        assert keeper.stop.wait(30), "the keeper kept the run going past its lease"
        assert "could not reach the store to renew the lease for 2s" in keeper.lost_reason
    finally:
        keeper.finish()
        own_pg_server.resume()
