"""Claim+complete throughput: aictl's TaskService against a bare-driver loop, same store, same processes.

    .venv/bin/python bench/claims.py --backend sqlite --workers 1,4,8 --tasks 10000
    .venv/bin/python bench/claims.py --backend postgres --workers 1,4,8 --tasks 5000 [--locks] [--profile]

For each worker count N, two runs on fresh copies of one pre-filled store (M queued tasks):

* aictl: N spawned processes, each `TaskService.claim(owner)` then `TaskService.complete(...)`
  until nothing is left (everything aictl does: reap sweep, claim predicate, lock rows,
  fencing checks, audit events with redaction and the hash chain, Task models).
* bare:  N spawned processes, each the minimum a hand-written queue needs, with the plain
  driver (stdlib sqlite3 / psycopg): one transaction = the same claim UPDATE ... RETURNING
  (SQLite: BEGIN IMMEDIATE; PostgreSQL: FOR UPDATE SKIP LOCKED) + lock rows (--locks) +
  one event INSERT + COMMIT; then one transaction = the complete UPDATE guarded by
  (owner, epoch) + lock rows deleted + one event INSERT + COMMIT.

cycles/s = M / (last worker finished - first worker started); process start-up and store
opening happen before a barrier and are not timed. `ratio` = aictl / bare.

The store is filled once (TaskService.create_many, 5,000 tasks per transaction) and
copied for every run (SQLite: file copy; PostgreSQL: CREATE DATABASE ... TEMPLATE).
With --locks every task locks its own glob (`bench/t<i>/**`, pairwise disjoint). Those
rows are inserted with direct SQL matching the schema, because create_many checks every
new task's globs against every live locked task symbolically (O(n) overlap checks per
create, ~0.3 ms each: 10,000 locked tasks would take hours); disjoint globs have no
conflict pairs, so task_conflicts stays empty exactly as create_many would leave it.

--profile adds a cProfile of one in-process aictl worker (SQLite: also statements per cycle).
No timing is asserted: this prints JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, machine, parse_int_list, top_functions

FILL_BATCH = 5000


# -- SQL of the bare loop ------------------------------------------------------------------


def claim_sql(dialect: str) -> tuple[str, dict[str, Any]]:
    """The claim statement aictl issues (same predicate, same order), built from aictl's own pieces."""
    from aictl.tasks.sql import CLAIM_ORDER, claimable_where

    class _T:  # claimable_where only looks at the dialect
        pass

    tx = _T()
    tx.dialect = dialect  # type: ignore[attr-defined]
    where, params = claimable_where(tx, capabilities=None, labels=None, task_id=None)  # type: ignore[arg-type]
    skip = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    sql = (
        "UPDATE tasks SET status = 'claimed', owner = :owner, lease_epoch = lease_epoch + 1,"
        " lease_expires_at = :expires, heartbeat_at = :now, updated_at = :now"
        f" WHERE id = (SELECT t.id FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT 1{skip})"
        " AND status = 'queued' RETURNING id, lease_epoch, lock_paths"
    )
    return sql, params


COMPLETE_SQL = (
    "UPDATE tasks SET status = 'done', lease_expires_at = NULL, next_run_at = NULL, result = NULL,"
    " updated_at = :now WHERE id = :id AND owner = :owner AND lease_epoch = :epoch"
    " AND status IN ('claimed', 'running')"
)
EVENT_SQL = (
    "INSERT INTO events (ts, actor, action, task_id, lease_epoch, before, after, data)"
    " VALUES (:ts, :actor, :action, :task_id, :epoch, :before, :after, :data)"
)
LOCK_SQL = "INSERT INTO locks (task_id, pattern, owner, lease_epoch, acquired_at) VALUES (:t, :p, :o, :e, :now)"
UNLOCK_SQL = "DELETE FROM locks WHERE task_id = :id"


def _event(now: float, owner: str, action: str, task_id: int, epoch: int, before: str, after: str) -> dict:
    return {
        "ts": now,
        "actor": owner,
        "action": action,
        "task_id": task_id,
        "epoch": epoch,
        "before": json.dumps({"status": before}),
        "after": json.dumps({"status": after, "owner": owner}),
        "data": None,
    }


# -- workers (top-level: multiprocessing spawn imports them by name) ----------------------------


