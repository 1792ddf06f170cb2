"""`aictl workspace …`: task workspaces (git worktrees) on this machine."""

from typing import Annotated

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import info, iso

app = noun_app("Task workspaces (git worktrees) on this machine.")


def _manager():
    from aictl.sandbox.workspace import WorkspaceManager

    return WorkspaceManager.from_settings(state.settings())


@app.command("list")
def list_(output: OutputOpt = None) -> None:
    """Workspaces present, with their task, attempt and branch."""
    out = state.output(output)
    out.emit(
        _manager().list(),
        name=lambda w: w.path,
        columns=[
            ("task", lambda w: w.task_id),
            ("epoch", lambda w: w.lease_epoch),
            ("branch", lambda w: w.branch),
            ("created", lambda w: iso(w.created_at)),
            ("path", lambda w: w.path),
        ],
    )


@app.command("prune")
def prune(
    branches: Annotated[
        bool,
        typer.Option(
            "--branches",
            help="Also delete the branches (aictl/task-N) and base refs of merged tasks, which aictl merge "
            "normally deletes itself.",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Remove workspaces no live lease needs (kept failures of earlier attempts, crashed runs, half-made ones).

    With --dry-run, list the workspaces it would remove (half-made leftovers show up only when pruning).
    """
    from aictl.execution.executor import workspace_keep_rule

    out = state.output(output)
    keep = workspace_keep_rule(state.store())
    mgr = _manager()
    removed = [w for w in mgr.list() if not keep(w.task_id, w.lease_epoch)] if dry_run else mgr.prune(keep)
    pruned: list[int] = []
    if branches:
        merged = {t.id for t in state.queries().list(statuses=["merged"])}
        if dry_run:
            pruned = sorted(t for t in mgr.task_branches() if t in merged)
        else:
            pruned = mgr.prune_branches(merged.__contains__)
    if out.mode == "table":
        verb = "would remove" if dry_run else "removed"
        more = f", the branches of {len(pruned)} merged task(s)" if branches else ""
        info(f"{verb} {len(removed)} workspace(s){more}")
    rows = [{**w.model_dump(mode="json"), "kind": "workspace"} for w in removed]
    rows += [{"task_id": t, "kind": "branch", "branch": f"aictl/task-{t}", "path": None} for t in pruned]
    out.emit(
        rows,
        name=lambda r: r["path"] or r["branch"],
        columns=[
            ("task", lambda r: r["task_id"]),
            ("kind", lambda r: r["kind"]),
            ("epoch", lambda r: r.get("lease_epoch")),
            ("path", lambda r: r["path"] or r["branch"]),
        ],
    )
