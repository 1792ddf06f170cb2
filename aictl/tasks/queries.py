"""The one reader of the tasks table: get, list, ready (with reasons), dependency trees, held locks, events.

`TaskQueries` opens its own read transactions. The module functions below take the
caller's transaction (read or write), so other packages (the CLI, the daemon, the
AI registry, the executor) read tasks through here instead of writing SQL on them.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aictl.domain.errors import NotFound
from aictl.domain.models import DepNode, Event, HeldLock, ReadyEntry, Task
from aictl.domain.status import TaskStatus
from aictl.store.base import Store, Tx
from aictl.tasks.sql import (
    CLAIM_ORDER,
    HELD,
    as_json_list,
    claimable_where,
    deps_of,
    in_list,
    json_superset,
    row_to_task,
)

S = TaskStatus


class TaskQueries:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def get(self, task_id: int) -> Task:
        with self.store.read() as tx:
            row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task_id})
            if row is None:
                raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
            return row_to_task(row, deps_of(tx, [task_id]).get(task_id, []))

    def list(
        self,
        *,
        statuses: list[str] | None = None,
        label: list[str] | None = None,
        owner: str | None = None,
        capability: list[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Task]:
        where, params = ["1 = 1"], {}
        with self.store.read() as tx:
            if statuses:
                where.append(f"status IN ({in_list(tx, 'statuses', text=True)})")
                params["statuses"] = as_json_list(statuses)
            if label:
                where.append(json_superset(tx, "labels", "labels"))
                params["labels"] = as_json_list(label)
            if capability:
                where.append(json_superset(tx, "required_capabilities", "caps"))
                params["caps"] = as_json_list(capability)
            if owner:
                where.append("owner = :owner")
                params["owner"] = owner
            sql = f"SELECT * FROM tasks WHERE {' AND '.join(where)} ORDER BY id{' DESC' if newest_first else ''}"
            if limit:
                sql += f" LIMIT {int(limit)}"
            rows = tx.all(sql, params)
            deps = deps_of(tx, None if len(rows) > 500 else [r["id"] for r in rows])
            return [row_to_task(r, deps.get(r["id"], [])) for r in rows]

    def ready(
        self,
        *,
        capabilities: builtins.list[str] | None = None,
        labels: builtins.list[str] | None = None,
        limit: int = 20,
    ) -> builtins.list[ReadyEntry]:
        """Tasks claimable now in claim order, then waiting ones with the reason each waits."""
        now = self.clock()
        with self.store.read() as tx:
            where, params = claimable_where(tx, capabilities=capabilities, labels=labels, task_id=None)
            params["now"] = now
            ready_rows = tx.all(
                f"SELECT t.id, t.title, t.status, t.priority FROM tasks t"
                f" WHERE {where} {CLAIM_ORDER} LIMIT {int(limit)}",
                params,
            )
            ready_ids = [r["id"] for r in ready_rows]
            # One query per status, so each reads the (status, priority, created, id) index in
            # order and stops at `limit`; `status IN (…)` made PostgreSQL sort every waiting row.
            waiting = [
                row
                for status in ("queued", "blocked")
                for row in tx.all(
                    f"SELECT t.* FROM tasks t WHERE t.status = '{status}' AND NOT ({where})"
                    f" {CLAIM_ORDER} LIMIT {int(limit)}",
                    params,
                )
            ]
            waiting.sort(key=lambda r: (-r["priority"], r["created_at"], r["id"]))
            waiting = waiting[:limit]
            reasons = reasons_not_ready(tx, waiting, now, capabilities=capabilities, labels=labels)
        out = [
            ReadyEntry(id=r["id"], title=r["title"], status=r["status"], priority=r["priority"], ready=True)
            for r in ready_rows
        ]
        out += [
            ReadyEntry(
                id=r["id"],
                title=r["title"],
                status=r["status"],
                priority=r["priority"],
                ready=False,
                reasons=reasons.get(r["id"], []),
            )
            for r in waiting
            if r["id"] not in ready_ids
        ]
        return out

    def deps(self, task_id: int) -> builtins.list[DepNode]:
        """The task's dependencies (transitively) and its dependents (transitively), with status."""
        with self.store.read() as tx:
            if tx.one("SELECT 1 AS x FROM tasks WHERE id = :id", {"id": task_id}) is None:
                raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
            out: list[DepNode] = []
            for direction, sql in (
                (
                    "dependency",
                    "SELECT d.depends_on AS id, up.depth + 1 AS depth FROM task_deps d JOIN up ON d.task_id = up.id",
                ),
                (
                    "dependent",
                    "SELECT d.task_id AS id, up.depth + 1 AS depth FROM task_deps d JOIN up ON d.depends_on = up.id",
                ),
            ):
                rows = tx.all(
                    f"WITH RECURSIVE up(id, depth) AS (SELECT CAST(:id AS BIGINT), 0 UNION {sql} WHERE up.depth < 1000)"
                    " SELECT t.id, t.title, t.status, MIN(up.depth) AS depth FROM up JOIN tasks t ON t.id = up.id"
                    " WHERE up.depth > 0 GROUP BY t.id, t.title, t.status ORDER BY MIN(up.depth), t.id",
                    {"id": task_id},
                )
                out += [
                    DepNode(id=r["id"], title=r["title"], status=r["status"], depth=r["depth"], direction=direction)
                    for r in rows
                ]
            return out

    def locks(self) -> builtins.list[HeldLock]:
        with self.store.read() as tx:
            rows = tx.all("SELECT task_id, pattern, owner, lease_epoch, acquired_at FROM locks ORDER BY task_id, id")
        return [HeldLock(**r) for r in rows]

    def events(
        self,
        *,
        task_id: int | None = None,
        limit: int | None = None,
        after_id: int = 0,
        action: str | None = None,
        actor: str | None = None,
        first: int | None = None,
    ) -> builtins.list[Event]:
        """Events after `after_id` in id order: all, the last `limit`, or the `first` N (readers that page on)."""
        sql = "SELECT * FROM events WHERE id > :after"
        params: dict[str, Any] = {"after": after_id}
        for col, val in (("task_id", task_id), ("action", action), ("actor", actor)):
            if val is not None:
                sql += f" AND {col} = :{col}"
                params[col] = val
        sql += " ORDER BY id"
        if first:
            sql += f" LIMIT {int(first)}"
        elif limit:
            sql = f"SELECT * FROM ({sql.replace(' ORDER BY id', '')} ORDER BY id DESC LIMIT {int(limit)}) e ORDER BY id"
        with self.store.read() as tx:
            rows = tx.all(sql, params)
        return [
            Event(
                **{
                    k: (json.loads(v) if k in ("before", "after", "data") and v is not None else v)
                    for k, v in r.items()
                    if k in Event.model_fields
                }
            )
            for r in rows
        ]


