"""`aictl merge [ID…]` lands done tasks on the integration branch; `aictl merge status` shows the queue."""

from typing import Annotated

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt
from aictl.cli.output import info
from aictl.domain.errors import UsageError


def merge(
    ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Task ids to merge (default: every done task, in DAG order), or `status`.", show_default=False
        ),
    ] = None,
    into: Annotated[
        str | None,
        typer.Option("--into", help="Target branch (default: integration_branch, else the checked-out one)."),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", min=1, help="Entries verified together, bisected on failure (default: merge_batch)."),
    ] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Merge done tasks onto the integration branch: policy, rebase (or merge), verify, then move the branch.

    Exit 0 when everything merged (or nothing was left), 1 when an entry was sent back (conflict or failed
    verify, recorded on the task), 5 when policy refused a merge. `aictl merge status` lists the queue.
    """
    from aictl.merge.queue import MergeQueue

    out = state.output(output)
    queue = MergeQueue(state.store(), state.settings(), policy=state.gate())
    if ids and ids[0] == "status":
        if len(ids) > 1:
            raise UsageError("`aictl merge status` takes no task ids", hint="aictl merge status --into BRANCH")
        st = queue.status(into)
        if out.mode == "table":
            info(
                f"target {st.into} at {(st.tip or '')[:12]}; {len(st.items)} entr{'y' if len(st.items) == 1 else 'ies'}"
            )
        out.emit(
            st.items if out.mode == "table" else st,
            name=lambda i: i.task_id,
            columns=[
                ("task", lambda i: i.task_id),
                ("state", lambda i: i.state),
                ("commit", lambda i: (i.commit or "")[:12]),
                ("title", lambda i: i.title),
                ("reason", lambda i: i.reason),
            ],
        )
        return
    try:
        task_ids = [int(i) for i in ids or []]
    except ValueError:
        raise UsageError(f"not a task id: {ids}", hint="aictl merge 12 13, or aictl merge status") from None
    report = queue.run(task_ids or None, into=into, dry_run=dry_run, batch=batch)
    if out.mode == "table":
        info(
            f"{report.into}: {(report.target_before or '')[:12]} -> {(report.target_after or '')[:12]}"
            + (
                " (dry run: nothing moved)"
                if dry_run
                else ""
                if report.target_after != report.target_before
                else " (unchanged)"
            )
        )
        if report.worktree == "left_dirty":
            info(f"your working tree is on {report.into} with local changes: left alone (git merge --ff-only later)")
        elif report.worktree == "fast_forwarded":
            info(f"your working tree on {report.into} was fast-forwarded")
    out.emit(
        report.entries if out.mode == "table" else report,
        name=lambda e: e.task_id,
        columns=[
            ("task", lambda e: e.task_id),
            ("outcome", lambda e: e.outcome),
            ("commit", lambda e: (e.result_commit or "")[:12]),
            ("reason", lambda e: e.reason),
        ],
    )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
