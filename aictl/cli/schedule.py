"""`aictl schedule …`: recurring tasks (created with `aictl task create TITLE --every CRON`)."""

import sys
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import ago, info
from aictl.domain.errors import UsageError

app = noun_app("Recurring tasks: list, pause, resume and remove schedules.")

ScheduleIdArg = Annotated[int, typer.Argument(help="Schedule id.", show_default=False)]


def _local(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="minutes")


COLUMNS = [
    ("id", lambda s: s.id),
    ("state", lambda s: "active" if s.enabled else "paused"),
    ("cron", lambda s: s.cron),
    ("title", lambda s: s.title),
    ("next run", lambda s: f"{_local(s.next_at)} ({ago(s.next_at)})" if s.enabled else "-"),
    ("last task", lambda s: s.last_task_id),
]


def _human(s: Any) -> str:
    lines = [
        f"schedule {s.id}: {s.title}",
        f"  cron:      {s.cron}",
        f"  state:     {'active' if s.enabled else 'paused'}",
    ]
    if s.enabled:
        lines.append(f"  next run:  {_local(s.next_at)} ({ago(s.next_at)})")
    if s.last_task_id is not None:
        lines.append(f"  last task: {s.last_task_id}  (aictl task get {s.last_task_id})")
    return "\n".join(lines)


def _service() -> Any:
    from aictl.tasks.schedules import ScheduleService

    return ScheduleService(state.store(), state.settings())


def _emit(out: Any, schedule: Any, dry_run: bool = False) -> None:
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(schedule, columns=COLUMNS, human=_human)


def create_schedule(out: Any, spec: Any, every: str, tz: str | None, dry_run: bool) -> None:
    """`aictl task create … --every CRON`: the schedule, its next run, and how to manage it."""
    schedule = _service().create(spec, every, tz=tz, dry_run=dry_run)
    _emit(out, schedule, dry_run)
    if out.mode == "table" and not dry_run:
        info(
            f"a task is created each time it fires (by aictl task reap or the daemon); "
            f"pause with: aictl schedule pause {schedule.id}"
        )


@app.command("list")
def list_(
    paused: Annotated[
        bool | None, typer.Option("--paused/--active", help="Only paused / only active ones.", show_default=False)
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Schedules with their next run. An empty list is not an error."""
    out = state.output(output)
    out.emit(_service().list(enabled=None if paused is None else not paused), columns=COLUMNS)


@app.command("get")
def get(schedule_id: ScheduleIdArg, output: OutputOpt = None) -> None:
    """Show one schedule."""
    _emit(state.output(output), _service().get(schedule_id))


@app.command("pause")
def pause(schedule_id: ScheduleIdArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Stop firing until resumed."""
    _emit(state.output(output), _service().pause(schedule_id, dry_run=dry_run), dry_run)


@app.command("resume")
def resume(schedule_id: ScheduleIdArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Fire again, from the next occurrence (occurrences missed while paused do not fire)."""
    _emit(state.output(output), _service().resume(schedule_id, dry_run=dry_run), dry_run)


@app.command("remove")
def remove(
    schedule_id: ScheduleIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm the removal.")] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Delete a schedule (the tasks it created stay)."""
    out = state.output(output)
    if not yes and not dry_run:
        if not sys.stdin.isatty():
            raise UsageError(
                f"removing schedule {schedule_id} needs --yes",
                hint=f"aictl schedule remove {schedule_id} --yes (or pause it: aictl schedule pause)",
            )
        if not typer.confirm(f"remove schedule {schedule_id}?"):
            raise typer.Exit(2)
    _emit(out, _service().remove(schedule_id, dry_run=dry_run), dry_run)


@app.command("fire")
def fire(dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Fire the schedules that are due now (aictl task reap and the daemon do this too); print the tasks created.

    With --dry-run, print the schedules that are due instead (each would create one task).
    """
    import time

    from aictl.cli.taskview import TASK_COLUMNS
    from aictl.tasks.schedules import fire_due

    out = state.output(output)
    if dry_run:
        now = time.time()
        due = [s for s in _service().list(enabled=True) if s.next_at <= now]
        if out.mode == "table":
            info(f"dry run: {len(due)} schedule(s) due; nothing was fired")
        out.emit(due, columns=COLUMNS)
        return
    ids = fire_due(state.store(), state.settings())
    if out.mode == "table":
        info(f"fired {len(ids)} due schedule(s)")
    queries = state.queries()
    out.emit([queries.get(i) for i in ids], columns=TASK_COLUMNS)
