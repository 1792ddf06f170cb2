"""Latency of TaskQueries.ready() and TaskService.claim() on a store of 100,000 tasks.

    .venv/bin/python bench/ready.py [--tasks 100000] [--backend sqlite|postgres] [--runs 30]

The store (fresh, temp dir / throwaway PostgreSQL) holds, for --tasks 100000:

* 60% history: done tasks (rows the measured queries must skip);
* 30% queued, priorities 0-9; one in five depends on a done task (so it is queued);
  1 in 60 of them gets a retry backoff (next_run_at in an hour: direct SQL UPDATE);
  a few are exclusive;
* 8% blocked: each depends on one or two queued tasks;
* 2% (2,000) with lock globs drawn from 200 overlapping patterns (src/m<k>/** and
  src/m<k>/sub/*.py); 20 of them are then claimed through TaskService and held, so the
  tasks whose globs overlap theirs wait.

How the store is filled (--fill):

* `sql` (default): direct SQL INSERTs that match the schema (the columns create_many
  writes, explicit ids), task_deps rows, and task_conflicts computed exactly as
  aictl.tasks.conflicts.index does (aictl.tasks.globs.patterns_overlap over the distinct
  glob sets, both directions). No "create" events are written (the measured queries never
  read events). Takes seconds. The 20 holders are claimed through TaskService.
* `service`: everything through TaskService.create_many, 5,000 tasks per transaction, then
  the history marked done with one direct SQL UPDATE (claiming and completing 60,000 tasks
  would only add rows the queries never read). Measured on this 2-core machine (loaded):
  346 s for 100,000 tasks: ~1.2 ms per plain task, ~111 ms per task with a lock glob
  (conflicts.index scans the whole tasks table several times per created task).
  That is why `sql` is the default.

Measured (in-process, after one warm-up call): ready() with its default limit; claim()
followed by release() of the claimed task, repeated (the same top task comes back each
time, so the store does not drift), timing claim and release separately. Median and p95.
Target: under 50 ms. No timing is asserted.

--profile adds, for one ready() and one claim(), every SQL statement with its time and the
hottest Python functions; the output always carries the query plans of the claim pick and
of ready()'s "waiting" query.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, machine, ms_stats, top_functions

BATCH = 5000
TARGET_MS = 50.0


def batched(specs: list[Any], svc: Any, label: str, timings: dict[str, float]) -> list[int]:
    ids: list[int] = []
    t0 = time.perf_counter()
    for i in range(0, len(specs), BATCH):
        ids += [t.id for t in svc.create_many(specs[i : i + BATCH])]
        log(f"  {label}: {len(ids)}/{len(specs)} ({time.perf_counter() - t0:.1f} s)")
    timings[label] = round(time.perf_counter() - t0, 2)
    return ids


def fill_sql(store: Any, settings: Any, total: int, rng: random.Random) -> dict[str, Any]:
    """Direct SQL fill: same rows create_many would write (minus its events), in a few seconds."""
    import json

    from aictl.tasks.globs import patterns_overlap
    from aictl.tasks.service import TaskService

    n_hist, n_queued, n_blocked = int(total * 0.60), int(total * 0.30), int(total * 0.08)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    now = time.time() - total * 1e-3
    rows, deps = [], []
    patterns = [f"src/m{k}/**" for k in range(100)] + [f"src/m{k}/sub/*.py" for k in range(100)]
    by_pattern: dict[str, list[int]] = {}
    hist = list(range(1, n_hist + 1))
    queued = list(range(n_hist + 1, n_hist + n_queued + 1))
    for i in range(1, total + 1):
        kind = (
            "done"
            if i <= n_hist
            else "queued"
            if i <= n_hist + n_queued
            else "blocked"
            if i <= n_hist + n_queued + n_blocked
            else "locked"
        )
        j = i - n_hist - 1
        labels, caps, locks, excl = "[]", "[]", "[]", 0
        if kind == "queued":
            labels = '["backend"]' if j % 4 == 0 else "[]"
            caps = '["python"]' if j % 7 == 0 else "[]"
            excl = int(j % 10000 == 9999)
            if j % 5 == 0:
                deps.append((i, rng.choice(hist)))
        elif kind == "blocked":
            for d in sorted(rng.sample(queued, 1 + (i % 2))):
                deps.append((i, d))
        elif kind == "locked":
            pat = rng.choice(patterns)
            locks = json.dumps([pat], separators=(",", ":"))
            by_pattern.setdefault(pat, []).append(i)
        created = now + i * 1e-3
        rows.append(
            {
                "id": i,
                "title": f"{kind} task {i}",
                "priority": rng.randrange(10),
                "status": "queued" if kind == "locked" else kind,
                "labels": labels,
                "caps": caps,
                "locks": locks,
                "excl": excl,
                "created": created,
                "updated": created + (1 if kind == "done" else 0),
            }
        )
    # task_conflicts exactly as conflicts.index computes them: overlapping glob sets, both directions.
    conflicts = []
    pats = sorted(by_pattern)
    for a in pats:
        for b in pats:
            if patterns_overlap([a], [b]):
                conflicts += [(x, y) for x in by_pattern[a] for y in by_pattern[b] if x != y]
    timings["rows generated (python)"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    ins = (
        "INSERT INTO tasks (id, title, description, type, priority, status, labels, required_capabilities,"
        " lock_paths, exclusive, max_attempts, created_at, updated_at) VALUES (:id, :title, '', 'task', :priority,"
        " :status, :labels, :caps, :locks, :excl, 3, :created, :updated)"
    )
    with store.write() as tx:
        conn = tx._conn  # type: ignore[attr-defined]
        if store.dialect == "sqlite":
            conn.executemany(ins, rows)
            conn.executemany("INSERT INTO task_deps (task_id, depends_on) VALUES (?, ?)", deps)
            conn.executemany("INSERT INTO task_conflicts (task_id, other_id) VALUES (?, ?)", conflicts)
        else:
            from aictl.store.postgres import to_pyformat

            with conn.cursor() as cur:
                cur.executemany(to_pyformat(ins), rows)
                cur.executemany("INSERT INTO task_deps (task_id, depends_on) VALUES (%s, %s)", deps)
                cur.executemany("INSERT INTO task_conflicts (task_id, other_id) VALUES (%s, %s)", conflicts)
                cur.execute("SELECT setval(pg_get_serial_sequence('tasks', 'id'), %s)", (total,))
    timings["inserted (direct SQL, one transaction)"] = round(time.perf_counter() - t0, 2)
    return _finish(store, TaskService(store, settings), timings, [r["id"] for r in rows if r["locks"] != "[]"])


def _finish(
    store: Any, svc: Any, timings: dict[str, float], locked: list[int], per_task: dict[str, float] | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    with store.write() as tx:  # direct SQL: retry backoff cannot be set through create_many
        tx.run("UPDATE tasks SET next_run_at = :t WHERE status = 'queued' AND id % 60 = 7", {"t": time.time() + 3600})
    timings["backoff set (direct SQL UPDATE)"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    held = 0
    for tid in locked:
        if held >= 20:
            break
        try:
            if svc.claim("holder", task_id=tid, ttl=3600) is not None:
                held += 1
        except Exception:  # noqa: BLE001 - conflicts with a lock already held: pick another
            continue
    timings["20 lock holders claimed (TaskService.claim)"] = round(time.perf_counter() - t0, 2)

    with store.read() as tx:
        counts = {r["status"]: r["n"] for r in tx.all("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")}
        conflicts = tx.one("SELECT COUNT(*) AS n FROM task_conflicts")["n"]
        deps = tx.one("SELECT COUNT(*) AS n FROM task_deps")["n"]
        locks = tx.one("SELECT COUNT(*) AS n FROM locks")["n"]
    out = {"seconds_total": round(sum(timings.values()), 1), "steps_s": timings}
    if per_task:
        out["per_task_ms"] = per_task
    out.update({"status_counts": counts, "task_deps": deps, "task_conflicts": conflicts, "held_locks": locks})
    return out


def fill_service(store: Any, settings: Any, total: int, rng: random.Random) -> dict[str, Any]:
    from aictl.tasks.service import TaskService, TaskSpec

    svc = TaskService(store, settings)
    n_hist, n_queued, n_blocked = int(total * 0.60), int(total * 0.30), int(total * 0.08)
    n_locked = total - n_hist - n_queued - n_blocked
    timings: dict[str, float] = {}

    hist = batched(
        [TaskSpec(title=f"old task {i}", priority=rng.randrange(10)) for i in range(n_hist)],
        svc,
        "history (create_many)",
        timings,
    )
    t0 = time.perf_counter()
    with store.write() as tx:  # direct SQL: see the module docstring
        tx.run("UPDATE tasks SET status = 'done', updated_at = updated_at + 1 WHERE status = 'queued'")
    timings["history marked done (direct SQL UPDATE)"] = round(time.perf_counter() - t0, 2)

    queued_specs = []
    for i in range(n_queued):
        queued_specs.append(
            TaskSpec(
                title=f"queued task {i}",
                priority=rng.randrange(10),
                labels=["backend"] if i % 4 == 0 else [],
                required_capabilities=["python"] if i % 7 == 0 else [],
                depends_on=[rng.choice(hist)] if i % 5 == 0 else [],
                exclusive=(i % 10000 == 9999),
            )
        )
    queued = batched(queued_specs, svc, "queued (create_many)", timings)
    batched(
        [
            TaskSpec(title=f"blocked task {i}", priority=rng.randrange(10), depends_on=rng.sample(queued, 1 + (i % 2)))
            for i in range(n_blocked)
        ],
        svc,
        "blocked (create_many)",
        timings,
    )
    patterns = [f"src/m{k}/**" for k in range(100)] + [f"src/m{k}/sub/*.py" for k in range(100)]
    locked = batched(
        [
            TaskSpec(title=f"locked task {i}", priority=rng.randrange(10), lock_paths=[rng.choice(patterns)])
            for i in range(n_locked)
        ],
        svc,
        "with lock globs (create_many)",
        timings,
    )

    per_task = {
        k: round(v * 1e3 / n, 3)
        for k, v, n in (
            ("history", timings["history (create_many)"], n_hist),
            ("queued", timings["queued (create_many)"], n_queued),
            ("blocked", timings["blocked (create_many)"], n_blocked),
            ("with_lock_globs", timings["with lock globs (create_many)"], n_locked),
        )
    }
    return _finish(store, svc, timings, locked, per_task)


def measure(store: Any, settings: Any, runs: int, profile: bool) -> dict[str, Any]:
    from aictl.tasks.queries import TaskQueries
    from aictl.tasks.service import TaskService

    q = TaskQueries(store)
    svc = TaskService(store, settings)
    out: dict[str, Any] = {}

    first = q.ready()
    out["ready_returned"] = {"ready": sum(1 for e in first if e.ready), "waiting": sum(1 for e in first if not e.ready)}
    xs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        q.ready()
        xs.append(time.perf_counter() - t0)
    out["ready"] = ms_stats(xs)

    claim_s, release_s = [], []
    r = svc.claim("bench")  # warm-up
    svc.release(r.task.id, "bench", r.lease.lease_epoch)
    for _ in range(runs):
        t0 = time.perf_counter()
        r = svc.claim("bench")
        t1 = time.perf_counter()
        svc.release(r.task.id, "bench", r.lease.lease_epoch)
        t2 = time.perf_counter()
        claim_s.append(t1 - t0)
        release_s.append(t2 - t1)
    out["claim"] = ms_stats(claim_s)
    out["release"] = ms_stats(release_s)
    out["claimed_task"] = {"id": r.task.id, "priority": r.task.priority}

    if profile:
        d = tempfile.mkdtemp(prefix="aictl-bench-ready-prof-")
        for name, fn in (("ready", lambda: q.ready()), ("claim", lambda: svc.claim("bench"))):
            prof = cProfile.Profile()
            with sql_timer(store) as stmts:
                prof.enable()
                res = fn()
                prof.disable()
            if name == "claim" and res is not None:
                svc.release(res.task.id, "bench", res.lease.lease_epoch)
            prof.dump_stats(os.path.join(d, name))
            out[f"profile_{name}"] = {"sql_statements": stmts, "top_functions": top_functions(os.path.join(d, name), 6)}
        shutil.rmtree(d, ignore_errors=True)
    return out


@contextlib.contextmanager
def sql_timer(store: Any) -> Iterator[list[dict[str, Any]]]:
    """Time every statement the store's transactions run (wraps the Tx class of this process only)."""
    tx_cls = (
        type(store).__module__ == "aictl.store.sqlite" and __import__("aictl.store.sqlite", fromlist=["x"]).SqliteTx
    ) or __import__("aictl.store.postgres", fromlist=["x"]).PgTx
    stmts: list[dict[str, Any]] = []
    saved = {m: getattr(tx_cls, m) for m in ("all", "one", "run")}

    def wrap(orig: Any) -> Any:
        def timed(self: Any, sql: str, params: Any = None) -> Any:
            t0 = time.perf_counter()
            try:
                return orig(self, sql, params)
            finally:
                stmts.append({"ms": round((time.perf_counter() - t0) * 1e3, 3), "sql": " ".join(sql.split())[:160]})

        return timed

    for m, f in saved.items():
        setattr(tx_cls, m, wrap(f))
    try:
        yield stmts
    finally:
        for m, f in saved.items():
            setattr(tx_cls, m, f)
        stmts.sort(key=lambda r: r["ms"], reverse=True)


