"""Recurring tasks: a cron expression and a task spec; each firing creates one task.

`fire_due` is the sweep (run by `aictl task reap`, `aictl schedule fire` and the
daemon). Each due schedule is handled in ONE write transaction: the row is taken
(SQLite: BEGIN IMMEDIATE serialises writers; PostgreSQL: `FOR UPDATE SKIP
LOCKED`), its task is created through TaskService (audit event included), and
`last_task_id` / `next_at` move on — so concurrent sweeps in several processes
fire each occurrence exactly once. `next_at` becomes the first occurrence after
*now*: occurrences missed while nobody swept fire once, not once each. While the
schedule's previous task is still live (queued, blocked, claimed, running,
awaiting approval) the firing is skipped and recorded as such.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, field_serializer

from aictl.audit.events import append_event, canonical_json
from aictl.domain.errors import AictlError, Conflict, NotFound, UsageError
from aictl.domain.models import ts_to_dt
from aictl.store.base import Store, Tx
from aictl.tasks import cron as cronlib
from aictl.tasks.service import TaskService, TaskSpec
from aictl.tasks.sql import LIVE

__all__ = ["Schedule", "ScheduleService", "fire_due"]


class Schedule(BaseModel):
    id: int
    cron: str
    title: str
    spec: dict[str, Any]
    enabled: bool
    next_at: float
    last_task_id: int | None = None
    created_at: float
    updated_at: float

    @field_serializer("next_at", "created_at", "updated_at")
    def _iso(self, v: float) -> str:
        return ts_to_dt(v).isoformat(timespec="seconds")


def _schedule(row: dict[str, Any]) -> Schedule:
    spec = json.loads(row["spec"])
    return Schedule(
        id=row["id"],
        cron=row["cron"],
        title=spec.get("title", ""),
        spec=spec,
        enabled=bool(row["enabled"]),
        next_at=row["next_at"],
        last_task_id=row["last_task_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class ScheduleService:
    def __init__(self, store: Store, settings: Any, *, clock: Callable[[], float] = time.time, policy: Any = None):
        self.store = store
        self.settings = settings
        self.actor: str = settings.actor
        self.clock = clock
        self.policy = policy

    def _row(self, tx: Tx, schedule_id: int, lock: bool = False) -> dict[str, Any]:
        suffix = " FOR UPDATE" if lock and tx.dialect == "postgresql" else ""
        row = tx.one(f"SELECT * FROM schedules WHERE id = :id{suffix}", {"id": schedule_id})
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found", hint="list schedules with: aictl schedule list")
        return row

    def _event(
        self,
        tx: Tx,
        now: float,
        action: str,
        schedule_id: int,
        task_id: int | None = None,
        before: dict | None = None,
        after: dict | None = None,
        **data: Any,
    ) -> None:
        append_event(
            tx,
            ts=now,
            actor=self.actor,
            action=action,
            task_id=task_id,
            before=before,
            after=after,
            data={"schedule_id": schedule_id, **{k: v for k, v in data.items() if v is not None}},
        )

    # -- create, read -----------------------------------------------------------------

    def create(self, spec: TaskSpec, cron: str, *, tz: str | None = None, dry_run: bool = False) -> Schedule:
        """A schedule that creates a task from `spec` each time `cron` fires (first: the next occurrence)."""
        from aictl.tasks.globs import GlobError, normalize_patterns

        expr = cronlib.parse(cron, tz)
        bad = [d for d in spec.depends_on if isinstance(d, str) and not d.isdigit()]
        if bad:
            raise UsageError(f"a scheduled task cannot depend on batch key {bad[0]!r}; use task ids")
        try:
            normalize_patterns(spec.lock_paths)
        except GlobError as e:
            raise UsageError(f"invalid lock path for task {spec.title!r}: {e}") from None
        body = spec.model_dump(mode="json", exclude={"key"})

        def run(tx: Tx, now: float) -> Schedule:
            for d in spec.depends_on:
                if tx.one("SELECT 1 AS x FROM tasks WHERE id = :id", {"id": int(d)}) is None:
                    raise NotFound(f"task {d} not found (named in depends_on)", hint="list tasks with: aictl task list")
            next_at = expr.next_after(now)
            row = tx.row(
                "INSERT INTO schedules (cron, spec, enabled, next_at, created_at, updated_at)"
                " VALUES (:cron, :spec, 1, :next, :now, :now) RETURNING *",
                {"cron": expr.text, "spec": canonical_json(body), "next": next_at, "now": now},
            )
            self._event(
                tx,
                now,
                "schedule_create",
                row["id"],
                after={"enabled": True},
                cron=expr.text,
                title=spec.title,
                next_at=next_at,
            )
            return _schedule(row)

        return self._write(run, dry_run)

    def list(self, *, enabled: bool | None = None) -> list[Schedule]:
        sql = "SELECT * FROM schedules"
        params: dict[str, Any] = {}
        if enabled is not None:
            sql += " WHERE enabled = :e"
            params["e"] = int(enabled)
        with self.store.read() as tx:
            return [_schedule(r) for r in tx.all(sql + " ORDER BY id", params)]

    def get(self, schedule_id: int) -> Schedule:
        with self.store.read() as tx:
            return _schedule(self._row(tx, schedule_id))

    # -- changes ----------------------------------------------------------------------

    def pause(self, schedule_id: int, *, dry_run: bool = False) -> Schedule:
        return self._set_enabled(schedule_id, False, dry_run)

    def resume(self, schedule_id: int, *, dry_run: bool = False) -> Schedule:
        """Enable again; the next firing is the next occurrence from now (nothing missed while paused fires)."""
        return self._set_enabled(schedule_id, True, dry_run)

    def _set_enabled(self, schedule_id: int, enabled: bool, dry_run: bool) -> Schedule:
        verb = "resume" if enabled else "pause"

        def run(tx: Tx, now: float) -> Schedule:
            cur = self._row(tx, schedule_id, lock=True)
            if bool(cur["enabled"]) == enabled:
                raise Conflict(
                    f"cannot {verb} schedule {schedule_id}: it is already {'active' if enabled else 'paused'}",
                    hint=f"see it with: aictl schedule get {schedule_id}",
                )
            next_at = cronlib.parse(cur["cron"]).next_after(now) if enabled else cur["next_at"]
            row = tx.row(
                "UPDATE schedules SET enabled = :e, next_at = :n, updated_at = :now WHERE id = :id RETURNING *",
                {"e": int(enabled), "n": next_at, "now": now, "id": schedule_id},
            )
            self._event(
                tx,
                now,
                f"schedule_{verb}",
                schedule_id,
                before={"enabled": not enabled},
                after={"enabled": enabled},
                next_at=next_at if enabled else None,
            )
            return _schedule(row)

        return self._write(run, dry_run)

    def remove(self, schedule_id: int, *, dry_run: bool = False) -> Schedule:
        """Delete the schedule; the tasks it created stay (with their schedule_id)."""

        def run(tx: Tx, now: float) -> Schedule:
            cur = self._row(tx, schedule_id, lock=True)
            tx.run("DELETE FROM schedules WHERE id = :id", {"id": schedule_id})
            self._event(
                tx,
                now,
                "schedule_remove",
                schedule_id,
                before={"enabled": bool(cur["enabled"])},
                cron=cur["cron"],
                title=json.loads(cur["spec"]).get("title"),
            )
            return _schedule(cur)

        return self._write(run, dry_run)

    # -- the sweep ----------------------------------------------------------------------

    def fire_due(self, now: float | None = None) -> builtins.list[int]:
        """Fire every schedule due at `now` (default: the clock); return the ids of the tasks created."""
        now = self.clock() if now is None else now
        tasks = TaskService(self.store, self.settings, clock=lambda: now, policy=self.policy)
        created: list[int] = []
        failed: set[int] = set()
        while True:
            row = None
            try:
                with self.store.write() as tx:
                    row = self._next_due(tx, now, failed)
                    if row is None:
                        return created
                    task_id = self._fire(tx, now, row, tasks)
            except AictlError as e:
                if row is None:
                    raise  # the store itself failed, not this schedule
                # This schedule cannot fire (e.g. a dependency it names is gone): record it and move on,
                # so one broken schedule neither stops the sweep nor loops it.
                failed.add(row["id"])
                self._record_error(now, row["id"], e)
                continue
            if task_id is not None:
                created.append(task_id)

    def _next_due(self, tx: Tx, now: float, exclude: set[int]) -> dict[str, Any] | None:
        skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
        not_in = f" AND id NOT IN ({', '.join(str(int(i)) for i in sorted(exclude))})" if exclude else ""
        return tx.one(
            f"SELECT * FROM schedules WHERE enabled = 1 AND next_at <= :now{not_in} ORDER BY next_at, id LIMIT 1{skip}",
            {"now": now},
        )

    def _fire(self, tx: Tx, now: float, row: dict[str, Any], tasks: TaskService) -> int | None:
        expr = cronlib.parse(row["cron"])
        next_at = expr.next_after(now)
        live = None
        if row["last_task_id"] is not None:
            live = tx.one(
                f"SELECT id, status FROM tasks WHERE id = :id AND status IN {LIVE}", {"id": row["last_task_id"]}
            )
        if live is not None:
            tx.run(
                "UPDATE schedules SET next_at = :n, updated_at = :now WHERE id = :id",
                {"n": next_at, "now": now, "id": row["id"]},
            )
            self._event(
                tx,
                now,
                "schedule_skip",
                row["id"],
                task_id=live["id"],
                due_at=row["next_at"],
                next_at=next_at,
                reason=f"task {live['id']} from the previous firing is still {live['status']}",
            )
            return None
        spec = TaskSpec.model_validate(json.loads(row["spec"]))
        task = tasks.create_in(tx, now, [spec])[0]
        tx.run("UPDATE tasks SET schedule_id = :s WHERE id = :t", {"s": row["id"], "t": task.id})
        tx.run(
            "UPDATE schedules SET last_task_id = :t, next_at = :n, updated_at = :now WHERE id = :id",
            {"t": task.id, "n": next_at, "now": now, "id": row["id"]},
        )
        self._event(tx, now, "schedule_fire", row["id"], task_id=task.id, due_at=row["next_at"], next_at=next_at)
        return task.id

    def _record_error(self, now: float, schedule_id: int, err: AictlError) -> None:
        from aictl.logging import get_logger

        get_logger("aictl.schedules").error("schedule could not fire", schedule_id=schedule_id, error=err.message)
        with self.store.write() as tx:
            row = tx.one("SELECT * FROM schedules WHERE id = :id", {"id": schedule_id})
            if row is None or row["next_at"] > now:
                return  # removed, or another sweep already moved it
            try:
                next_at = cronlib.parse(row["cron"]).next_after(now)
            except AictlError:
                next_at = now + 86400.0
            tx.run(
                "UPDATE schedules SET next_at = :n, updated_at = :now WHERE id = :id",
                {"n": next_at, "now": now, "id": schedule_id},
            )
            self._event(
                tx, now, "schedule_error", schedule_id, due_at=row["next_at"], next_at=next_at, error=err.message
            )

    def _write(self, fn: Callable[[Tx, float], Any], dry_run: bool) -> Any:
        class _DryRun(Exception):
            pass

        box: list[Any] = []
        try:
            with self.store.write() as tx:
                box.append(fn(tx, self.clock()))
                if dry_run:
                    raise _DryRun()
        except _DryRun:
            pass
        return box[0]


def fire_due(store: Store, settings: Any, now: float | None = None, *, policy: Any = None) -> list[int]:
    """Fire the schedules due at `now`; the ids of the tasks created. Safe to run from many processes at once."""
    return ScheduleService(store, settings, policy=policy).fire_due(now)
