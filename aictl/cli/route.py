"""`aictl route ID`: which AI would take a task now, and why each other one would not."""

import sys
from typing import Any

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt, TaskIdArg
from aictl.cli.output import cell, info
from aictl.domain.errors import ExitCode


def _human(route: Any) -> str:
    head = f"task {route.task_id} ({route.title}, {route.status}): " + (
        f"{route.chosen} would take it" if route.chosen else "no AI can take it"
    )
    lines = [head]
    for c in route.candidates:
        verdict = f"#{c.rank}" if c.eligible else "no"
        why = "; ".join(c.reasons + c.notes) or "eligible"
        lines.append(f"  {verdict:<4} {c.ai:<20} {c.connector:<12} {c.running}/{c.max_concurrency}  {why}")
    return "\n".join(lines)


def route(task_id: TaskIdArg, output: OutputOpt = None) -> None:
    """Which AI would take the task and why each other would not. Exit 3 when no AI can take it.

    Nothing is claimed and no decision is recorded: routing is a question.
    """
    from aictl.agents.router import Router

    out = state.output(output)
    router = Router(state.store(), state.settings(), policy=state.gate())
    result = router.explain(task_id)
    if out.mode == "table":
        sys.stdout.write(_human(result) + "\n")
        if not result.candidates:
            info("no AI is registered; add one with: aictl ai register claude-1 --connector claude-code")
    else:
        out.emit(result, name=lambda r: cell(r.chosen))
    if result.chosen is None:
        raise typer.Exit(ExitCode.NOT_FOUND)
