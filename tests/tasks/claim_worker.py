"""A worker process for the concurrency and crash tests: `python -m tests.tasks.claim_worker MODE URL OWNER [ARG]`.

It talks to the store exactly as a real worker would (TaskService over its own
connection) and reports on stdout, one JSON object per line.

Modes:
  drain [HOLD_MS]  print {"ready": true}, wait for "go" on stdin, then claim -> (hold HOLD_MS) -> complete
                   until no task is queued; print {"claims": [[id, epoch, t_claimed, t_released], ...],
                   "lost": [[id, epoch, error], ...], "busy": n}. The two times (time.monotonic(): one
                   clock for every process on the machine) are taken *inside* the lease: after claim()
                   returned, before complete() was called.
  hold TASK_ID     claim TASK_ID with a 1.5 s lease, print {"task_id", "epoch", "expires"}, sleep forever.
  churn            print {"ready": true}, then claim -> maybe start -> release | fail (retryable) |
                   complete, forever, as fast as it can.
  bulk N           print {"begin": true}, create N tasks in one transaction, print {"end": true}.

The tests start workers with `start_worker` and read their lines with `read_msg`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from aictl.config import Settings
from aictl.domain.errors import Conflict, LeaseLost, StoreError
from aictl.store import open_store
from aictl.tasks.service import TaskService, TaskSpec

HOLD_TTL = 1.5
DRAIN_TTL = 3600.0  # drain is about claims, not expiry (test_crash covers that): no lease may lapse
REPO = Path(__file__).resolve().parents[2]


def start_worker(mode: str, url: str, owner: str, *args: object) -> subprocess.Popen:
    """Start one worker process (used by the tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tasks.claim_worker", mode, url, owner, *map(str, args)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_msg(proc: subprocess.Popen) -> dict:
    """The worker's next JSON line; fails with its stderr if it died first."""
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise AssertionError(f"worker {proc.pid} exited {proc.returncode} early:\n{proc.stderr.read()}")
    return json.loads(line)


def say(**obj) -> None:
    print(json.dumps(obj), flush=True)


def queued_left(store) -> int:
    with store.read() as tx:
        return tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status = 'queued'")["n"]


def drain(store, svc: TaskService, owner: str, hold_ms: float) -> None:
    busy = 0

    def retry_busy(fn, *args, **kw):
        # SQLite: BEGIN IMMEDIATE gave up after busy_timeout (its lock is not fair, a waiter can
        # starve). Nothing was done, and the error says "retry": do, and count it.
        nonlocal busy
        while True:
            try:
                return fn(*args, **kw)
            except StoreError as e:
                if "busy" not in e.message:
                    raise
                busy += 1

    say(ready=True)
    assert sys.stdin.readline().strip() == "go"
    claims, lost = [], []
    while True:
        r = retry_busy(svc.claim, owner, ttl=DRAIN_TTL)
        if r is None:
            # Nothing claimable *now*: other workers may hold what is left (or block it through locks).
            if queued_left(store) == 0:
                break
            time.sleep(0.001)
            continue
        t0 = time.monotonic()
        if hold_ms:
            time.sleep(hold_ms / 1000)
        t1 = time.monotonic()
        claims.append([r.task.id, r.lease.lease_epoch, t0, t1])
        try:
            retry_busy(svc.complete, r.task.id, owner, r.lease.lease_epoch)
        except LeaseLost as e:  # someone else claimed "our" task: report it, the test fails on it
            lost.append([r.task.id, r.lease.lease_epoch, e.message])
    say(claims=claims, lost=lost, busy=busy)


def hold(svc: TaskService, owner: str, task_id: int) -> None:
    r = svc.claim(owner, task_id=task_id, ttl=HOLD_TTL)
    say(task_id=r.task.id, epoch=r.lease.lease_epoch, expires=r.lease.lease_expires_at)
    time.sleep(3600)


def churn(svc: TaskService, owner: str) -> None:
    rnd = random.Random()
    say(ready=True)
    while True:
        r = svc.claim(owner, ttl=1.0)
        if r is None:
            time.sleep(0.001)
            continue
        tid, epoch = r.task.id, r.lease.lease_epoch
        try:
            if rnd.random() < 0.5:
                svc.start(tid, owner, epoch)
            x = rnd.random()
            if x < 0.6:
                svc.release(tid, owner, epoch)
            elif x < 0.97:  # complete rarely, so the queue is not drained before the last round
                svc.fail(tid, owner, epoch, reason="churn", retryable=True)
            else:
                svc.complete(tid, owner, epoch)
        except Conflict:  # our lease expired and someone reaped it: a normal race, go on
            pass


def bulk(svc: TaskService, n: int) -> None:
    specs = [TaskSpec(title=f"bulk {i}", lock_paths=["bulk/**"]) for i in range(n)]
    say(begin=True)
    svc.create_many(specs)
    say(end=True)


def main(argv: list[str]) -> None:
    mode, url, owner, *rest = argv
    store = open_store(url)
    svc = TaskService(store, Settings(database_url=url, actor=owner, backoff_base=0.0))
    if mode == "drain":
        drain(store, svc, owner, float(rest[0]) if rest else 0.0)
    elif mode == "hold":
        hold(svc, owner, int(rest[0]))
    elif mode == "churn":
        churn(svc, owner)
    elif mode == "bulk":
        bulk(svc, int(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