def _remaining(store_or_conn: Any, kind: str) -> int:
    sql = "SELECT COUNT(*) AS n FROM tasks WHERE status = 'queued'"
    if kind == "aictl":
        with store_or_conn.read() as tx:
            return tx.one(sql)["n"]
    cur = store_or_conn.execute(sql)
    n = cur.fetchone()[0]
    if hasattr(store_or_conn, "commit"):
        store_or_conn.commit()
    return n


def cache_redaction_pattern() -> bool:
    """EXPERIMENT (this process only): build the redaction regex once instead of on every string.

    aictl.domain.redact._pattern() rescans os.environ and re-derives its cache key for every
    string of every audit event; this shows what caching it per process would buy."""
    try:
        from aictl.audit import redact
    except ImportError:
        return False
    orig = getattr(redact, "_pattern", None)
    if orig is None:
        return False
    memo: list[Any] = []

    def cached() -> Any:
        if not memo:
            memo.append(orig())
        return memo[0]

    redact._pattern = cached  # type: ignore[attr-defined]
    return True


def aictl_worker(idx: int, url: str, barrier: Any, results: Any, cache_redaction: bool = False) -> None:
    try:
        if cache_redaction and not cache_redaction_pattern():
            raise RuntimeError("--cache-redaction: aictl.domain.redact._pattern not found")
        from aictl.config import Settings
        from aictl.store import open_store
        from aictl.tasks.service import TaskService

        owner = f"bench-w{idx}"
        store = open_store(url, migrate=False)
        svc = TaskService(store, Settings(actor=owner))
        barrier.wait()
        t0, n = time.monotonic(), 0
        while True:
            r = svc.claim(owner)
            if r is None:
                if _remaining(store, "aictl"):  # PostgreSQL: rows another claimer held a moment ago
                    continue
                break
            svc.complete(r.task.id, owner, r.lease.lease_epoch)
            n += 1
        t1 = time.monotonic()
        store.close()
        results.put({"worker": idx, "cycles": n, "t0": t0, "t1": t1})
    except BaseException as e:  # noqa: BLE001 - report, never hang the parent
        results.put({"worker": idx, "error": f"{type(e).__name__}: {e}"})
        barrier.abort()


def bare_sqlite_worker(idx: int, path: str, barrier: Any, results: Any) -> None:
    try:
        owner = f"bench-w{idx}"
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")  # as aictl's store: the lock rows are FK-checked too
        claim, params = claim_sql("sqlite")
        barrier.wait()
        t0, n = time.monotonic(), 0
        while True:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(claim, {**params, "owner": owner, "expires": now + 60, "now": now}).fetchone()
            if row is None:
                conn.execute("COMMIT")
                if _remaining(conn, "bare"):
                    continue
                break
            task_id, epoch, lock_paths = row
            for p in json.loads(lock_paths):
                conn.execute(LOCK_SQL, {"t": task_id, "p": p, "o": owner, "e": epoch, "now": now})
            conn.execute(EVENT_SQL, _event(now, owner, "claim", task_id, epoch, "queued", "claimed"))
            conn.execute("COMMIT")
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute(COMPLETE_SQL, {"now": now, "id": task_id, "owner": owner, "epoch": epoch}).rowcount != 1:
                raise RuntimeError(f"lost lease on task {task_id}")
            if lock_paths != "[]":
                conn.execute(UNLOCK_SQL, {"id": task_id})
            conn.execute(EVENT_SQL, _event(now, owner, "complete", task_id, epoch, "claimed", "done"))
            conn.execute("COMMIT")
            n += 1
        t1 = time.monotonic()
        conn.close()
        results.put({"worker": idx, "cycles": n, "t0": t0, "t1": t1})
    except BaseException as e:  # noqa: BLE001 - report, never hang the parent
        results.put({"worker": idx, "error": f"{type(e).__name__}: {e}"})
        barrier.abort()


