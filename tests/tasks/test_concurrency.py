"""Real OS processes racing on one store (SQLite file, real PostgreSQL): claims are exclusive.

Each worker is a separate Python process (tests/tasks/claim_worker.py) with its
own connection, started together behind a "go" gate so they really race.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter, defaultdict

import pytest

from aictl.config import Settings
from aictl.store import open_store
from aictl.tasks.globs import patterns_overlap
from aictl.tasks.queries import TaskQueries
from aictl.tasks.service import TaskService, TaskSpec
from tests.tasks.claim_worker import read_msg, start_worker


def run_drainers(url: str, n: int, hold_ms: float = 0, timeout: float = 300) -> tuple[dict[str, list], float]:
    """Start n drain workers, release them at once; return ({owner: claims}, seconds from go to last exit)."""
    name = url.split(":")[0]
    procs = {f"w{k}": start_worker("drain", url, f"w{k}", hold_ms) for k in range(n)}
    try:
        for p in procs.values():
            assert read_msg(p) == {"ready": True}
        t0 = time.monotonic()
        for p in procs.values():
            p.stdin.write("go\n")
            p.stdin.flush()
        out, lost = {}, []
        for owner, p in procs.items():
            stdout, stderr = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"{owner} exited {p.returncode}:\n{stderr}"
            report = json.loads(stdout)
            out[owner] = report["claims"]
            if report["busy"]:
                print(f"\n{name}: {owner} retried {report['busy']} times after 'store is busy'")
            lost += [[owner, *x] for x in report["lost"]]
        assert not lost, f"{len(lost)} claims were also given to another worker, e.g. {lost[:3]}"
        return out, time.monotonic() - t0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def setup(url: str) -> tuple[TaskService, TaskQueries]:
    store = open_store(url)
    return TaskService(store, Settings(database_url=url, actor="setup")), TaskQueries(store)


# -- every task claimed and completed exactly once ------------------------------------


@pytest.mark.slow
def test_8_processes_drain_5000_tasks_each_claimed_and_completed_exactly_once(store_url):
    n_tasks, n_workers = 5000, 8
    svc, q = setup(store_url)
    ids: list[int] = []
    for start in range(0, n_tasks, 1000):
        ids += [t.id for t in svc.create_many([TaskSpec(title=f"t{i}") for i in range(start, start + 1000)])]
    assert len(set(ids)) == n_tasks

    reports, seconds = run_drainers(store_url, n_workers)
    print(
        f"\n{store_url.split(':')[0]}: {n_workers} processes drained {n_tasks} tasks in {seconds:.1f}s "
        f"({n_tasks / seconds:.0f} claim+complete/s); per worker "
        f"{sorted(len(c) for c in reports.values())}"
    )

    # 1. What the workers saw: every id claimed by exactly one worker, exactly once, at epoch 1.
    claimed_by = defaultdict(list)
    for owner, claims in reports.items():
        for task_id, epoch, _, _ in claims:
            claimed_by[task_id].append((owner, epoch))
    dupes = {t: who for t, who in claimed_by.items() if len(who) > 1}
    assert not dupes, f"claimed more than once: {dict(itertools.islice(dupes.items(), 5))}"
    assert set(claimed_by) == set(ids)
    assert all(who[0][1] == 1 for who in claimed_by.values())

    # 2. The store: all done, each claimed once (epoch 1), by the worker that says it claimed it.
    tasks = q.list()
    assert len(tasks) == n_tasks
    assert Counter(t.status for t in tasks) == {"done": n_tasks}
    assert all(t.lease_epoch == 1 for t in tasks), [t.id for t in tasks if t.lease_epoch != 1][:5]
    assert all(t.owner == claimed_by[t.id][0][0] for t in tasks)
    assert q.locks() == []

    # 3. The audit log: exactly create, claim, complete per task, claim and complete by the same owner.
    by_task = defaultdict(list)
    for e in q.events():
        by_task[e.task_id].append(e)
    assert set(by_task) == set(ids)
    bad = {
        t: [e.action for e in evs]
        for t, evs in by_task.items()
        if [e.action for e in evs] != ["create", "claim", "complete"]
    }
    assert not bad, f"tasks whose history is not create, claim, complete: {dict(itertools.islice(bad.items(), 5))}"
    for t, (_, claim, complete) in by_task.items():
        owner = claimed_by[t][0][0]
        assert (claim.actor, claim.lease_epoch, complete.actor, complete.lease_epoch) == (owner, 1, owner, 1)
    svc.store.close()


# -- overlapping path locks are never held at the same time -----------------------------


def lock_sets() -> list[list[str]]:
    """~200 tasks' lock globs: ten groups that overlap inside, plus globs that cut across groups."""
    sets: list[list[str]] = []
    for _ in range(3):
        for k in range(10):
            sets += [
                [f"grp{k}/**"],
                [f"grp{k}/src/**"],
                [f"grp{k}/readme.md"],
                [f"grp{k}/tests/*.py"],
                [f"grp{k}/src/a.py", f"grp{(k + 1) % 10}/docs/**"],  # reaches into the next group
                [f"grp{k}/docs/**"],
            ]
    sets += [["**/*.md"]] * 5 + [["grp3/readme.md"]] * 5 + [["docs/**"]] * 5 + [[]] * 5
    random.Random(7).shuffle(sets)
    return sets


