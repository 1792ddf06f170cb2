"""SQL shared by the task service and its queries: row mapping and the claimable predicate."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aictl.domain.models import Task
from aictl.store.base import Tx

# A task in these states holds its locks (and counts as "running" for exclusive tasks). A task
# awaiting approval has no lease, so it holds nothing: a lock without a lease could never expire.
HELD = "('claimed', 'running')"
LIVE = "('queued', 'blocked', 'claimed', 'running', 'awaiting_approval')"


def as_json_list(values: Iterable[Any]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def deps_column(tx: Tx, table: str = "tasks") -> str:
    """A column `deps`: the row's dependency ids as "1,5,9", so one statement returns a whole task."""
    agg = "group_concat(depends_on)" if tx.dialect == "sqlite" else "string_agg(CAST(depends_on AS TEXT), ',')"
    return f"(SELECT {agg} FROM task_deps WHERE task_id = {table}.id) AS deps"


def returning_task(tx: Tx) -> str:
    """RETURNING clause of a tasks UPDATE/INSERT: the new row and its dependencies."""
    return f"RETURNING *, {deps_column(tx)}"


def row_to_task(row: dict[str, Any], deps: list[int] | None = None) -> Task:
    """A Task from a row; its dependencies from `deps`, else from the row's `deps` column."""
    if deps is None:
        deps = sorted(int(d) for d in row["deps"].split(",")) if row.get("deps") else []
    return Task(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        type=row["type"],
        priority=row["priority"],
        status=row["status"],
        labels=json.loads(row["labels"]),
        required_capabilities=json.loads(row["required_capabilities"]),
        dependencies=deps,
        lock_paths=json.loads(row["lock_paths"]),
        exclusive=bool(row["exclusive"]),
        owner=row["owner"],
        lease_epoch=row["lease_epoch"],
        lease_expires_at=row["lease_expires_at"],
        heartbeat_at=row["heartbeat_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        next_run_at=row["next_run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        result=None if row["result"] is None else json.loads(row["result"]),
        command=row.get("command"),
        verify=row.get("verify"),
        ai=row.get("ai"),
        activity=row.get("activity"),
    )


def deps_of(tx: Tx, ids: list[int] | None) -> dict[int, list[int]]:
    """Dependencies of the given tasks (all tasks when ids is None)."""
    if ids is not None and not ids:
        return {}
    if ids is None:
        rows = tx.all("SELECT task_id, depends_on FROM task_deps ORDER BY task_id, depends_on")
    elif len(ids) == 1:
        rows = tx.all(
            "SELECT task_id, depends_on FROM task_deps WHERE task_id = :id ORDER BY depends_on", {"id": ids[0]}
        )
    else:
        rows = tx.all(
            f"SELECT task_id, depends_on FROM task_deps WHERE task_id IN ({in_list(tx, 'ids')})"
            " ORDER BY task_id, depends_on",
            {"ids": as_json_list(ids)},
        )
    out: dict[int, list[int]] = {}
    for r in rows:
        out.setdefault(r["task_id"], []).append(r["depends_on"])
    return out


def in_list(tx: Tx, param: str, *, text: bool = False) -> str:
    """A subquery yielding the elements (ids, or strings if text) of the JSON array bound to `param`."""
    if tx.dialect == "sqlite":
        return f"SELECT value FROM json_each(:{param})"
    cast = "" if text else "::bigint"
    return f"SELECT jsonb_array_elements_text(CAST(:{param} AS jsonb)){cast}"


def json_subset(tx: Tx, column: str, param: str) -> str:
    """SQL true when every element of the JSON array `column` is in the array bound to `param`."""
    if tx.dialect == "sqlite":
        return (
            f"NOT EXISTS (SELECT 1 FROM json_each({column}) j"
            f" WHERE j.value NOT IN (SELECT value FROM json_each(:{param})))"
        )
    return f"(CAST({column} AS jsonb) <@ CAST(:{param} AS jsonb))"


def json_superset(tx: Tx, column: str, param: str) -> str:
    """SQL true when the JSON array `column` contains every element bound to `param`."""
    if tx.dialect == "sqlite":
        return (
            f"NOT EXISTS (SELECT 1 FROM json_each(:{param}) w"
            f" WHERE w.value NOT IN (SELECT value FROM json_each({column})))"
        )
    return f"(CAST({column} AS jsonb) @> CAST(:{param} AS jsonb))"


def claimable_where(
    tx: Tx,
    *,
    capabilities: list[str] | None,
    labels: list[str] | None,
    task_id: int | None,
    refused_for: tuple[str, str] | None = None,
    for_ai: tuple[str, list[str]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """WHERE clause (over alias t) selecting tasks a claimer could take right now.

    `for_ai` = (AI id, its labels): the claim is made for that AI, so every task label
    `ai:<x>` must name it (x is its id or one of its labels), as the router decides.
    """
    parts = [
        "t.status = 'queued'",
        "(t.next_run_at IS NULL OR t.next_run_at <= :now)",
        # No held lock overlaps this task's globs.
        "NOT EXISTS (SELECT 1 FROM task_conflicts c JOIN locks l ON l.task_id = c.other_id WHERE c.task_id = t.id)",
        # Exclusive tasks run alone: no exclusive task may be held, and an exclusive one needs an
        # empty floor. Written as two uncorrelated tests so the database evaluates each once,
        # not once per queued row (PostgreSQL: 854 → 65 ms for `ready` on 100k tasks).
        f"NOT EXISTS (SELECT 1 FROM tasks x WHERE x.status IN {HELD} AND x.exclusive = 1)",
        f"(t.exclusive = 0 OR NOT EXISTS (SELECT 1 FROM tasks x WHERE x.status IN {HELD}))",
    ]
    params: dict[str, Any] = {}
    if capabilities is not None:
        parts.append(json_subset(tx, "t.required_capabilities", "caps"))
        params["caps"] = as_json_list(capabilities)
    if labels:
        parts.append(json_superset(tx, "t.labels", "labels"))
        params["labels"] = as_json_list(labels)
    if task_id is not None:
        parts.append("t.id = :only_id")
        params["only_id"] = task_id
    if refused_for is not None:
        # A refusal stands until the task or the policy changes: skip it instead of asking again.
        parts.append(
            "NOT EXISTS (SELECT 1 FROM decisions d WHERE d.task_id = t.id AND d.action = 'claim'"
            " AND d.ai = :refused_ai AND d.effect != 'allow' AND d.policy_digest = :refused_digest"
            " AND d.ts >= t.updated_at)"
        )
        params["refused_ai"], params["refused_digest"] = refused_for
    if for_ai is not None:
        parts.append(ai_labels_met(tx, "t.labels", "ai_accepts"))
        params["ai_accepts"] = as_json_list(ai_label_values(*for_ai))
    return " AND ".join(parts), params


def ai_label_values(ai_id: str, ai_labels: list[str] | None) -> list[str]:
    """The `ai:<x>` task labels an AI satisfies: its id and each of its labels."""
    return sorted({f"ai:{ai_id}", *(f"ai:{label}" for label in ai_labels or [])})


def ai_labels_met(tx: Tx, column: str, param: str) -> str:
    """SQL true when every `ai:` label in the JSON array `column` is in the array bound to `param`."""
    if tx.dialect == "sqlite":
        return (
            f"NOT EXISTS (SELECT 1 FROM json_each({column}) j WHERE substr(j.value, 1, 3) = 'ai:'"
            f" AND j.value NOT IN (SELECT value FROM json_each(:{param})))"
        )
    return (
        f"NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST({column} AS jsonb)) j(v)"
        f" WHERE substr(j.v, 1, 3) = 'ai:' AND j.v NOT IN (SELECT jsonb_array_elements_text(CAST(:{param} AS jsonb))))"
    )


CLAIM_ORDER = "ORDER BY t.priority DESC, t.created_at, t.id"