def bare_pg_worker(idx: int, dsn: str, barrier: Any, results: Any) -> None:
    try:
        import psycopg

        from aictl.store.postgres import to_pyformat

        owner = f"bench-w{idx}"
        conn = psycopg.connect(dsn, autocommit=False)
        claim, params = claim_sql("postgresql")
        claim, complete, event = to_pyformat(claim), to_pyformat(COMPLETE_SQL), to_pyformat(EVENT_SQL)
        lock, unlock = to_pyformat(LOCK_SQL), to_pyformat(UNLOCK_SQL)
        barrier.wait()
        t0, n = time.monotonic(), 0
        while True:
            now = time.time()
            row = conn.execute(claim, {**params, "owner": owner, "expires": now + 60, "now": now}).fetchone()
            if row is None:
                conn.commit()
                if _remaining(conn, "bare"):
                    continue
                break
            task_id, epoch, lock_paths = row
            for p in json.loads(lock_paths):
                conn.execute(lock, {"t": task_id, "p": p, "o": owner, "e": epoch, "now": now})
            conn.execute(event, _event(now, owner, "claim", task_id, epoch, "queued", "claimed"))
            conn.commit()
            now = time.time()
            if conn.execute(complete, {"now": now, "id": task_id, "owner": owner, "epoch": epoch}).rowcount != 1:
                raise RuntimeError(f"lost lease on task {task_id}")
            if lock_paths != "[]":
                conn.execute(unlock, {"id": task_id})
            conn.execute(event, _event(now, owner, "complete", task_id, epoch, "claimed", "done"))
            conn.commit()
            n += 1
        t1 = time.monotonic()
        conn.close()
        results.put({"worker": idx, "cycles": n, "t0": t0, "t1": t1})
    except BaseException as e:  # noqa: BLE001 - report, never hang the parent
        results.put({"worker": idx, "error": f"{type(e).__name__}: {e}"})
        barrier.abort()


def run_workers(target: Any, arg: str, workers: int, tasks: int, *extra: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(i, arg, barrier, results, *extra), daemon=True) for i in range(workers)]
    for p in procs:
        p.start()
    got = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [g["error"] for g in got if "error" in g]
    if errors:
        raise RuntimeError(f"{target.__name__} failed: {errors[0]}")
    done = sum(g["cycles"] for g in got)
    elapsed = max(g["t1"] for g in got) - min(g["t0"] for g in got)
    if done != tasks:
        log(f"warning: {target.__name__} finished {done} of {tasks} tasks")
    return {
        "cycles": done,
        "seconds": round(elapsed, 3),
        "cycles_per_s": round(done / elapsed, 1),
        "per_worker": sorted(g["cycles"] for g in got),
    }


# -- stores ----------------------------------------------------------------------------------


def fill(url: str, tasks: int, locks: bool) -> dict[str, Any]:
    """Create the tasks of a run; returns how long that took."""
    from aictl.config import Settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    store = open_store(url)
    t0 = time.perf_counter()
    try:
        if not locks:
            svc = TaskService(store, Settings(actor="bench-fill"))
            for start in range(0, tasks, FILL_BATCH):
                svc.create_many(
                    [
                        TaskSpec(title=f"bench task {i}", priority=i % 5)
                        for i in range(start, min(tasks, start + FILL_BATCH))
                    ]
                )
                log(f"  filled {min(tasks, start + FILL_BATCH)}/{tasks}")
            how = "TaskService.create_many, 5,000 per transaction"
        else:
            # Direct SQL (see the module docstring): pairwise-disjoint globs, so no conflict rows.
            now = time.time()
            rows = [
                {
                    "title": f"bench task {i}",
                    "priority": i % 5,
                    "locks": json.dumps([f"bench/t{i}/**"]),
                    "now": now + i * 1e-6,
                }
                for i in range(tasks)
            ]
            sql = (
                "INSERT INTO tasks (title, description, type, priority, status, labels, required_capabilities,"
                " lock_paths, exclusive, max_attempts, created_at, updated_at) VALUES"
                " (:title, '', 'task', :priority, 'queued', '[]', '[]', :locks, 0, 3, :now, :now)"
            )
            with store.write() as tx:
                if store.dialect == "sqlite":
                    tx._conn.executemany(sql, rows)  # type: ignore[attr-defined]
                else:
                    from aictl.store.postgres import to_pyformat

                    with tx._conn.cursor() as cur:  # type: ignore[attr-defined]
                        cur.executemany(to_pyformat(sql), rows)
            how = "direct SQL INSERT (one disjoint lock glob per task; see docstring)"
    finally:
        store.close()
    return {"seconds": round(time.perf_counter() - t0, 2), "how": how}


