"""How a task is shown: the table columns and the human view (shared by `aictl task` and `aictl schedule`)."""

from __future__ import annotations

import json
from typing import Any

from aictl.cli.output import ago, cell

TASK_COLUMNS = [
    ("id", lambda t: t.id),
    ("status", lambda t: t.status),
    ("pri", lambda t: t.priority),
    ("title", lambda t: t.title),
    ("labels", lambda t: t.labels),
    ("deps", lambda t: t.dependencies),
    ("locks", lambda t: t.lock_paths),
    # Only a held lease has an owner and epoch now; `task get` shows the last holder of the others.
    ("owner", lambda t: t.owner if t.held else None),
    ("epoch", lambda t: t.lease_epoch if t.held else None),
    ("lease", lambda t: ago(t.lease_expires_at)),
]


def task_human(t: Any) -> str:
    lines = [f"task {t.id}: {t.title}", f"  status:       {t.status}", f"  priority:     {t.priority}"]
    if t.description:
        lines.append(f"  description:  {t.description}")
    for label, value in (
        ("type", t.type),
        ("labels", t.labels),
        ("capabilities", t.required_capabilities),
        ("depends on", t.dependencies),
        ("locks", t.lock_paths + (["(exclusive)"] if t.exclusive else [])),
        *holder(t),
        ("attempts", f"{t.attempts}/{t.max_attempts}"),
        ("next run", ago(t.next_run_at)),
        ("command", t.command),
        ("verify", t.verify),
    ):
        if value not in (None, [], "-", 0) or label == "attempts":
            lines.append(f"  {label + ':':<13} {cell(value)}")
    if t.result is not None:
        lines.append(f"  result:       {json.dumps(t.result)}")
    return "\n".join(lines)


def messages_human(messages: list[dict[str, Any]], shown: int = 5) -> str:
    """The latest messages to and from a task, one line each (all of them: aictl task messages ID)."""
    if not messages:
        return ""
    lines = [f"  messages:     {len(messages)}" + (f" (the last {shown})" if len(messages) > shown else "")]
    for m in messages[-shown:]:
        origin = f"task {m['from_task_id']}" if m["from_task_id"] else m["sender"]
        unread = "" if m["read_at"] else " [unread]"
        lines.append(f"    {ago(m['created_at'])} from {origin}{unread}: {' '.join(m['body'].split())[:120]}")
    return "\n" + "\n".join(lines)


def holder(t: Any) -> list[tuple[str, Any]]:
    """Who holds the lease now; of a task nobody holds, who held it last (not shown as if still held)."""
    if t.held:
        return [("owner", t.owner), ("ai", t.ai), ("lease epoch", t.lease_epoch), ("expires", ago(t.lease_expires_at))]
    return [("last owner", t.owner), ("last ai", t.ai), ("last epoch", t.lease_epoch)]