def explain(store: Any) -> dict[str, list[str]]:
    """The plan of the claim pick and of ready()'s two queries, as the database chose them."""
    from aictl.tasks.sql import CLAIM_ORDER, claimable_where

    plans: dict[str, list[str]] = {}
    with store.read() as tx:
        where, params = claimable_where(tx, capabilities=None, labels=None, task_id=None)
        params["now"] = time.time()
        for name, sql in (
            ("claim_pick / ready", f"SELECT t.id FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT 20"),
            (
                "ready_waiting",
                f"SELECT t.* FROM tasks t WHERE t.status IN ('queued', 'blocked') AND NOT ({where})"
                f" {CLAIM_ORDER} LIMIT 20",
            ),
        ):
            if store.dialect == "sqlite":
                plans[name] = [r["detail"] for r in tx.all("EXPLAIN QUERY PLAN " + sql, params)]
            else:
                plans[name] = [r["QUERY PLAN"] for r in tx.all("EXPLAIN " + sql, params)][:12]
    return plans


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--profile", action="store_true", help="add a cProfile of one ready() and one claim()")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--fill",
        choices=["sql", "service"],
        default="sql",
        help="sql: direct inserts (seconds); service: TaskService.create_many (minutes)",
    )
    args = ap.parse_args()

    from aictl.config import Settings
    from aictl.store import open_store

    tmp = tempfile.mkdtemp(prefix="aictl-bench-ready-")
    srv = None
    extra: dict[str, Any] = {}
    try:
        if args.backend == "sqlite":
            url = f"sqlite:///{tmp}/state.db"
        else:
            from tests.pgserver import PgServer

            srv = PgServer().start()
            url = srv.create_database()
        store = open_store(url)
        settings = Settings(actor="bench")
        log(f"filling {args.tasks} tasks ({args.backend})")
        filler = fill_sql if args.fill == "sql" else fill_service
        filled = {"how": args.fill, **filler(store, settings, args.tasks, random.Random(args.seed))}
        log(f"filled in {filled['seconds_total']} s: {filled['status_counts']}")
        if store.dialect == "postgresql":
            with store.write() as tx:  # as autovacuum would have on a live database
                tx.run("ANALYZE")
            extra["analyzed_after_fill"] = True
            with store.read() as tx:
                extra["postgres"] = tx.one("SHOW server_version")["server_version"]
                extra["fsync"] = tx.one("SHOW fsync")["fsync"]
        log(f"measuring ready() and claim()+release(), {args.runs} runs each")
        res = measure(store, settings, args.runs, args.profile)
        res["plans"] = explain(store)
        store.close()
        res["targets_ms"] = TARGET_MS
        res["ready_under_target"] = res["ready"]["median_ms"] < TARGET_MS
        res["claim_under_target"] = res["claim"]["median_ms"] < TARGET_MS
        emit(
            {
                "benchmark": "ready",
                "backend": args.backend,
                "tasks": args.tasks,
                "runs": args.runs,
                "fill": filled,
                **res,
                "target": "ready() and claim() median < 50 ms on 100,000 tasks",
                "machine": machine(extra),
            }
        )
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