@pytest.mark.slow
def test_4_processes_never_hold_overlapping_locks_at_once(store_url):
    svc, q = setup(store_url)
    sets = lock_sets()
    tasks = svc.create_many([TaskSpec(title=f"t{i}", lock_paths=s) for i, s in enumerate(sets)])
    locks_of = {t.id: t.lock_paths for t in tasks}

    # Which pairs of tasks must never overlap in time (decided once per distinct pair of glob sets).
    overlap_cache: dict[tuple, bool] = {}

    def overlap(a: int, b: int) -> bool:
        key = tuple(sorted((tuple(locks_of[a]), tuple(locks_of[b]))))
        if key not in overlap_cache:
            overlap_cache[key] = patterns_overlap(locks_of[a], locks_of[b])
        return overlap_cache[key]

    pairs = list(itertools.combinations(sorted(locks_of), 2))
    conflicting = [(a, b) for a, b in pairs if overlap(a, b)]
    assert 1000 < len(conflicting) < len(pairs) - 1000  # plenty of both kinds

    reports, seconds = run_drainers(store_url, 4, hold_ms=15)
    print(f"\n{store_url.split(':')[0]}: 4 processes ran {len(tasks)} locked tasks in {seconds:.1f}s")
    claims = {c[0]: (owner, *c[1:]) for owner, cs in reports.items() for c in cs}
    assert sorted(claims) == sorted(locks_of) and sum(map(len, reports.values())) == len(tasks)
    assert Counter(t.status for t in q.list()) == {"done": len(tasks)}

    # Hold intervals as the workers measured them: (claim returned, complete called), both inside the
    # lease, on the one monotonic clock of this machine. If the claim of b committed only after a's
    # complete committed, then a's interval ends before b's begins.
    wall = {t: (t0, t1) for t, (_, _, t0, t1) in claims.items()}

    # Hold intervals in the audit log: (claim event id, complete event id). Event ids are commit order
    # only because of how they are assigned: SQLite serializes writers (BEGIN IMMEDIATE), and on both
    # backends the audit chain numbers a transaction's events just before COMMIT while holding the lock
    # on the chain head (aictl/audit/events.py). A PostgreSQL id drawn from a sequence at INSERT time, as
    # before the chain, would not be: a transaction can draw a smaller id and commit later. The worker
    # clocks above depend on neither, so both checks must hold.
    log: dict[int, dict[str, int]] = defaultdict(dict)
    for e in q.events():
        if e.action in ("claim", "complete"):
            assert e.action not in log[e.task_id], f"task {e.task_id} has two {e.action} events"
            log[e.task_id][e.action] = e.id
    ids = {t: (v["claim"], v["complete"]) for t, v in log.items()}

    def clash(iv: dict, a: int, b: int) -> bool:
        (a0, a1), (b0, b1) = iv[a], iv[b]
        return not (a1 < b0 or b1 < a0)

    for name, iv in (("audit log", ids), ("worker clocks", wall)):
        bad = [(a, b) for a, b in conflicting if clash(iv, a, b)]
        assert not bad, f"{name}: overlapping locks held at the same time, e.g. " + "; ".join(
            f"#{a} {locks_of[a]} {iv[a]} and #{b} {locks_of[b]} {iv[b]}" for a, b in bad[:3]
        )

    # The exclusion was tested under real parallelism: disjoint tasks did run at the same time.
    parallel = sum(clash(wall, a, b) for a, b in pairs if not overlap(a, b))
    print(f"{parallel} pairs of disjoint tasks ran concurrently")
    assert parallel > 50, f"only {parallel} pairs of disjoint tasks ran concurrently; the race was not real"
    svc.store.close()
