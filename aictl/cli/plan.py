"""`aictl plan SPEC.md`: a planning AI turns a specification into a task DAG; `--apply` creates it."""

from pathlib import Path
from typing import Annotated

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt
from aictl.cli.output import info
from aictl.domain.errors import ConfigError


def plan(
    spec: Annotated[Path, typer.Argument(help="The specification (Markdown or text).", show_default=False)],
    ai: Annotated[
        str | None, typer.Option("--ai", help="The registered AI that plans (default: the router's pick).")
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Create the planned tasks, in one transaction.")] = False,
    output: OutputOpt = None,
) -> None:
    """Ask a planning AI for a task DAG (titles, descriptions, dependencies, locks, capabilities, verify commands).

    The plan is validated (no cycles, unknown keys or bad lock globs) and shown as a tree; with --apply its tasks
    are created in one transaction. The planning run itself is a task (label `planning`) with its evidence.
    """
    from aictl.domain import limits
    from aictl.workflows.plan import apply_tasks, plan_tasks, tree

    out = state.output(output)
    try:
        text = spec.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{spec}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if len(text) > limits.DESCRIPTION_MAX - 4096:
        raise ConfigError(f"{spec}: {len(text)} characters; a specification may have {limits.DESCRIPTION_MAX - 4096}")
    store, settings, gate = state.store(), state.settings(), state.gate()
    draft, specs = plan_tasks(store, settings, spec_text=text, spec_name=spec.name, ai=ai, policy=gate)
    created = apply_tasks(store, settings, specs, policy=gate) if apply else []
    if out.mode == "table":
        info(f"plan by {draft.ai or 'the router'} (task {draft.task_id}): {len(specs)} tasks")
        typer.echo(tree(specs))
        info(f"created tasks {', '.join(str(t.id) for t in created)}" if apply else "create them with: --apply")
        return
    out.emit(
        {
            "planning_task": draft.task_id,
            "ai": draft.ai,
            "tasks": [s.model_dump() for s in specs],
            "created": [t.id for t in created],
        },
        name=lambda r: r["planning_task"],
    )