def reasons_not_ready(
    tx: Tx,
    rows: list[dict[str, Any]],
    now: float,
    *,
    capabilities: list[str] | None = None,
    labels: list[str] | None = None,
) -> dict[int, list[str]]:
    """For each queued/blocked task row, every reason it cannot be claimed right now."""
    ids = [r["id"] for r in rows]
    if not ids:
        return {}
    out: dict[int, list[str]] = {i: [] for i in ids}
    idp = {"ids": as_json_list(ids)}
    for d in tx.all(
        f"SELECT d.task_id, p.id, p.status FROM task_deps d JOIN tasks p ON p.id = d.depends_on"
        f" WHERE d.task_id IN ({in_list(tx, 'ids')}) AND p.status NOT IN ('done', 'merged') ORDER BY d.task_id, p.id",
        idp,
    ):
        if d["status"] in (S.FAILED, S.CANCELLED):
            out[d["task_id"]].append(f"blocked by #{d['id']}: that dependency {d['status']}")
        else:
            out[d["task_id"]].append(f"blocked by #{d['id']} ({d['status']})")
    for c in tx.all(
        "SELECT c.task_id, l.task_id AS holder, l.pattern, l.owner FROM task_conflicts c"
        f" JOIN locks l ON l.task_id = c.other_id WHERE c.task_id IN ({in_list(tx, 'ids')})"
        " ORDER BY c.task_id, l.task_id, l.id",
        idp,
    ):
        out[c["task_id"]].append(f"locked by #{c['holder']} ({c['pattern']}, held by {c['owner']})")
    held = tx.all(f"SELECT id, exclusive, owner FROM tasks WHERE status IN {HELD} ORDER BY id")
    held_excl = [h for h in held if h["exclusive"]]
    for r in rows:
        reasons = out[r["id"]]
        if r["next_run_at"] is not None and r["next_run_at"] > now:
            when = datetime.fromtimestamp(r["next_run_at"], tz=UTC).isoformat(timespec="seconds")
            reasons.append(f"retry backoff until {when}")
        if held_excl and held_excl[0]["id"] != r["id"]:
            reasons.append(f"exclusive task #{held_excl[0]['id']} is running ({held_excl[0]['owner']})")
        elif r["exclusive"] and any(h["id"] != r["id"] for h in held):
            reasons.append(f"exclusive: waits for {len(held)} running task(s) to finish")
        if capabilities is not None:
            missing = sorted(set(json.loads(r["required_capabilities"])) - set(capabilities))
            if missing:
                reasons.append(f"needs capability {', '.join(missing)}")
        if labels:
            missing = sorted(set(labels) - set(json.loads(r["labels"])))
            if missing:
                reasons.append(f"lacks label {', '.join(missing)}")
    return out


