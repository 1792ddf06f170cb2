"""Worker processes for the AI concurrency tests (started with multiprocessing, spawn).

Each worker opens its own store connection and claims for one AI with its
concurrency limit, as `TaskService.claim` is called by aictl.tasks.claims for a registered AI.
"""

from __future__ import annotations

import time

from aictl.domain.errors import StoreError


def _service(url: str, owner: str):
    from aictl.config import Settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService

    store = open_store(url)
    return store, TaskService(store, Settings(database_url=url, actor=owner, lease_ttl=3600))


def _retry_busy(fn, *args, **kw):
    # SQLite: BEGIN IMMEDIATE can give up after busy_timeout under a storm of writers; nothing was done.
    while True:
        try:
            return fn(*args, **kw)
        except StoreError as e:
            if "busy" not in e.message:
                raise


def hold(url: str, owner: str, ai: str, limit: int, gate, results) -> None:
    """Claim for `ai` until a claim returns None; keep every claim (never complete). Report the task ids."""
    store, svc = _service(url, owner)
    gate.wait()
    got = []
    while True:
        claimed = _retry_busy(svc.claim, owner, ai=ai, ai_limit=limit)
        if claimed is None:
            break
        got.append(claimed.task.id)
    results.put((owner, got))
    store.close()


def churn(url: str, owner: str, ai: str, limit: int, gate, results) -> None:
    """Claim for `ai` → hold a moment → complete, until no task is left; report each lease's time span.

    The span is taken inside the lease (after the claim committed, before complete), with
    time.monotonic(), one clock for all processes on the machine.
    """
    store, svc = _service(url, owner)
    gate.wait()
    spans = []
    while True:
        claimed = _retry_busy(svc.claim, owner, ai=ai, ai_limit=limit)
        if claimed is None:
            with store.read() as tx:
                left = tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status != 'done'")["n"]
            if left == 0:
                break
            time.sleep(0.001)
            continue
        t0 = time.monotonic()
        time.sleep(0.002)
        t1 = time.monotonic()
        spans.append((claimed.task.id, t0, t1))
        _retry_busy(svc.complete, claimed.task.id, owner, claimed.lease.lease_epoch)
    results.put((owner, spans))
    store.close()
