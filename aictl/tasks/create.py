"""Creating tasks: batch create with the DAG, and add_dependency.

A batch is checked before its transaction (duplicate keys, unknown keys, cycles
inside the batch, lock globs), then inserted in dependency order in one
transaction: a task whose dependencies are not all done starts blocked, its lock
globs are indexed against every live task's (aictl.tasks.conflicts), and each
task gets one `create` event. add_dependency refuses an edge that closes a cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from aictl.domain.errors import CycleError, IllegalTransition, UsageError
from aictl.domain.models import Task
from aictl.domain.status import TaskStatus, check_transition
from aictl.store.base import Tx
from aictl.tasks import conflicts, dag
from aictl.tasks.spec import TaskSpec
from aictl.tasks.sql import as_json_list, in_list, returning_task
from aictl.tasks.txn import TaskPlane, load_row, to_task

S = TaskStatus


def create_many(p: TaskPlane, specs: list[TaskSpec], *, dry_run: bool = False) -> list[Task]:
    """Create tasks in one transaction; depends_on may name earlier or later keys of the batch."""
    created: list[Task] = p.write(creator(p, specs), dry_run)
    if len(specs) >= 200 and not dry_run and p.store.dialect == "postgresql":
        # A bulk load leaves the planner without statistics until autovacuum runs (up to a
        # minute); without them it sorts the whole queue on every claim instead of reading
        # the claim index in order.
        with p.store.write() as tx:
            tx.run("ANALYZE tasks")
    return created


def creator(p: TaskPlane, specs: list[TaskSpec]) -> Callable[[Tx, float], list[Task]]:
    """Check a batch, and return the function that inserts it in a transaction."""
    from aictl.tasks.globs import GlobError, normalize_patterns

    keys = [s.key for s in specs if s.key]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise UsageError(f"duplicate task key(s) in batch: {', '.join(dupes)}")
    by_key = {s.key: i for i, s in enumerate(specs) if s.key}
    local_edges: dict[str, list[str]] = {}
    for i, s in enumerate(specs):
        for d in s.depends_on:
            if isinstance(d, str) and not d.isdigit():
                if d not in by_key:
                    raise UsageError(f"task {s.key or s.title!r} depends on unknown key {d!r}")
                local_edges.setdefault(s.key or f"#{i}", []).append(d)
    cycle = dag.find_cycle(local_edges)
    if cycle:
        raise CycleError(f"dependency cycle in batch: {dag.format_cycle(cycle)}")
    locks = []
    for s in specs:
        try:
            locks.append(normalize_patterns(s.lock_paths))
        except GlobError as e:
            raise UsageError(f"invalid lock path for task {s.title!r}: {e}") from None

    def run(tx: Tx, now: float) -> list[Task]:
        ids: dict[int, int] = {}
        rows: dict[int, dict] = {}
        # Insert in dependency order so every dependency exists first.
        for i in _topo_order(specs, by_key):
            s = specs[i]
            dep_ids = sorted(
                {ids[by_key[d]] if isinstance(d, str) and not d.isdigit() else int(d) for d in s.depends_on}
            )
            for d in dep_ids:
                load_row(tx, d)  # NotFound names a missing dependency
            undone = (
                [
                    r["id"]
                    for r in tx.all(
                        "SELECT id FROM tasks WHERE status NOT IN ('done', 'merged')"
                        f" AND id IN ({in_list(tx, 'ids')}) ORDER BY id",
                        {"ids": as_json_list(dep_ids)},
                    )
                ]
                if dep_ids
                else []
            )
            status = S.BLOCKED if undone else S.QUEUED
            row = tx.row(
                "INSERT INTO tasks (title, description, type, priority, status, labels, required_capabilities,"
                " lock_paths, exclusive, max_attempts, command, verify, created_at, updated_at)"
                " VALUES (:title, :description, :type, :priority, :status, :labels, :caps, :locks, :excl,"
                " :max_attempts, :command, :verify, :now, :now) RETURNING *",
                {
                    "title": s.title,
                    "description": s.description,
                    "type": s.type,
                    "priority": s.priority,
                    "status": status.value,
                    "labels": as_json_list(s.labels),
                    "caps": as_json_list(s.required_capabilities),
                    "locks": as_json_list(locks[i]),
                    "excl": int(s.exclusive),
                    "max_attempts": s.max_attempts or p.settings.max_attempts,
                    "command": s.command,
                    "verify": s.verify,
                    "now": now,
                },
            )
            ids[i] = row["id"]
            rows[i] = {**row, "deps": ",".join(map(str, dep_ids))}  # the new row's edges are exactly these
            for d in dep_ids:
                tx.run("INSERT INTO task_deps (task_id, depends_on) VALUES (:t, :d)", {"t": row["id"], "d": d})
            conflicts.index(tx, row["id"], locks[i])
            p.event(
                tx,
                now,
                "create",
                row,
                None,
                title=s.title,
                priority=s.priority,
                depends_on=dep_ids or None,
                lock_paths=locks[i] or None,
                waiting_on=undone or None,
            )
        return [to_task(rows[i]) for i in range(len(specs))]

    return run


def add_dependency(p: TaskPlane, task_id: int, depends_on: int, *, dry_run: bool = False) -> Task:
    def run(tx: Tx, now: float) -> Task:
        row = load_row(tx, task_id)
        dep = load_row(tx, depends_on)
        if row["status"] not in (S.QUEUED, S.BLOCKED):
            raise IllegalTransition(
                f"cannot add a dependency to task {task_id}: it is {row['status']}",
                hint="dependencies can change only while a task waits (queued or blocked)",
            )
        edges = _reachable_edges(tx, depends_on)
        cycle = dag.cycle_through_new_edge(edges, task_id, depends_on)
        if cycle:
            raise CycleError(
                f"task {task_id} cannot depend on {depends_on}: that closes the cycle {dag.format_cycle(cycle)}",
                details={"cycle": cycle},
            )
        tx.run(
            "INSERT INTO task_deps (task_id, depends_on) VALUES (:t, :d) ON CONFLICT DO NOTHING",
            {"t": task_id, "d": depends_on},
        )
        before = row["status"]
        if dep["status"] != S.DONE and before == S.QUEUED:
            check_transition(task_id, S.QUEUED, S.BLOCKED, "block")
            row = tx.row(
                f"UPDATE tasks SET status = 'blocked', updated_at = :now WHERE id = :id {returning_task(tx)}",
                {"now": now, "id": task_id},
            )
        else:
            row = load_row(tx, task_id)  # the new edge is in its dependencies now
        p.event(tx, now, "add_dependency", row, before, depends_on=depends_on)
        return to_task(row)

    return p.write(run, dry_run)


def _topo_order(specs: list[TaskSpec], by_key: dict[str, int]) -> list[int]:
    """Indices of specs so that batch-local dependencies come first (cycles were rejected before)."""
    done: list[int] = []
    seen: set[int] = set()

    def visit(i: int) -> None:
        if i in seen:
            return
        seen.add(i)
        for d in specs[i].depends_on:
            if isinstance(d, str) and not d.isdigit():
                visit(by_key[d])
        done.append(i)

    for i in range(len(specs)):
        visit(i)
    return done


def _reachable_edges(tx: Tx, start: int) -> dict[int, list[int]]:
    """Dependency edges reachable from `start` (one recursive query)."""
    rows = tx.all(
        "WITH RECURSIVE up(id) AS (SELECT CAST(:start AS BIGINT)"
        " UNION SELECT d.depends_on FROM task_deps d JOIN up ON d.task_id = up.id)"
        " SELECT d.task_id, d.depends_on FROM task_deps d JOIN up ON d.task_id = up.id",
        {"start": start},
    )
    edges: dict[int, list[int]] = {}
    for r in rows:
        edges.setdefault(r["task_id"], []).append(r["depends_on"])
    return edges
