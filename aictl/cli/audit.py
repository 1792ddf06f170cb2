"""`aictl audit …`: read the append-only event log."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt
from aictl.cli.output import iso
from aictl.domain.errors import NotFound

app = typer.Typer(help="Read the audit log of every state change.", no_args_is_help=True)

EVENT_COLUMNS = [
    ("id", lambda e: e.id),
    ("time", lambda e: iso(e.ts)),
    ("actor", lambda e: e.actor),
    ("action", lambda e: e.action),
    ("task", lambda e: e.task_id),
    ("epoch", lambda e: e.lease_epoch),
    ("change", lambda e: f"{(e.before or {}).get('status', '')}→{(e.after or {}).get('status', '')}"),
    ("data", lambda e: json.dumps(e.data, sort_keys=True) if e.data else None),
]


@app.command("log")
def log(
    task_id: Annotated[Optional[int], typer.Option("--task", "-t", help="Only events of this task.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-L", min=1, help="Only the last N events.")] = None,
    output: OutputOpt = None,
) -> None:
    """Events in order (oldest first)."""
    out = state.output(output)
    out.emit(state.queries().events(task_id=task_id, limit=limit), columns=EVENT_COLUMNS)


@app.command("show")
def show(event_id: Annotated[int, typer.Argument(help="Event id.")], output: OutputOpt = None) -> None:
    """One event in full."""
    out = state.output(output)
    events = state.queries().events(after_id=event_id - 1, limit=None)
    event = next((e for e in events if e.id == event_id), None)
    if event is None:
        raise NotFound(f"event {event_id} not found", hint="list events with: aictl audit log")
    out.emit(event, columns=EVENT_COLUMNS)
