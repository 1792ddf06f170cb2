"""Messages between agents: to a task (its running attempt reads them; a task not running gets them in its next
prompt) or to an AI. Stored in the `messages` table, each send audited as a `message` event."""

from __future__ import annotations

import time
from typing import Any

from aictl.audit.events import append_event
from aictl.domain.errors import NotFound, UsageError

MAX_BODY = 16_000  # a message is a note between agents, not a file: attach evidence for more


def send(
    store: Any,
    *,
    sender: str,
    body: str,
    to_task: int | None = None,
    to_ai: str | None = None,
    from_task: int | None = None,
    epoch: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    if (to_task is None) == (to_ai is None):
        raise UsageError("a message goes to exactly one of: a task (to_task) or an AI (to_ai)")
    if not body.strip():
        raise UsageError("the message is empty")
    if len(body) > MAX_BODY:
        raise UsageError(
            f"the message is {len(body)} characters; the limit is {MAX_BODY}",
            hint="attach long content as evidence and send its digest",
        )
    now = time.time() if now is None else now
    with store.write() as tx:
        if to_task is not None and tx.one("SELECT id FROM tasks WHERE id = :id", {"id": to_task}) is None:
            raise NotFound(f"task {to_task} not found", hint="list tasks with: aictl task list")
        row = tx.one(
            "INSERT INTO messages (to_task_id, to_ai, from_task_id, sender, body, created_at)"
            " VALUES (:t, :a, :f, :s, :b, :now) RETURNING *",
            {"t": to_task, "a": to_ai, "f": from_task, "s": sender, "b": body, "now": now},
        )
        append_event(
            tx,
            ts=now,
            actor=sender,
            action="message",
            task_id=to_task if to_task is not None else from_task,
            lease_epoch=epoch,
            data={
                "message_id": row["id"],
                "to_task": to_task,
                "to_ai": to_ai,
                "from_task": from_task,
                "chars": len(body),
            },
        )
    return dict(row)


def read(store: Any, task_id: int, *, epoch: int, ai: str | None = None, now: float | None = None) -> list[dict]:
    """The unread messages to a task (and to its AI), marked read by this attempt."""
    now = time.time() if now is None else now
    with store.write() as tx:
        to_ai = " OR to_ai = :ai" if ai else ""  # no NULL parameter: PostgreSQL cannot type one
        rows = [
            dict(r)
            for r in tx.all(
                f"SELECT * FROM messages WHERE read_at IS NULL AND (to_task_id = :t{to_ai}) ORDER BY id",
                {"t": task_id, "ai": ai} if ai else {"t": task_id},
            )
        ]
        _mark(tx, rows, now, epoch)
    return rows


def pending(store: Any, task_id: int) -> list[dict[str, Any]]:
    with store.read() as tx:
        return [
            dict(r)
            for r in tx.all(
                "SELECT * FROM messages WHERE read_at IS NULL AND to_task_id = :t ORDER BY id", {"t": task_id}
            )
        ]


def mark_delivered(store: Any, messages: list[dict[str, Any]], epoch: int, now: float | None = None) -> None:
    with store.write() as tx:
        _mark(tx, messages, time.time() if now is None else now, epoch)


def _mark(tx: Any, rows: list[dict[str, Any]], now: float, epoch: int) -> None:
    for r in rows:
        tx.run(
            "UPDATE messages SET read_at = :now, read_epoch = :e WHERE id = :id",
            {"now": now, "e": epoch, "id": r["id"]},
        )
        r["read_at"], r["read_epoch"] = now, epoch


def history(store: Any, task_id: int) -> list[dict[str, Any]]:
    """Every message to or from a task, oldest first."""
    with store.read() as tx:
        if tx.one("SELECT id FROM tasks WHERE id = :id", {"id": task_id}) is None:
            raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
        return [
            dict(r)
            for r in tx.all(
                "SELECT * FROM messages WHERE to_task_id = :t OR from_task_id = :t ORDER BY id", {"t": task_id}
            )
        ]


def prompt_section(messages: list[dict[str, Any]]) -> str:
    """Messages that waited for this attempt, as a part of its prompt."""
    lines = ["Messages sent to this task while it was not running (read them before you start):"]
    for m in messages:
        origin = f"task {m['from_task_id']} ({m['sender']})" if m.get("from_task_id") else m["sender"]
        lines.append(f"- from {origin}: {m['body']}")
    return "\n".join(lines)
