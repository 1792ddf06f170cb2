"""Task service behaviour on both backends (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import pytest

from aictl.domain.errors import CycleError, IllegalTransition, LeaseLost, LockConflict, NotFound, UsageError
from aictl.tasks.service import TaskSpec


def spec(title="t", **kw) -> TaskSpec:
    return TaskSpec(title=title, **kw)


def events_of(b, task_id):
    return [e.action for e in b.q.events(task_id=task_id)]


def test_lifecycle_writes_one_event_per_transition(services):
    b = services
    t = b.svc.create(spec("build", priority=3, labels=["be"]))
    assert t.status == "queued" and t.id > 0
    r = b.svc.claim("w1")
    assert r.task.id == t.id and r.lease.lease_epoch == 1 and r.task.status == "claimed"
    assert b.svc.start(t.id, "w1", 1).status == "running"
    done = b.svc.complete(t.id, "w1", 1, result={"ok": True})
    assert done.status == "done" and done.result == {"ok": True}
    assert events_of(b, t.id) == ["create", "claim", "start", "complete"]
    ev = b.q.events(task_id=t.id)
    assert ev[1].before == {"status": "queued"} and ev[1].after["status"] == "claimed"
    assert ev[1].actor == "w1" and ev[1].lease_epoch == 1
    # each event names the status the task had before its change (read in the same statement on PostgreSQL)
    assert [e.before for e in ev[2:]] == [{"status": "claimed"}, {"status": "running"}]


def test_claim_order_priority_then_age(services):
    b = services
    low = b.svc.create(spec("low", priority=1))
    high = b.svc.create(spec("high", priority=9))
    low2 = b.svc.create(spec("low2", priority=1))
    got = [b.svc.claim("w").task.id for _ in range(3)]
    assert got == [high.id, low.id, low2.id]
    assert b.svc.claim("w") is None


def test_stale_epoch_is_rejected_and_names_the_winner(clocked):
    b = clocked(lease_ttl=60)
    t = b.svc.create(spec())
    first = b.svc.claim("old")
    b.clock.advance(61)
    second = b.svc.claim("new")  # reaps the expired lease, then claims again
    assert second.task.id == t.id and second.lease.lease_epoch == first.lease.lease_epoch + 1
    with pytest.raises(LeaseLost) as e:
        b.svc.complete(t.id, "old", first.lease.lease_epoch)
    assert "epoch 2" in e.value.message and "new" in e.value.message and "epoch 1" in e.value.message
    assert e.value.exit_code == 4
    assert e.value.details["current_epoch"] == 2
    for op in (
        lambda: b.svc.heartbeat(t.id, "old", 1),
        lambda: b.svc.fail(t.id, "old", 1),
        lambda: b.svc.release(t.id, "old", 1),
        lambda: b.svc.start(t.id, "old", 1),
    ):
        with pytest.raises(LeaseLost):
            op()
    assert b.svc.complete(t.id, "new", 2).status == "done"
    assert events_of(b, t.id) == ["create", "claim", "lease_expired", "claim", "complete"]
    expired = b.q.events(task_id=t.id)[2]
    assert expired.before == {"status": "claimed"} and expired.after["status"] == "queued"


def test_expired_but_unreaped_lease_reports_expiry(clocked):
    b = clocked(lease_ttl=60)
    t = b.svc.create(spec())
    r = b.svc.claim("w")
    b.clock.advance(59)
    assert b.svc.reap() == []  # not yet: a lease holds until its expiry
    b.clock.advance(2)
    assert [x.id for x in b.svc.reap()] == [t.id]
    with pytest.raises(LeaseLost, match="expired"):
        b.svc.complete(t.id, "w", r.lease.lease_epoch)


def test_wrong_owner_same_epoch_rejected(services):
    b = services
    t = b.svc.create(spec())
    b.svc.claim("alice")
    with pytest.raises(LeaseLost, match="alice"):
        b.svc.complete(t.id, "mallory", 1)


def test_heartbeat_extends_lease(clocked):
    b = clocked(lease_ttl=60)
    t = b.svc.create(spec())
    r = b.svc.claim("w")
    for _ in range(4):
        b.clock.advance(30)
        lease = b.svc.heartbeat(t.id, "w", r.lease.lease_epoch)
    assert lease.lease_expires_at == b.clock.now + 60
    assert lease.lease_expires_at > r.lease.lease_expires_at
    assert b.svc.reap() == []
    assert b.q.get(t.id).status == "claimed"


def test_reap_to_failed_after_max_attempts(clocked):
    b = clocked(lease_ttl=60)
    t = b.svc.create(spec(max_attempts=2))
    for attempt in (1, 2):
        assert b.svc.claim("w") is not None
        b.clock.advance(61)
        reaped = b.svc.reap()
        assert reaped[0].attempts == attempt
    assert b.q.get(t.id).status == "failed"
    assert b.svc.claim("w") is None


def test_illegal_transitions_are_errors(services):
    b = services
    t = b.svc.create(spec())
    with pytest.raises(IllegalTransition):
        b.svc.retry(t.id)  # queued → queued
    r = b.svc.claim("w")
    b.svc.complete(t.id, "w", r.lease.lease_epoch)
    with pytest.raises(IllegalTransition):
        b.svc.cancel(t.id)  # done is final
    with pytest.raises(IllegalTransition):
        b.svc.complete(t.id, "w", r.lease.lease_epoch)  # twice
    with pytest.raises(NotFound):
        b.svc.cancel(9999)


def test_dependencies_block_and_unblock(services):
    b = services
    a = b.svc.create(spec("a"))
    c = b.svc.create(spec("c"))
    d = b.svc.create(spec("d", depends_on=[a.id, c.id]))
    assert d.status == "blocked" and d.dependencies == [a.id, c.id]
    ra = b.svc.claim("w", task_id=a.id)
    b.svc.complete(a.id, "w", ra.lease.lease_epoch)
    assert b.q.get(d.id).status == "blocked"
    rc = b.svc.claim("w", task_id=c.id)
    b.svc.complete(c.id, "w", rc.lease.lease_epoch)
    assert b.q.get(d.id).status == "queued"
    assert events_of(b, d.id) == ["create", "unblock"]


def test_failed_dependency_keeps_dependents_blocked_with_reason(services):
    b = services
    a = b.svc.create(spec("a"))
    d = b.svc.create(spec("d", depends_on=[a.id]))
    r = b.svc.claim("w")
    b.svc.fail(a.id, "w", r.lease.lease_epoch, reason="boom")
    assert b.q.get(d.id).status == "blocked"
    entry = next(e for e in b.q.ready() if e.id == d.id)
    assert not entry.ready and entry.reasons == [f"blocked by #{a.id}: that dependency failed"]
    b.svc.retry(a.id)
    r = b.svc.claim("w")
    b.svc.complete(a.id, "w", r.lease.lease_epoch)
    assert b.q.get(d.id).status == "queued"


def test_dependency_failure_cascades_when_configured(services):
    b = services.make(on_dependency_failure="fail")
    a = b.svc.create(spec("a"))
    d = b.svc.create(spec("d", depends_on=[a.id]))
    e = b.svc.create(spec("e", depends_on=[d.id]))
    b.svc.cancel(a.id)
    assert b.q.get(d.id).status == "failed" and b.q.get(e.id).status == "failed"
    b.svc.retry(a.id)
    assert b.q.get(d.id).status == "blocked" and b.q.get(e.id).status == "blocked"


def test_cycles_rejected_with_the_cycle_named(services):
    b = services
    a = b.svc.create(spec("a"))
    c = b.svc.create(spec("c", depends_on=[a.id]))
    d = b.svc.create(spec("d", depends_on=[c.id]))
    with pytest.raises(CycleError) as e:
        b.svc.add_dependency(a.id, d.id)
    assert f"#{a.id} → #{d.id} → #{c.id} → #{a.id}" in e.value.message
    with pytest.raises(CycleError):
        b.svc.add_dependency(a.id, a.id)
    with pytest.raises(CycleError, match=r"x → y → x|y → x → y"):
        b.svc.create_many([spec("x", key="x", depends_on=["y"]), spec("y", key="y", depends_on=["x"])])
    assert len(b.q.list()) == 3  # nothing half-written


def test_batch_with_local_keys_in_any_order(services):
    b = services
    tasks = b.svc.create_many([spec("api", key="api", depends_on=["schema"]), spec("schema", key="schema")])
    api, schema = tasks
    assert api.dependencies == [schema.id] and api.status == "blocked" and schema.status == "queued"


def test_overlapping_locks_cannot_be_held_together(services):
    b = services
    a = b.svc.create(spec("a", lock_paths=["src/api/**"]))
    c = b.svc.create(spec("c", lock_paths=["src/**/*.py"]))
    d = b.svc.create(spec("d", lock_paths=["docs/**"]))
    ra = b.svc.claim("w1")
    assert ra.task.id == a.id
    assert b.svc.claim("w2").task.id == d.id  # c overlaps a's held lock, so it is skipped
    assert b.svc.claim("w3") is None
    entry = next(e for e in b.q.ready() if e.id == c.id)
    assert any(f"locked by #{a.id}" in r for r in entry.reasons)
    with pytest.raises(LockConflict, match=f"locked by #{a.id}"):
        b.svc.claim("w3", task_id=c.id)
    assert {(lock.task_id, lock.pattern, lock.lease_epoch) for lock in b.q.locks()} == {
        (a.id, "src/api/**", 1),
        (d.id, "docs/**", 1),
    }
    b.svc.release(a.id, "w1", ra.lease.lease_epoch)  # every exit path frees locks
    assert b.svc.claim("w3").task.id in (a.id, c.id)


@pytest.mark.parametrize("exit_path", ["complete", "fail", "release", "cancel", "expire"])
def test_locks_freed_on_every_exit_path(clocked, exit_path):
    b = clocked(lease_ttl=60)
    a = b.svc.create(spec("a", lock_paths=["src/**"]))
    c = b.svc.create(spec("c", lock_paths=["src/x.py"]))
    r = b.svc.claim("w")
    assert b.svc.claim("v") is None
    if exit_path == "expire":
        b.clock.advance(61)
    else:
        {
            "complete": lambda: b.svc.complete(a.id, "w", 1),
            "fail": lambda: b.svc.fail(a.id, "w", 1),
            "release": lambda: b.svc.release(a.id, "w", 1),
            "cancel": lambda: b.svc.cancel(a.id),
        }[exit_path]()
    got = b.svc.claim("v", task_id=c.id)
    assert got is not None and [lock.task_id for lock in b.q.locks()] == [c.id]
    assert r.lease.lease_epoch == 1


def test_exclusive_task_runs_alone(services):
    b = services
    x = b.svc.create(spec("migrate", exclusive=True, priority=5))
    y = b.svc.create(spec("other"))
    rx = b.svc.claim("w")
    assert rx.task.id == x.id
    assert b.svc.claim("w") is None
    b.svc.complete(x.id, "w", rx.lease.lease_epoch)
    ry = b.svc.claim("w")
    assert ry.task.id == y.id
    z = b.svc.create(spec("migrate2", exclusive=True, priority=9))
    assert b.svc.claim("w") is None  # z waits for y
    assert any("exclusive" in r for e in b.q.ready() if e.id == z.id for r in e.reasons)


def test_capabilities_and_labels_of_the_claimer(services):
    b = services
    gpu = b.svc.create(spec("train", required_capabilities=["gpu", "python"], priority=5))
    fe = b.svc.create(spec("css", labels=["frontend"]))
    assert b.svc.claim("w", capabilities=["python"]).task.id == fe.id
    assert b.svc.claim("w", capabilities=["python"]) is None
    assert b.svc.claim("w", capabilities=["gpu", "python", "docker"]).task.id == gpu.id
    c = b.svc.create(spec("css2", labels=["frontend", "urgent"]))
    b.svc.create(spec("be", labels=["backend"]))
    assert b.svc.claim("w", labels=["frontend", "urgent"]).task.id == c.id
    assert b.svc.claim("w", labels=["frontend"]) is None


def test_retryable_failure_backs_off(clocked):
    b = clocked(backoff_base=30.0, backoff_max=60.0)
    t = b.svc.create(spec(max_attempts=3))
    r = b.svc.claim("w")
    failed = b.svc.fail(t.id, "w", r.lease.lease_epoch, reason="timeout", retryable=True)
    assert failed.status == "queued" and failed.attempts == 1
    assert 15 <= failed.next_run_at - b.clock.now <= 30
    assert b.svc.claim("w") is None
    assert any("retry backoff until" in r for r in next(e for e in b.q.ready() if e.id == t.id).reasons)
    b.clock.advance(failed.next_run_at - b.clock.now)
    assert b.svc.claim("w").task.id == t.id  # due again once the backoff has passed


def test_non_retryable_failure_is_final(services):
    b = services
    t = b.svc.create(spec())
    r = b.svc.claim("w")
    assert b.svc.fail(t.id, "w", r.lease.lease_epoch, reason="policy denied").status == "failed"
    assert b.svc.retry(t.id).status == "queued"


def test_dry_run_changes_nothing(services):
    b = services
    t = b.svc.create(spec("dry"), dry_run=True)
    assert t.title == "dry"
    assert b.q.list() == [] and b.q.events() == []
    real = b.svc.create(spec("real"))
    r = b.svc.claim("w", dry_run=True)
    assert r.task.id == real.id
    assert b.q.get(real.id).status == "queued" and b.q.locks() == []


def test_invalid_lock_glob_is_a_usage_error(services):
    with pytest.raises(UsageError, match="!src"):
        services.svc.create(spec(lock_paths=["!src/**"]))


def test_ready_lists_claimable_in_claim_order(services):
    b = services
    a = b.svc.create(spec("a", priority=1))
    c = b.svc.create(spec("c", priority=7))
    d = b.svc.create(spec("d", depends_on=[a.id]))
    entries = b.q.ready()
    assert [(e.id, e.ready) for e in entries] == [(c.id, True), (a.id, True), (d.id, False)]
    assert b.q.ready(capabilities=[], limit=1)[0].id == c.id


def test_deps_tree(services):
    b = services
    a = b.svc.create(spec("a"))
    c = b.svc.create(spec("c", depends_on=[a.id]))
    d = b.svc.create(spec("d", depends_on=[c.id]))
    nodes = {(n.direction, n.id, n.depth) for n in b.q.deps(c.id)}
    assert nodes == {("dependency", a.id, 1), ("dependent", d.id, 1)}
    assert {(n.id, n.depth) for n in b.q.deps(d.id)} == {(c.id, 1), (a.id, 2)}


def test_claim_and_complete_cost_few_statements(services, monkeypatch):
    """Round trips are the store cost of a claim: a plain claim+complete sends this many statements, no more."""
    from aictl.store.postgres import PgTx
    from aictl.store.sqlite import SqliteTx

    b = services
    t = b.svc.create(spec())
    sent: list[str] = []
    for cls in (PgTx, SqliteTx):
        for name in ("one", "all", "run"):
            orig = getattr(cls, name)
            monkeypatch.setattr(
                cls, name, lambda self, sql, params=None, _o=orig: (sent.append(sql), _o(self, sql, params))[1]
            )
    r = b.svc.claim("w")
    b.svc.complete(t.id, "w", r.lease.lease_epoch)
    # SQLite (in process): probe, claim, chained event INSERT, head UPDATE; status read, update, the same two.
    # PostgreSQL: probe with the claim lock, claim, chain+NOTIFY in one; update, chain in one.
    assert len(sent) == {"sqlite": 8, "postgresql": 5}[b.store.dialect], sent
    assert [e.action for e in b.q.events(task_id=t.id)] == ["create", "claim", "complete"]