class SqliteStores:
    dialect = "sqlite"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="aictl-bench-claims-")
        self.template = os.path.join(self.dir, "template.db")
        self.n = 0

    def template_url(self) -> str:
        return f"sqlite:///{self.template}"

    def seal(self) -> None:
        conn = sqlite3.connect(self.template)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    def fresh(self) -> tuple[str, str]:
        """(aictl url, bare-driver argument) of a new copy of the template."""
        self.n += 1
        path = os.path.join(self.dir, f"run{self.n}.db")
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}", path

    def info(self) -> dict[str, Any]:
        return {"journal_mode": "wal", "synchronous": "NORMAL", "analyzed_after_fill": False}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PgStores:
    dialect = "postgresql"

    def __init__(self, fsync: bool) -> None:
        from tests.pgserver import PgServer

        log("starting PostgreSQL (tests/pgserver.py)")
        self.srv = PgServer().start()
        self.fsync = fsync
        if fsync:  # PgServer runs with fsync=off; turn durability back on for a fair comparison
            with self.srv._admin() as c:
                c.execute("ALTER SYSTEM SET fsync = on")
                c.execute("SELECT pg_reload_conf()")
        self.template_db = "bench_template"
        self.template = self.srv.create_database(self.template_db)
        self.n = 0
        self.made: list[str] = []

    def template_url(self) -> str:
        return self.template

    def seal(self) -> None:
        # aictl numbers events itself (from audit_head), so the identity sequence never moved;
        # move it past them so the bare loop's plain INSERTs get fresh ids.
        import psycopg

        from tests.pgserver import to_libpq

        with psycopg.connect(to_libpq(self.template), autocommit=True) as c:
            # Planner statistics, as autovacuum would have gathered on a live database (the copies
            # inherit them). Without them PostgreSQL sorts every queued row for each claim.
            c.execute("ANALYZE")
            c.execute(
                "SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM events),"
                " false)"
            )

    def fresh(self) -> tuple[str, str]:
        from tests.pgserver import to_libpq

        self.n += 1
        name = f"bench_run{self.n}"
        with self.srv._admin() as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE {self.template_db}")
        self.made.append(name)
        url = self.srv.url(name)
        return url, to_libpq(url)

    def info(self) -> dict[str, Any]:
        with self.srv._admin() as c:
            ver = c.execute("SHOW server_version").fetchone()[0]
            fs = c.execute("SHOW fsync").fetchone()[0]
            sc = c.execute("SHOW synchronous_commit").fetchone()[0]
        return {
            "postgres": ver,
            "fsync": fs,
            "synchronous_commit": sc,
            "analyzed_after_fill": True,
            "server": "tests/pgserver.py PgServer (local TCP, shared_buffers=64MB)",
        }

    def close(self) -> None:
        self.srv.stop()


# -- profile -----------------------------------------------------------------------------------


