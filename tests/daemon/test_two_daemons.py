"""Two daemons, two checkouts, one PostgreSQL database, 200 tasks with overlapping path locks.

Checked from the audit log alone: every task completed exactly once, and no two tasks
whose lock globs overlap ever held their locks at the same time. Events are numbered
in commit order (the chain head is taken last in every transaction), so a task's
lock interval is [its claim event, the event that ended that lease] in event ids —
no clocks involved.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from tests.daemon.conftest import git, make_project, wait_for

N_TASKS = 200
PATTERNS = [
    "src/a/**",
    "src/a/x.py",
    "src/b/**",
    "src/**/*.md",
    "docs/**",
    "docs/guide/*.md",
    "src/b/y/**",
    "tests/**",
    "src/c.py",
    "*.toml",
    "src/d/**",
    "docs/api/**",
]
LEASE_ENDS = {"complete", "fail", "release", "lease_expired", "await_approval", "cancel"}


def lock_intervals(events: list[dict]) -> dict[int, list[tuple[int, int, int]]]:
    """task id → [(epoch, claim event id, end event id)] from the audit log."""
    open_claims: dict[int, tuple[int, int]] = {}
    out: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for e in events:
        t = e["task_id"]
        if e["action"] == "claim":
            assert t not in open_claims, f"task {t} claimed twice without its lease ending: event {e['id']}"
            open_claims[t] = (e["lease_epoch"], e["id"])
        elif e["action"] in LEASE_ENDS and t in open_claims:
            epoch, start = open_claims.pop(t)
            out[t].append((epoch, start, e["id"]))
    assert not open_claims, f"leases never ended: {open_claims}"
    return out


def overlapping_holds(intervals: dict, locks: dict[int, list[str]]) -> list[tuple]:
    from aictl.tasks.globs import patterns_overlap

    bad = []
    ids = sorted(intervals)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if not patterns_overlap(locks[a], locks[b]):
                continue
            for _, s1, e1 in intervals[a]:
                for _, s2, e2 in intervals[b]:
                    if s1 < e2 and s2 < e1:
                        bad.append((a, b, (s1, e1), (s2, e2)))
    return bad


def test_interval_check_catches_an_overlap():
    """The checker itself: two overlapping-glob tasks held at once must be reported."""
    events = [
        {"id": 1, "task_id": 1, "action": "claim", "lease_epoch": 1},
        {"id": 2, "task_id": 2, "action": "claim", "lease_epoch": 1},
        {"id": 3, "task_id": 1, "action": "complete", "lease_epoch": 1},
        {"id": 4, "task_id": 2, "action": "complete", "lease_epoch": 1},
    ]
    iv = lock_intervals(events)
    assert overlapping_holds(iv, {1: ["src/**"], 2: ["src/a.py"]}) == [(1, 2, (1, 3), (2, 4))]
    assert overlapping_holds(iv, {1: ["src/**"], 2: ["docs/**"]}) == []


@pytest.mark.postgres
@pytest.mark.slow
def test_two_daemons_on_one_database_complete_each_task_once_and_never_overlap_locks(
    tmp_path, pg_url, make_daemon_project
):
    origin = make_project(tmp_path / "origin")
    clones = []
    for name, actor in (("alpha", "alpha@host-a"), ("beta", "beta@host-b")):
        git(tmp_path, "clone", "-q", str(origin), str(tmp_path / name))
        clones.append(
            make_daemon_project(root=tmp_path / name, env={"AICTL_DATABASE_URL": pg_url, "AICTL_ACTOR": actor})
        )
    alpha, _beta = clones
    assert (alpha.root / ".ai" / "config.yaml").exists()  # each checkout carries the project's .ai/

    rng = random.Random(6)
    specs = [
        {
            "title": f"t{i}",
            "locks": rng.sample(PATTERNS, rng.choice([1, 1, 2])),
            "command": "sleep 0.02",
            "priority": rng.randint(0, 3),
        }
        for i in range(N_TASKS)
    ]
    import yaml

    batch = tmp_path / "tasks.yaml"
    batch.write_text(yaml.safe_dump({"tasks": specs}))
    created = alpha.jcli("task", "create", "-f", str(batch))
    ids = [t["id"] for t in created]
    assert len(ids) == N_TASKS

    infos = [c.start("--workers", "3") for c in clones]
    try:

        def all_done() -> bool:
            with alpha.store() as store, store.read() as tx:
                n = tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status = 'done'")["n"]
            return n == N_TASKS

        wait_for(all_done, 600, f"both daemons to finish {N_TASKS} tasks", interval=0.5)
    finally:
        for c in clones:
            c.cli("daemon", "stop", "--now")

    events = [e for e in alpha.events() if e["task_id"] is not None]
    completes = defaultdict(list)
    for e in events:
        if e["action"] == "complete":
            completes[e["task_id"]].append(e)
    assert sorted(completes) == sorted(ids) and all(len(v) == 1 for v in completes.values()), (
        "every task completed exactly once"
    )
    locks = {e["task_id"]: (e["data"] or {}).get("lock_paths") or [] for e in events if e["action"] == "create"}
    intervals = lock_intervals(events)
    assert overlapping_holds(intervals, locks) == []
    # Both daemons really worked (each through its own owner names), and every claim was fenced correctly:
    by_daemon = defaultdict(int)
    for e in events:
        if e["action"] == "claim":
            by_daemon[e["actor"].split("/daemon-")[1].split("/")[0]] += 1
    assert set(by_daemon) == {i["daemon_id"] for i in infos} and min(by_daemon.values()) > 0
    # Conflicting pairs really existed and ran one after the other (so the check above had something to check).
    from aictl.tasks.globs import patterns_overlap

    assert sum(1 for a in ids for b in ids if a < b and patterns_overlap(locks[a], locks[b])) > 1000
    r = alpha.cli("audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
