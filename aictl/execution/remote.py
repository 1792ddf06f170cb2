"""What crosses the shared git remote (`remote:` configured) around one run, both ways.

Out: a done task's branch and start ref are pushed before the task completes, so a dependent task claimed
on another host can always fetch what it builds on.
In: a task starts from the remote's integration branch (what the merge queue landed, wherever it ran) plus
its unmerged dependencies' branches, fetched when they are not here yet.

The policy decides `push` first (context: remote, branch). Denied: the task completes and its result says the
branch stayed local; a dependent on another host then fails its start step naming the missing branch. A
remote that refuses or does not answer fails the attempt as transient (the work is redone later) rather than
completing a task nobody else can build on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.policy.gate import PolicyGate
    from aictl.sandbox.workspace import WorkspaceManager
    from aictl.store.base import Store


def publish(
    store: Store,
    settings: Settings,
    policy: PolicyGate | None,
    workspaces: WorkspaceManager,
    task_id: int,
    *,
    ai: str | None,
    actor: str,
    epoch: int,
    decisions: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """What the task's result says about where its branch went; None without a remote. RemoteError on failure."""
    name = getattr(settings, "remote", None)
    if not name:
        return None
    from aictl.sandbox.remote import Remote
    from aictl.sandbox.workspace import branch_name

    branch = branch_name(task_id)
    if policy is not None:
        from aictl.policy.records import write_record
        from aictl.tasks.queries import task_row
        from aictl.tasks.service import task_facts

        with store.read() as tx:
            row = task_row(tx, task_id)
        record = policy.check(
            "push",
            ai=ai or actor,
            actor=actor,
            task=task_facts(row),
            epoch=epoch,
            context={"remote": name, "branch": branch},
        )
        with store.write() as tx:
            write_record(tx, record)
        decisions.append({"action": "push", "decision_id": record.decision_id, "effect": record.effect})
        if record.effect != "allow":
            why = "; ".join(record.reasons) or f"policy: {record.effect}"
            return {"remote": name, "branch": branch, "pushed": False, "reason": f"kept local: {why}"}
    Remote(workspaces, name).push_task(task_id)
    return {"remote": name, "branch": branch, "pushed": True}


def start_inputs(
    settings: Settings, workspaces: WorkspaceManager, base: str, deps: list[tuple[int, str, str]]
) -> tuple[str, list[tuple[int, str]]]:
    """(base, deps to fold) for a task's start point. `deps`: (task_id, status, commit) of its done and merged
    dependencies. Without a remote: unchanged. With one: the base is the remote's integration branch, merged
    dependencies are in it already, and unmerged ones missing here are fetched. RemoteError when it fails."""
    folded = [(t, c) for t, status, c in deps]
    name = getattr(settings, "remote", None)
    if not name:
        return base, folded
    from aictl.sandbox.remote import Remote

    remote = Remote(workspaces, name)
    branch = settings.integration_branch or workspaces.current_branch()
    tip = remote.fetch_branch(branch) if branch else None
    unmerged = [(t, c) for t, status, c in deps if status != "merged" or tip is None]
    missing = [t for t, c in unmerged if not remote.has(c)]
    remote.fetch_tasks(missing)
    return (tip or base), unmerged