def profile_aictl(url: str, cycles: int, cache_redaction: bool, locks: bool) -> dict[str, Any]:
    """cProfile of one in-process aictl worker; on SQLite also count statements per cycle."""
    import cProfile

    if cache_redaction:
        cache_redaction_pattern()
    from aictl.config import Settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService

    store = open_store(url, migrate=False)
    svc = TaskService(store, Settings(actor="bench-prof"))
    statements: list[str] = []
    conn = getattr(store, "_conn", None)
    if store.dialect == "sqlite" and conn is not None:
        conn.set_trace_callback(statements.append)
    else:  # PostgreSQL: count what the transactions send (psycopg adds BEGIN and COMMIT to each)
        from aictl.store.postgres import PgTx

        for m in ("all", "one", "run"):

            def counted(self: Any, sql: str, params: Any = None, _orig: Any = getattr(PgTx, m)) -> Any:  # noqa: B008 - binds this loop's method now
                statements.append(sql)
                return _orig(self, sql, params)

            setattr(PgTx, m, counted)

    def loop(k: int) -> int:
        n = 0
        for _ in range(k):
            r = svc.claim("bench-prof")
            if r is None:
                break
            svc.complete(r.task.id, "bench-prof", r.lease.lease_epoch)
            n += 1
        return n

    loop(20)  # warm caches (prepared statements, lru caches)
    statements.clear()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    n = loop(cycles)
    prof.disable()
    wall = time.perf_counter() - t0
    path = os.path.join(tempfile.mkdtemp(prefix="aictl-bench-prof-"), "claims.prof")
    prof.dump_stats(path)
    out: dict[str, Any] = {
        "cycles": n,
        "profiled_cycles_per_s": round(n / wall, 1),
        "top_tottime": top_functions(path, 15, "tottime"),
        "top_cumtime": top_functions(path, 15, "cumtime"),
    }
    if statements:
        kinds: dict[str, int] = {}
        for s in statements:
            word = s.strip().split(None, 1)[0].upper()
            kinds[word] = kinds.get(word, 0) + 1
        if store.dialect == "postgresql":  # the implicit BEGIN and COMMIT of the two transactions
            kinds["BEGIN"] = kinds.get("BEGIN", 0) + 2 * n
            kinds["COMMIT"] = kinds.get("COMMIT", 0) + 2 * n
        total = sum(kinds.values())
        out["statements_per_cycle"] = round(total / n, 2)
        # BEGIN, claim UPDATE, [lock INSERT], event INSERT, COMMIT; BEGIN, UPDATE, [DELETE], INSERT, COMMIT
        out["bare_statements_per_cycle"] = 10 if locks else 8
        out["statements_by_verb_per_cycle"] = {k: round(v / n, 2) for k, v in sorted(kinds.items())}
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--workers", default="1,4,8", help="comma list of process counts, e.g. 1,4,8")
    ap.add_argument("--tasks", type=int, default=5000, help="tasks per run (each is claimed and completed once)")
    ap.add_argument("--locks", action="store_true", help="every task locks its own glob (adds lock rows)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per (mode, workers); the best is reported")
    ap.add_argument("--profile", action="store_true", help="add a cProfile of one in-process aictl worker")
    ap.add_argument(
        "--cache-redaction",
        action="store_true",
        help="experiment: aictl workers build the audit redaction regex once (monkeypatch in the"
        " benchmark's worker processes; aictl's code is not touched)",
    )
    ap.add_argument(
        "--pg-fsync",
        choices=["on", "off"],
        default="off",
        help="PostgreSQL fsync (PgServer default off; 'on' = default durability)",
    )
    args = ap.parse_args()

    stores: Any = SqliteStores() if args.backend == "sqlite" else PgStores(args.pg_fsync == "on")
    try:
        log(f"filling the template store with {args.tasks} tasks")
        filled = fill(stores.template_url(), args.tasks, args.locks)
        stores.seal()
        log(f"filled in {filled['seconds']} s ({filled['how']})")
        aictl_target = aictl_worker
        bare_target = bare_sqlite_worker if args.backend == "sqlite" else bare_pg_worker
        results = []
        for n in parse_int_list(args.workers):
            best: dict[str, dict[str, Any]] = {}
            for rep in range(args.repeat):
                for mode, target in (("aictl", aictl_target), ("bare", bare_target)):
                    url, bare_arg = stores.fresh()
                    if mode == "aictl":
                        r = run_workers(target, url, n, args.tasks, args.cache_redaction)
                    else:
                        r = run_workers(target, bare_arg, n, args.tasks)
                    log(
                        f"workers={n} {mode:5} run {rep + 1}: {r['cycles_per_s']:9.1f} cycles/s"
                        f" ({r['cycles']} in {r['seconds']} s, per worker {r['per_worker']})"
                    )
                    if mode not in best or r["cycles_per_s"] > best[mode]["cycles_per_s"]:
                        best[mode] = r
            a, b = best["aictl"]["cycles_per_s"], best["bare"]["cycles_per_s"]
            results.append(
                {
                    "workers": n,
                    "aictl_cycles_per_s": a,
                    "bare_cycles_per_s": b,
                    "ratio": round(a / b, 3),
                    "aictl_seconds": best["aictl"]["seconds"],
                    "bare_seconds": best["bare"]["seconds"],
                }
            )
        out: dict[str, Any] = {
            "benchmark": "claims",
            "backend": args.backend,
            "tasks": args.tasks,
            "locks": args.locks,
            "repeat": args.repeat,
            "redaction": "EXPERIMENT: pattern cached per process" if args.cache_redaction else "as aictl does it",
            "fill": filled,
            "results": results,
            "target": "4 workers, either backend: aictl >= half the bare loop (ratio >= 0.5; issue 10)",
            "machine": machine(stores.info()),
        }
        if args.profile:
            log("profiling one in-process aictl worker")
            url, _ = stores.fresh()
            out["profile"] = profile_aictl(url, min(args.tasks - 20, 2000), args.cache_redaction, args.locks)
        emit(out)
    finally:
        stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
