"""Workers that die by SIGKILL: leases end only by expiry, fencing stops the dead, no half-written state.

The victims are real processes (tests/tasks/claim_worker.py) killed with
SIGKILL, so no cleanup code of theirs runs; the late completion comes from a
fresh process through the real CLI, exactly as a worker that woke up late would
send it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from aictl.config import Settings
from aictl.domain.errors import IllegalTransition, LockConflict
from aictl.domain.status import HOLDING_LOCKS
from aictl.store import open_store
from aictl.tasks.queries import TaskQueries
from aictl.tasks.service import TaskService, TaskSpec
from tests.conftest import run_cli
from tests.tasks.claim_worker import read_msg, start_worker


def kill(*procs) -> None:
    """SIGKILL every worker, reap them all, then check each was still alive to be killed."""
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait(timeout=10)
    for p in procs:
        if p.returncode != -signal.SIGKILL:
            raise AssertionError(f"worker {p.pid} exited {p.returncode} before the kill:\n{p.stderr.read()}")


@pytest.mark.parametrize("rescuer", ["rescuer", "doomed"], ids=["other-owner", "same-owner"])
def test_sigkilled_holder_keeps_its_lease_until_expiry_then_is_fenced_off(store_url, tmp_path, rescuer):
    """rescuer == "doomed" is a worker restarted under the same identity (the default owner is
    user@host): then the owner cannot tell the two apart, only the lease epoch fences the dead one."""
    store = open_store(store_url)
    svc, q = TaskService(store, Settings(database_url=store_url, actor="test")), TaskQueries(store)
    victim = svc.create(TaskSpec(title="victim", lock_paths=["src/**"]))
    neighbour = svc.create(TaskSpec(title="neighbour", lock_paths=["src/app.py"]))  # overlaps the victim

    worker = start_worker("hold", store_url, "doomed", victim.id)
    try:
        held = read_msg(worker)
    finally:
        kill(worker)
    assert (held["task_id"], held["epoch"]) == (victim.id, 1)

    # Before the TTL the dead worker still holds the lease and its lock: nobody else gets either.
    assert svc.claim(rescuer) is None
    with pytest.raises(IllegalTransition):
        svc.claim(rescuer, task_id=victim.id)
    with pytest.raises(LockConflict, match=f"locked by #{victim.id}"):
        svc.claim("bystander", task_id=neighbour.id)
    assert time.time() < held["expires"], "the checks above ran too late to prove anything; machine overloaded?"
    t = q.get(victim.id)
    assert (t.status, t.owner, t.lease_epoch) == ("claimed", "doomed", 1)
    held_locks = [(lk.task_id, lk.pattern, lk.owner, lk.lease_epoch) for lk in q.locks()]
    assert held_locks == [(victim.id, "src/**", "doomed", 1)]

    time.sleep(max(0.0, held["expires"] - time.time()) + 0.1)

    # After it, the dead worker's lock is free: the overlapping neighbour can be claimed (this claim
    # also sweeps the expired lease back to the queue).
    r = svc.claim("bystander", task_id=neighbour.id)
    assert r is not None and r.lease.lease_epoch == 1
    assert [(lk.task_id, lk.owner) for lk in q.locks()] == [(neighbour.id, "bystander")]
    svc.complete(neighbour.id, "bystander", 1)

    # A different worker, in its own process, claims the victim: epoch 2.
    env = {"AICTL_DATABASE_URL": store_url}
    p = run_cli("task", "claim", "--id", str(victim.id), "--owner", rescuer, "-o", "json", env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["lease"] | {"lease_expires_at": None} == {
        "task_id": victim.id,
        "owner": rescuer,
        "lease_epoch": 2,
        "lease_expires_at": None,
    }

    # The dead worker's completion arrives late, from a fresh process, with (doomed, epoch 1): rejected.
    late = run_cli(
        "task", "complete", str(victim.id), "--owner", "doomed", "--epoch", "1", "-o", "json", env=env, cwd=tmp_path
    )
    assert late.returncode == 4, (late.stdout, late.stderr)
    assert late.stdout == ""
    err = json.loads(late.stderr)["error"]
    assert err["code"] == "lease_lost" and err["exit_code"] == 4
    assert "epoch 2" in err["message"] and f"claimed by {rescuer}" in err["message"]
    assert err["details"]["current_epoch"] == 2 and err["details"]["presented_epoch"] == 1
    t = q.get(victim.id)
    assert (t.status, t.owner, t.lease_epoch, t.result) == ("claimed", rescuer, 2, None)

    ok = run_cli(
        "task", "complete", str(victim.id), "--owner", rescuer, "--epoch", "2", "-o", "json", env=env, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "done"
    assert q.locks() == []
    history = [
        (e.action, e.actor if e.action != "lease_expired" else e.data["owner"], e.lease_epoch)
        for e in q.events(task_id=victim.id)
    ]
    assert history == [
        ("create", "test", None),
        ("claim", "doomed", 1),
        ("lease_expired", "doomed", 1),
        ("claim", rescuer, 2),
        ("complete", rescuer, 2),
    ]
    store.close()


# -- SIGKILL in the middle of writing ---------------------------------------------------


def assert_consistent(url: str) -> dict[str, int]:
    """Tasks, locks and events agree, as read by a fresh connection after the crash."""
    store = open_store(url)
    try:
        with store.read() as tx:
            if tx.dialect == "sqlite":
                assert tx.one("PRAGMA integrity_check")["integrity_check"] == "ok"
            tasks = tx.all("SELECT id, status, owner, lease_epoch, lock_paths, exclusive FROM tasks")
            locks = tx.all("SELECT task_id, pattern, owner, lease_epoch FROM locks")
            # Event id order is commit order (the audit chain numbers events at COMMIT under its head lock).
            events = tx.all("SELECT id, task_id, action, actor, lease_epoch, after FROM events ORDER BY id")
            orphans = tx.one(
                "SELECT COUNT(*) AS n FROM task_conflicts c LEFT JOIN tasks t ON t.id = c.other_id WHERE t.id IS NULL"
            )["n"]
    finally:
        store.close()
    assert orphans == 0
    locks_of, events_of = defaultdict(list), defaultdict(list)
    for lk in locks:
        locks_of[lk["task_id"]].append(lk)
    for e in events:
        events_of[e["task_id"]].append(e)
    assert set(locks_of) <= {t["id"] for t in tasks}, "lock rows of tasks that do not exist"
    assert set(events_of) == {t["id"] for t in tasks}, "tasks without events, or events of missing tasks"
    problems = []
    for t in tasks:
        tid, mine, evs = t["id"], locks_of[t["id"]], events_of[t["id"]]
        if t["status"] in HOLDING_LOCKS:
            want = sorted(json.loads(t["lock_paths"]) + (["**"] if t["exclusive"] else []))
            if sorted(lk["pattern"] for lk in mine) != want:
                problems.append(f"#{tid} {t['status']}: locks {mine}, want {want}")
            if any((lk["owner"], lk["lease_epoch"]) != (t["owner"], t["lease_epoch"]) for lk in mine):
                problems.append(f"#{tid}: locks {mine} not bound to ({t['owner']}, {t['lease_epoch']})")
        elif mine:
            problems.append(f"#{tid} {t['status']} still has locks {mine}")
        if json.loads(evs[-1]["after"])["status"] != t["status"]:
            problems.append(f"#{tid} is {t['status']} but its last event {evs[-1]} says otherwise")
        claims = [e for e in evs if e["action"] == "claim"]
        if len(claims) != t["lease_epoch"]:
            problems.append(f"#{tid} at epoch {t['lease_epoch']} has {len(claims)} claim events")
        if claims and claims[-1]["actor"] != t["owner"]:
            problems.append(f"#{tid} is owned by {t['owner']} but was last claimed by {claims[-1]['actor']}")
    assert not problems, "\n".join(problems[:10])
    return {"tasks": len(tasks), "events": len(events), "held": sum(t["status"] in HOLDING_LOCKS for t in tasks)}


def _event_count(store_url: str) -> int:
    store = open_store(store_url)
    try:
        with store.read() as tx:
            return tx.one("SELECT COUNT(*) AS n FROM events")["n"]
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_during_a_storm_of_writes_leaves_consistent_state(store_url):
    store = open_store(store_url)
    svc = TaskService(store, Settings(database_url=store_url, actor="test"))
    globs = [["a/**"], ["a/x.py"], ["b/**", "c/*.md"], ["c/**"], ["**/*.md"], [], ["d/**"], ["d/e/**"]]
    svc.create_many(
        [
            TaskSpec(title=f"t{i}", lock_paths=globs[i % len(globs)], max_attempts=10**6, exclusive=(i % 50 == 7))
            for i in range(400)
        ]
    )
    store.close()
    before = assert_consistent(store_url)
    rnd = random.Random()
    for rnd_no in range(6):
        # Three workers churn (claim, start, release/fail/complete, and sweep each other's expired
        # leases); all are killed at a random moment, most likely inside a transaction.
        workers = [start_worker("churn", store_url, f"churn{rnd_no}.{k}") for k in range(3)]
        try:
            for w in workers:
                assert read_msg(w) == {"ready": True}
            # Let them get going (a loaded machine may take a while), then kill at a random moment.
            deadline = time.monotonic() + 60
            while _event_count(store_url) <= before["events"] + 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rnd.uniform(0.0, 0.4))
        finally:
            kill(*workers)
        after = assert_consistent(store_url)
        assert after["events"] > before["events"] + 10, "the workers did not get to write; nothing was tested"
        before = after


def test_sigkill_inside_one_big_transaction_commits_none_of_it(store_url):
    store = open_store(store_url)
    svc = TaskService(store, Settings(database_url=store_url, actor="test"))
    svc.create_many([TaskSpec(title="before", lock_paths=["bulk/x"])])  # store stays open: the WAL stays

    # 600 tasks on one glob: indexing their pairwise conflicts takes seconds, all in one transaction.
    # On SQLite we kill it only once it has outgrown the page cache and spilled uncommitted pages into
    # the WAL file, so recovery really has half a transaction on disk to discard.
    wal = Path(store_url.removeprefix("sqlite:///") + "-wal") if store_url.startswith("sqlite") else None
    wal_before = wal.stat().st_size if wal else 0
    worker = start_worker("bulk", store_url, "bulker", 600)
    try:
        assert read_msg(worker) == {"begin": True}
        t0 = time.monotonic()
        # SQLite: wait until the transaction has spilled uncommitted pages into the WAL file.
        while wal and wal.stat().st_size == wal_before and time.monotonic() - t0 < 20:
            time.sleep(0.01)
        time.sleep(0.2)
        wal_grew = wal.stat().st_size - wal_before if wal else None
        if wal is None:  # PostgreSQL: the worker's backend is inside a transaction right now
            with store.read() as tx:
                assert (
                    tx.one(
                        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                    )["n"]
                    == 1
                )
        print(f"killed {time.monotonic() - t0:.2f}s into the transaction; WAL grew by {wal_grew} bytes")
    finally:
        kill(worker)
    store.close()
    assert "end" not in worker.stdout.read(), "the transaction finished before the kill; nothing was tested"
    assert wal is None or wal_grew > 0, "SQLite had not written any of the transaction yet"

    assert assert_consistent(store_url) == {"tasks": 1, "events": 1, "held": 0}
    store = open_store(store_url)
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM task_conflicts")["n"] == 0
    # And the store still works: the same batch, not killed this time, goes through.
    svc = TaskService(store, Settings(database_url=store_url, actor="test"))
    assert len(svc.create_many([TaskSpec(title=f"again {i}", lock_paths=["bulk/**"]) for i in range(20)])) == 20
    store.close()
    assert assert_consistent(store_url)["tasks"] == 21
