"""Costs of issue 6's pieces: notify() on the caller's thread, cron next_after, a `task watch` snapshot, fire_due.

    .venv/bin/python bench/watch_schedules.py [--tasks 20000] [--schedules 500] [--notifies 20000]

Prints one JSON object. SQLite only (a temp file store).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import emit, log, machine, ms_stats


def bench_notify(n: int) -> dict:
    from aictl.config import Settings
    from aictl.daemon.notify import Notifier

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a dead endpoint: every delivery is refused and retried
    notifier = Notifier.from_settings(
        Settings(actor="bench", notifications=[{"type": "webhook", "url": f"http://127.0.0.1:{port}/", "retries": 5}]),
        queue_size=n + 10,
    )
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        notifier.notify("task.failed", {"task_id": i, "title": "bench", "reason": "x" * 100})
        samples.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    flushed = notifier.close(0.5)
    return {
        "calls": n,
        "per_call": ms_stats(samples),
        "close_0.5s_took_ms": round((time.perf_counter() - t0) * 1000, 1),
        "close_flushed": flushed,
    }


def bench_cron() -> dict:
    from zoneinfo import ZoneInfo

    from aictl.tasks.cron import parse

    out = {}
    for expr, tz in (
        ("* * * * *", "UTC"),
        ("*/15 * * * *", "America/New_York"),
        ("0 9 * * mon-fri", "Europe/Berlin"),
        ("0 0 29 2 *", "UTC"),
        ("30 2 * * *", "America/New_York"),
    ):
        c, zone = parse(expr), ZoneInfo(tz)
        t, samples = 1_780_000_000.0, []
        for i in range(2000):
            if i % 100 == 0:
                t = 1_780_000_000.0 + i * 3607.0  # restart now and then: a yearly expression must not run off year 9999
            t0 = time.perf_counter()
            t = c.next_after(t, zone)
            samples.append(time.perf_counter() - t0)
        out[f"{expr} ({tz})"] = ms_stats(samples)
    return out


def bench_store(n_tasks: int, n_sched: int) -> dict:
    from aictl.config import Settings
    from aictl.store import open_store
    from aictl.tasks.schedules import ScheduleService
    from aictl.tasks.service import TaskService, TaskSpec
    from aictl.tasks.watch import snapshot

    d = tempfile.mkdtemp(prefix="aictl-bench-")
    url = f"sqlite:///{d}/state.db"
    store = open_store(url)
    settings = Settings(database_url=url, actor="bench")
    svc = TaskService(store, settings)
    log(f"filling {n_tasks} tasks")
    for start in range(0, n_tasks, 1000):
        svc.create_many([TaskSpec(title=f"t{i}", priority=i % 7) for i in range(start, min(n_tasks, start + 1000))])
    for i in range(50):  # some held, failed and parked tasks, as on a busy board
        c = svc.claim(f"w{i}")
        if i % 3 == 0:
            svc.fail(c.task.id, f"w{i}", c.lease.lease_epoch, reason="bench failure")
        elif i % 3 == 1:
            svc.await_approval(c.task.id, f"w{i}", c.lease.lease_epoch, reason="bench approval")
    samples = []
    for _ in range(30):
        t0 = time.perf_counter()
        snapshot(store, limit=10)
        samples.append(time.perf_counter() - t0)
    log(f"creating {n_sched} schedules")
    sched = ScheduleService(store, settings)
    for i in range(n_sched):
        sched.create(TaskSpec(title=f"s{i}"), "* * * * *")
    t0 = time.perf_counter()
    fired = sched.fire_due(time.time() + 3600)
    fire_s = time.perf_counter() - t0
    store.close()
    return {
        "tasks": n_tasks,
        "snapshot": ms_stats(samples),
        "schedules": n_sched,
        "fired": len(fired),
        "fire_due_s": round(fire_s, 3),
        "fire_due_per_schedule_ms": round(fire_s * 1000 / max(1, n_sched), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--schedules", type=int, default=500)
    ap.add_argument("--notifies", type=int, default=20000)
    a = ap.parse_args()
    log("notify")
    result = {"notify_dead_webhook": bench_notify(a.notifies)}
    log("cron")
    result["cron_next_after"] = bench_cron()
    result["sqlite"] = bench_store(a.tasks, a.schedules)
    result["machine"] = machine()
    emit(result)


if __name__ == "__main__":
    main()
