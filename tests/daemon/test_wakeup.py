"""Wake-ups: SQLite backoff polling, PostgreSQL LISTEN/NOTIFY sent by the task service at commit."""

from __future__ import annotations

import threading
import time

import pytest

from aictl.config import Settings
from aictl.daemon.wakeup import CHANNEL, ListenWakeup, PollWakeup, make_wakeup
from aictl.store import open_store
from aictl.tasks.service import TaskService, TaskSpec


def test_poll_backs_off_to_the_cap_and_resets_on_activity():
    w = PollWakeup(poll_min=0.05, poll_max=1.0)
    delays = []
    for _ in range(7):
        delays.append(w.next_delay())
        assert w.wait(cap=0) is False  # nothing woke it: the next wait is longer
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    w.reset()  # work was found
    assert w.next_delay() == 0.05
    for _ in range(4):
        w.wait(cap=0)
    w.wake()  # e.g. a worker finished
    assert w.wait(cap=10) is True and w.next_delay() == 0.05


def test_wake_from_another_thread_ends_a_long_wait():
    w = PollWakeup(poll_min=30, poll_max=30)
    threading.Timer(0.05, w.wake).start()
    assert w.wait() is True  # returned on the wake, not after 30 s (the test's timeout would catch that)


def test_sqlite_wakes_when_another_connection_commits(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    w = make_wakeup(url, poll_min=30, poll_max=30)
    try:
        assert w.mode == "poll+data_version"
        assert w.wait(cap=0.3) is False  # nothing committed: no wake-up

        def create_elsewhere() -> None:  # another connection, as another process would have
            with open_store(url) as other:
                TaskService(other, Settings(database_url=url, actor="t")).create(TaskSpec(title="new"))

        threading.Timer(0.2, create_elsewhere).start()
        assert w.wait() is True and w.changes == 1  # well before the 30 s poll
        with store.read() as tx:  # reads change nothing
            tx.all("SELECT * FROM tasks")
        assert w.wait(cap=0.3) is False
    finally:
        w.close()
        store.close()


@pytest.mark.postgres
def test_sqlite_polls_and_postgres_listens(tmp_path, pg_url):
    assert make_wakeup(f"sqlite:///{tmp_path / 's.db'}").mode == "poll+data_version"
    w = make_wakeup(pg_url)
    try:
        assert isinstance(w, ListenWakeup)
    finally:
        w.close()


@pytest.mark.postgres
def test_state_changes_that_can_free_work_notify_at_commit_and_claims_do_not(pg_url):
    import psycopg

    from aictl.store.postgres import libpq_url

    store = open_store(pg_url)
    svc = TaskService(store, Settings(database_url=pg_url, actor="t"))
    listener = psycopg.connect(libpq_url(pg_url), autocommit=True)
    listener.execute(f"LISTEN {CHANNEL}")

    def notified() -> int:
        return sum(1 for _ in listener.notifies(timeout=0.3))

    try:
        assert notified() == 0
        with store.write() as tx:  # nothing is delivered before the commit …
            from aictl.tasks.service import notify_daemons

            notify_daemons(tx)
            notify_daemons(tx)  # … and one transaction notifies once
            assert notified() == 0
        assert notified() == 1
        svc.create_many([TaskSpec(title=f"t{i}") for i in range(3)])
        assert notified() == 1  # a batch is one transaction
        claim = svc.claim("w")
        assert notified() == 0  # a claim frees nothing
        svc.start(claim.task.id, "w", claim.lease.lease_epoch)
        assert notified() == 0
        svc.complete(claim.task.id, "w", claim.lease.lease_epoch)
        assert notified() == 1  # done: its locks are free, its dependents may be ready
        claim = svc.claim("w")
        svc.release(claim.task.id, "w", claim.lease.lease_epoch)
        assert notified() == 1
        from aictl.agents.registry import Registry
        from aictl.domain.models import AIRecord

        reg = Registry(store, actor="ops")
        reg.register(AIRecord(id="api-1", connector="command"))
        assert notified() == 1  # a new AI may take waiting tasks
        reg.pause("api-1", time.time() + 60, "rate limit")
        notified()
        reg.resume("api-1")
        assert notified() == 1  # so may an AI whose usage limit is over
    finally:
        listener.close()
        store.close()


@pytest.mark.postgres
def test_listen_wakeup_wakes_on_a_task_created_elsewhere(pg_url):
    store = open_store(pg_url)
    w = ListenWakeup(pg_url, poll_min=30, poll_max=30, listen_max=30)
    try:
        for _ in range(200):  # until the listener thread has connected
            if w.listening:
                break
            w.wait(cap=0.05)
        assert w.listening
        w.wait(cap=0)  # drop the wake-up it sends itself on connecting
        TaskService(store, Settings(database_url=pg_url, actor="t")).create(TaskSpec(title="new work"))
        assert w.wait() is True and w.notifications >= 1
    finally:
        w.close()
        store.close()
