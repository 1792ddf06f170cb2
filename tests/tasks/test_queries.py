"""The tasks table's one reader (aictl.tasks.queries helpers) and the fenced activity write, on both backends."""

from __future__ import annotations

import pytest

from aictl.domain.errors import NotFound
from aictl.tasks.fence import write_activity
from aictl.tasks.queries import (
    any_lease_expired,
    claimable_rows,
    held_by_ai,
    held_counts_by_ai,
    live_leases_and_failures,
    queued_due,
    task_row,
    task_rows,
)
from aictl.tasks.service import TaskSpec
from aictl.tasks.sql import claimable_where


def test_rows_and_holders(clocked):
    b = clocked(lease_ttl=60)
    a, c, d = (b.svc.create(TaskSpec(title=t, priority=p)) for t, p in (("a", 1), ("c", 9), ("d", 5)))
    ra = b.svc.claim("w", task_id=a.id, ai="bot")
    b.svc.claim("w", task_id=d.id, ai="bot")
    with b.store.read() as tx:
        assert task_row(tx, a.id)["ai"] == "bot"
        assert sorted(task_rows(tx, [a.id, c.id, 999_999])) == [a.id, c.id]
        assert held_by_ai(tx, "bot") == [a.id, d.id] and held_by_ai(tx, "other") == []
        assert held_counts_by_ai(tx) == {"bot": 2}
        where, params = claimable_where(tx, capabilities=None, labels=None, task_id=None)
        assert [r["id"] for r in claimable_rows(tx, where, {**params, "now": b.clock.now}, limit=5)] == [c.id]
        assert {(r["id"], r["lease_epoch"]) for r in live_leases_and_failures(tx)} == {(a.id, 1), (d.id, 1)}
        assert not any_lease_expired(tx, b.clock.now)
        assert any_lease_expired(tx, ra.lease.lease_expires_at + 1)
    with b.store.read() as tx, pytest.raises(NotFound):
        task_row(tx, 999_999)


def test_queued_due_names_the_end_of_the_earliest_backoff(clocked):
    b = clocked(backoff_base=30.0, backoff_max=60.0)
    t = b.svc.create(TaskSpec(title="t", max_attempts=3))
    with b.store.read() as tx:
        assert queued_due(tx, b.clock.now) == (True, None)
    r = b.svc.claim("w")
    failed = b.svc.fail(t.id, "w", r.lease.lease_epoch, retryable=True)
    with b.store.read() as tx:
        assert queued_due(tx, b.clock.now) == (False, failed.next_run_at)
        assert queued_due(tx, failed.next_run_at) == (True, None)


def test_activity_is_written_only_under_the_current_lease(clocked):
    b = clocked(lease_ttl=60)
    t = b.svc.create(TaskSpec(title="t"))
    first = b.svc.claim("w")
    with b.store.write() as tx:
        assert write_activity(tx, t.id, "w", first.lease.lease_epoch, "editing x.py")
    b.clock.advance(61)
    second = b.svc.claim("v")  # reaps the first lease, claims again at epoch 2
    with b.store.write() as tx:
        assert not write_activity(tx, t.id, "w", first.lease.lease_epoch, "stale")
        assert write_activity(tx, t.id, "v", second.lease.lease_epoch, None)
    assert b.q.get(t.id).activity is None
