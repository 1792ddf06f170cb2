"""Recurring tasks on both backends: firing, skipping, missed occurrences, pause/resume, concurrent sweeps."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from aictl.audit.chain import verify
from aictl.domain.errors import Conflict, NotFound, UsageError
from aictl.tasks.cron import CronError
from aictl.tasks.schedules import ScheduleService, fire_due
from aictl.tasks.service import TaskSpec
from tests.tasks import schedule_worker

T0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC).timestamp()  # 12:00:30 UTC


@pytest.fixture
def sched(services):
    clock = {"now": T0}
    services.sched = ScheduleService(services.store, services.settings, clock=lambda: clock["now"])
    services.clock = clock
    return services


def actions(store, *names):
    with store.read() as tx:
        rows = tx.all("SELECT action, task_id, data FROM events ORDER BY id")
    return [
        (r["action"], r["task_id"], json.loads(r["data"]) if r["data"] else None)
        for r in rows
        if not names or r["action"] in names
    ]


def task_row(store, task_id):
    with store.read() as tx:
        return tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task_id})


def test_create_computes_next_run_and_records_an_event(sched):
    s = sched.sched.create(
        TaskSpec(title="Nightly deps bump", labels=["deps"], lock_paths=["requirements*.txt"]), "CRON_TZ=UTC 0 3 * * *"
    )
    assert s.enabled and s.title == "Nightly deps bump" and s.last_task_id is None
    assert s.next_at == datetime(2026, 6, 2, 3, 0, tzinfo=UTC).timestamp()
    assert s.spec["labels"] == ["deps"] and "key" not in s.spec
    assert sched.sched.get(s.id) == s and sched.sched.list() == [s]
    [(_action, task_id, data)] = actions(sched.store, "schedule_create")
    assert task_id is None and data["schedule_id"] == s.id and data["cron"] == "CRON_TZ=UTC 0 3 * * *"
    with pytest.raises(NotFound):
        sched.sched.get(s.id + 1)


def test_bad_cron_or_spec_is_refused(sched):
    with pytest.raises(CronError, match="hour field"):
        sched.sched.create(TaskSpec(title="x"), "0 25 * * *")
    with pytest.raises(UsageError, match="batch key"):
        sched.sched.create(TaskSpec(title="x", depends_on=["other"]), "@daily")
    with pytest.raises(NotFound, match="task 99"):
        sched.sched.create(TaskSpec(title="x", depends_on=[99]), "@daily")
    with pytest.raises(UsageError, match="lock path"):
        sched.sched.create(TaskSpec(title="x", lock_paths=["!x"]), "@daily")
    assert sched.sched.list() == []


def test_fires_when_due_and_the_task_goes_through_the_task_service(sched):
    s = sched.sched.create(
        TaskSpec(title="Hourly report", priority=4, lock_paths=["reports/**"]), "CRON_TZ=UTC 0 * * * *"
    )
    assert sched.sched.fire_due(T0 + 60) == []  # 12:01:30: not due until 13:00
    due = datetime(2026, 6, 1, 13, 0, tzinfo=UTC).timestamp()
    [task_id] = sched.sched.fire_due(due + 5)
    row = task_row(sched.store, task_id)
    assert row["title"] == "Hourly report" and row["priority"] == 4 and row["status"] == "queued"
    assert row["schedule_id"] == s.id and json.loads(row["lock_paths"]) == ["reports/**"]
    s2 = sched.sched.get(s.id)
    assert s2.last_task_id == task_id and s2.next_at == due + 3600
    # the task's own create event and the firing, in one transaction, chained in the audit log
    assert [a[:2] for a in actions(sched.store, "create", "schedule_fire")] == [
        ("create", task_id),
        ("schedule_fire", task_id),
    ]
    fire = actions(sched.store, "schedule_fire")[0][2]
    assert fire == {"schedule_id": s.id, "due_at": due, "next_at": due + 3600}
    assert verify(sched.store).ok


def test_missed_occurrences_fire_once_not_once_each(sched):
    s = sched.sched.create(TaskSpec(title="Every minute"), "* * * * *")
    later = T0 + 3 * 3600 + 10  # three hours (180 occurrences) with no sweep
    assert len(sched.sched.fire_due(later)) == 1
    assert sched.sched.get(s.id).next_at == (int(later) // 60 + 1) * 60
    assert actions(sched.store, "schedule_skip") == []  # not 179 skipped firings either: one catch-up
    assert sched.sched.fire_due(later) == []


def test_skips_while_the_previous_task_is_live_then_fires_again(sched):
    s = sched.sched.create(TaskSpec(title="Rebuild index"), "CRON_TZ=UTC */10 * * * *")
    first_due = s.next_at
    [t1] = sched.sched.fire_due(first_due)
    # the next occurrence arrives while task t1 is still queued: skipped, recorded, next_at moves on
    assert sched.sched.fire_due(first_due + 600) == []
    skip = actions(sched.store, "schedule_skip")
    assert len(skip) == 1 and skip[0][1] == t1 and "still queued" in skip[0][2]["reason"]
    assert sched.sched.get(s.id).next_at == first_due + 1200 and sched.sched.get(s.id).last_task_id == t1
    # claimed/running/awaiting_approval count as live too
    claim = sched.svc.claim("w1", task_id=t1)
    sched.svc.start(t1, "w1", claim.lease.lease_epoch)
    assert sched.sched.fire_due(first_due + 1200) == []
    sched.svc.complete(t1, "w1", claim.lease.lease_epoch)
    [t2] = sched.sched.fire_due(first_due + 1800)
    assert t2 != t1 and sched.sched.get(s.id).last_task_id == t2
    # a failed or cancelled task is finished too
    sched.svc.cancel(t2)
    assert len(sched.sched.fire_due(first_due + 2400)) == 1


def test_pause_resume_remove(sched):
    s = sched.sched.create(TaskSpec(title="x"), "* * * * *")
    sched.sched.pause(s.id)
    assert sched.sched.fire_due(T0 + 7200) == []
    with pytest.raises(Conflict, match="already paused"):
        sched.sched.pause(s.id)
    sched.clock["now"] = T0 + 7200
    r = sched.sched.resume(s.id)
    assert r.enabled and r.next_at == (int(T0 + 7200) // 60 + 1) * 60  # nothing missed while paused fires
    with pytest.raises(Conflict, match="already active"):
        sched.sched.resume(s.id)
    [t] = sched.sched.fire_due(r.next_at)
    sched.sched.remove(s.id)
    with pytest.raises(NotFound):
        sched.sched.remove(s.id)
    assert sched.sched.list() == [] and task_row(sched.store, t)["schedule_id"] == s.id
    assert [a[0] for a in actions(sched.store) if a[0].startswith("schedule_")] == [
        "schedule_create",
        "schedule_pause",
        "schedule_resume",
        "schedule_fire",
        "schedule_remove",
    ]
    with pytest.raises(NotFound):
        sched.sched.pause(999)


def test_dry_run_changes_nothing(sched):
    s = sched.sched.create(TaskSpec(title="x"), "@daily", dry_run=True)
    assert s.id and sched.sched.list() == [] and actions(sched.store) == []


def test_a_broken_schedule_does_not_stop_the_sweep(sched):
    good = sched.sched.create(TaskSpec(title="good"), "* * * * *")
    bad = sched.sched.create(TaskSpec(title="bad"), "* * * * *")
    with sched.store.write() as tx:  # as if written by a broken tool: the row's cron no longer parses
        tx.run("UPDATE schedules SET cron = '61 * * * *' WHERE id = :id", {"id": bad.id})
    fired = sched.sched.fire_due(T0 + 120)
    assert len(fired) == 1 and task_row(sched.store, fired[0])["title"] == "good"
    [(_, _, data)] = actions(sched.store, "schedule_error")
    assert data["schedule_id"] == bad.id and "minute field" in data["error"]
    assert sched.sched.get(bad.id).next_at > T0 + 120  # moved on: the next sweep does not loop on it
    assert sched.sched.fire_due(T0 + 120) == []
    assert good.id


@pytest.mark.slow
def test_concurrent_sweeps_in_separate_processes_fire_each_schedule_exactly_once(sched, store_url):
    n_sched, n_proc, rounds = 30, 4, 5
    ids = [sched.sched.create(TaskSpec(title=f"s{i}"), "* * * * *").id for i in range(n_sched)]
    now = T0 + 3600  # every schedule is due
    procs = [schedule_worker.start(store_url, now, rounds, f"sweeper{k}") for k in range(n_proc)]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert json.loads(line) == {"ready": True}, p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1])["fired"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    fired = [t for r in reports for t in r]
    print(f"\n{store_url.split(':')[0]}: per process {[len(r) for r in reports]}")
    assert len(fired) == n_sched and len(set(fired)) == n_sched  # no task reported twice
    with sched.store.read() as tx:
        per_schedule = Counter(r["schedule_id"] for r in tx.all("SELECT schedule_id FROM tasks"))
    assert per_schedule == Counter({i: 1 for i in ids})
    assert Counter(a[2]["schedule_id"] for a in actions(sched.store, "schedule_fire")) == per_schedule
    assert actions(sched.store, "schedule_skip") == []
    assert all(s.next_at > now for s in sched.sched.list())
    assert verify(sched.store).ok


def test_fire_due_module_function(sched):
    sched.sched.create(TaskSpec(title="x"), "* * * * *")
    assert len(fire_due(sched.store, sched.settings, T0 + 600)) == 1
