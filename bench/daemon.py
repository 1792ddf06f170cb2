"""The daemon end to end: throughput, idle CPU, and the delay from `task create` to the start of execution.

Each figure comes from a real `aictl daemon start` process (detached, as users run it)
on a small git project, on SQLite and on a throwaway PostgreSQL (tests/pgserver.py):

* throughput: N command tasks (`true`, no locks) created in one batch, then a daemon
  with 1 and with 4 workers runs them. tasks/s = N / (last `complete` event − first
  `claim` event), from the audit log. Every task goes the executor's whole path
  (claim → policy → git worktree → run in the local sandbox → evidence → checks →
  complete → worktree removed).
* idle CPU: a daemon with nothing to do, after a settle time; utime+stime from
  /proc/<pid>/stat over `--idle-s` seconds, as % of one core.
* latency: tasks created one at a time at random gaps (0.1–2.5 s, so the SQLite poll
  backoff is caught at every level) while the daemon idles; create → claim and
  create → start of execution (the `start` event), from event timestamps.

    python bench/daemon.py [--tasks 200] [--idle-s 30] [--latency-tasks 15] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, git_state, log, machine, ms_stats

AICTL = [sys.executable, "-m", "aictl"]


def make_project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    for i in range(20):
        (root / "src" / f"m{i}.py").write_text(f"x = {i}\n")
    git = ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*AICTL, "init", "-o", "json"], cwd=root, check=True, stdout=subprocess.DEVNULL)
    (root / ".ai" / "config.yaml").write_text("lease_ttl: 60\nheartbeat_interval: 10\ndaemon_grace_s: 5\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return root


class Project:
    def __init__(self, root: Path, url: str | None):
        self.root = make_project(root)
        self.env = {**os.environ, "PYTHONPATH": ROOT}
        if url:
            self.env["AICTL_DATABASE_URL"] = url
        self.pid: int | None = None

    def settings(self):
        from aictl.config import load_settings

        with _env(self.env):
            return load_settings(self.root)

    def store(self):
        from aictl.store import open_store

        return open_store(self.settings().resolved_database_url)

    def start(self, workers: int) -> int:
        r = subprocess.run(
            [*AICTL, "daemon", "start", "--workers", str(workers), "-o", "json"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise SystemExit(f"daemon start failed: {r.stderr}")
        self.pid = json.loads(r.stdout)["pid"]
        return self.pid

    def stop(self) -> None:
        subprocess.run(
            [*AICTL, "daemon", "stop", "--now"], cwd=self.root, env=self.env, capture_output=True, timeout=120
        )
        self.pid = None


@contextlib.contextmanager
def _env(env: dict):
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def _count(store, status: str) -> int:
    with store.read() as tx:
        return tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status = :s", {"s": status})["n"]


def throughput(base: Path, url: str | None, workers: int, n: int) -> dict:
    from aictl.tasks.service import TaskService, TaskSpec

    p = Project(base, url)
    store = p.store()
    TaskService(store, p.settings()).create_many([TaskSpec(title=f"t{i}", command="true") for i in range(n)])
    p.start(workers)
    t0 = time.monotonic()
    try:
        while _count(store, "done") < n:
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"only {_count(store, 'done')}/{n} done after 900 s")
            time.sleep(0.2)
    finally:
        p.stop()
    with store.read() as tx:
        first = tx.one("SELECT MIN(ts) AS t FROM events WHERE action = 'claim'")["t"]
        last = tx.one("SELECT MAX(ts) AS t FROM events WHERE action = 'complete'")["t"]
        failed = tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status != 'done'")["n"]
    store.close()
    span = last - first
    return {
        "workers": workers,
        "tasks": n,
        "seconds": round(span, 2),
        "tasks_per_s": round(n / span, 1),
        "ms_per_task_per_worker": round(span / n * workers * 1000, 1),
        "not_done": failed,
    }


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat)


def idle_and_latency(base: Path, url: str | None, idle_s: float, latency_tasks: int, settle_s: float) -> dict:
    from aictl.tasks.service import TaskService, TaskSpec

    p = Project(base, url)
    store = p.store()
    svc = TaskService(store, p.settings())
    pid = p.start(2)
    try:
        time.sleep(settle_s)  # start-up work done, poll backoff at its cap
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu_ticks(pid), time.monotonic()
        time.sleep(idle_s)
        c1, t1 = cpu_ticks(pid), time.monotonic()
        idle = {
            "seconds": round(t1 - t0, 1),
            "cpu_s": round((c1 - c0) / hz, 3),
            "cpu_percent_of_one_core": round((c1 - c0) / hz / (t1 - t0) * 100, 3),
            "clock_ticks_per_s": hz,
        }
        rng = random.Random(1)
        claim_lat, start_lat = [], []
        for i in range(latency_tasks):
            time.sleep(rng.uniform(0.1, 2.5))
            tid = svc.create(TaskSpec(title=f"lat{i}", command="true")).id
            deadline = time.monotonic() + 60
            while True:
                with store.read() as tx:
                    rows = {
                        r["action"]: r["ts"]
                        for r in tx.all(
                            "SELECT action, ts FROM events"
                            " WHERE task_id = :t AND action IN ('create', 'claim', 'start', 'complete')",
                            {"t": tid},
                        )
                    }
                if "complete" in rows:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"task {tid} not done after 60 s")
                time.sleep(0.05)
            claim_lat.append(rows["claim"] - rows["create"])
            start_lat.append(rows["start"] - rows["create"])
    finally:
        p.stop()
        store.close()
    return {
        "idle": idle,
        "latency": {
            "tasks": latency_tasks,
            "create_to_claim_ms": ms_stats(claim_lat),
            "create_to_start_ms": ms_stats(start_lat),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--idle-s", type=float, default=30.0)
    ap.add_argument("--settle-s", type=float, default=5.0)
    ap.add_argument("--latency-tasks", type=int, default=15)
    ap.add_argument("--backends", default="sqlite,postgres")
    args = ap.parse_args()
    out: dict = {"benchmark": "daemon", "code": git_state(), "results": {}}
    base = Path(tempfile.mkdtemp(prefix="aictl-bench-daemon-"))
    srv = None
    try:
        for backend in args.backends.split(","):
            url = None
            if backend == "postgres":
                from tests.pgserver import PgServer

                srv = PgServer().start()
                with contextlib.closing(__import__("psycopg").connect(srv.dsn)) as c:
                    out["postgres"] = c.execute("SHOW server_version").fetchone()[0] + " (PgServer, fsync off)"
            res: dict = {"throughput": []}
            for w in [int(x) for x in args.workers.split(",")]:
                if backend == "postgres":
                    url = srv.create_database()
                log(f"{backend}: throughput, {args.tasks} tasks, {w} worker(s)")
                res["throughput"].append(throughput(base / f"{backend}-tp{w}", url, w, args.tasks))
                log(f"  {res['throughput'][-1]['tasks_per_s']} tasks/s")
            if backend == "postgres":
                url = srv.create_database()
            log(f"{backend}: idle CPU over {args.idle_s:g}s, then create→start latency of {args.latency_tasks} tasks")
            res.update(idle_and_latency(base / f"{backend}-idle", url, args.idle_s, args.latency_tasks, args.settle_s))
            log(
                f"  idle {res['idle']['cpu_percent_of_one_core']}% of a core; create→start median "
                f"{res['latency']['create_to_start_ms']['median_ms']} ms"
            )
            out["results"][backend] = res
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    out["machine"] = machine()
    emit(out)


if __name__ == "__main__":
    sys.exit(main())