def task_row(tx: Tx, task_id: int) -> dict[str, Any]:
    """The task's raw row (NotFound if none): what a policy sees of it is aictl.tasks.txn.task_facts(row)."""
    row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task_id})
    if row is None:
        raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
    return row


def task_rows(tx: Tx, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Raw rows of the given tasks by id (missing ids are left out)."""
    if not ids:
        return {}
    return {
        r["id"]: r
        for r in tx.all(f"SELECT * FROM tasks WHERE id IN ({in_list(tx, 'ids')})", {"ids": as_json_list(ids)})
    }


def claimable_rows(
    tx: Tx, where: str, params: dict[str, Any], *, limit: int, columns: str = "t.*"
) -> list[dict[str, Any]]:
    """Rows matching a claimable_where clause (alias t), in claim order."""
    return tx.all(f"SELECT {columns} FROM tasks t WHERE {where} {CLAIM_ORDER} LIMIT {int(limit)}", params)


def queued_due(tx: Tx, now: float) -> tuple[bool, float | None]:
    """Is some queued task due now (no backoff pending)? If not, when the earliest backoff ends (or None)."""
    if (
        tx.one(
            "SELECT id FROM tasks WHERE status = 'queued' AND (next_run_at IS NULL OR next_run_at <= :now) LIMIT 1",
            {"now": now},
        )
        is not None
    ):
        return True, None
    due = tx.one(
        "SELECT MIN(next_run_at) AS due FROM tasks WHERE status = 'queued' AND next_run_at > :now", {"now": now}
    )
    return False, (due["due"] if due and due["due"] is not None else None)


def live_leases_and_failures(tx: Tx) -> list[dict[str, Any]]:
    """(id, status, lease_epoch) of claimed, running and failed tasks (which workspaces prune keeps)."""
    return tx.all(f"SELECT id, status, lease_epoch FROM tasks WHERE status IN {HELD[:-1]}, 'failed')")


def any_lease_expired(tx: Tx, now: float) -> bool:
    """Has some claimed or running task's lease run out? (cheap: the lease-expiry index)."""
    return (
        tx.one(f"SELECT id FROM tasks WHERE status IN {HELD} AND lease_expires_at < :now LIMIT 1", {"now": now})
        is not None
    )


def status_counts(tx: Tx) -> dict[str, int]:
    """Tasks per status (the claim index's status prefix serves it)."""
    return {r["status"]: r["n"] for r in tx.all("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")}


def held_activity(tx: Tx) -> list[tuple[int, str | None]]:
    """(id, latest activity) of every held task: activity is written without an event, so change readers poll it."""
    rows = tx.all(f"SELECT id, activity FROM tasks WHERE status IN {HELD} ORDER BY id")
    return [(r["id"], r["activity"]) for r in rows]


def held_by_ai(tx: Tx, ai: str) -> list[int]:
    """Ids of the tasks an AI holds (claimed or running), in id order."""
    return [
        r["id"] for r in tx.all(f"SELECT id FROM tasks WHERE ai = :ai AND status IN {HELD} ORDER BY id", {"ai": ai})
    ]


def held_counts_by_ai(tx: Tx) -> dict[str, int]:
    """Tasks held (claimed or running) per AI."""
    return {
        r["ai"]: r["n"]
        for r in tx.all(f"SELECT ai, COUNT(*) AS n FROM tasks WHERE status IN {HELD} AND ai IS NOT NULL GROUP BY ai")
    }


__all__ = [
    "TaskQueries",
    "any_lease_expired",
    "claimable_rows",
    "held_activity",
    "held_by_ai",
    "held_counts_by_ai",
    "live_leases_and_failures",
    "queued_due",
    "reasons_not_ready",
    "status_counts",
    "task_row",
    "task_rows",
]
