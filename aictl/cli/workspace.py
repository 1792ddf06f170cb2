"""`aictl workspace …`: task workspaces (git worktrees) on this machine."""

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import info, iso

app = noun_app("Task workspaces (git worktrees) on this machine.")


def _manager():
    from aictl.sandbox.workspace import WorkspaceManager

    s = state.settings()
    return WorkspaceManager(s.project_root, s.project_home / "workspaces")


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
def prune(dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Remove workspaces no live lease needs (kept failures of earlier attempts, crashed runs, half-made ones).

    With --dry-run, list the workspaces it would remove (half-made leftovers show up only when pruning).
    """
    from aictl.execution.executor import workspace_keep_rule

    out = state.output(output)
    keep = workspace_keep_rule(state.store())
    if dry_run:
        removed = [w for w in _manager().list() if not keep(w.task_id, w.lease_epoch)]
    else:
        removed = _manager().prune(keep)
    if out.mode == "table":
        info(f"{'would remove' if dry_run else 'removed'} {len(removed)} workspace(s)")
    out.emit(
        removed,
        name=lambda w: w.path,
        columns=[("task", lambda w: w.task_id), ("epoch", lambda w: w.lease_epoch), ("path", lambda w: w.path)],
    )
