"""Where a dependent task starts: the base plus its done dependencies' commits.

`start_point(workspaces, base, deps)` folds each dependency's result commit into the base, in
the order given (the DAG's, by task id):

- a commit already contained in the tree so far (merged into the base, or brought in by an
  earlier dependency) adds nothing;
- a commit that contains the tree so far is taken as is (a fast-forward: a chain A→B→C starts
  C from B's commit, no merge commit);
- otherwise the two are merged with `git merge-tree --write-tree` (no worktree, no index) and
  a merge commit is written with aictl's fixed identity, so the same inputs give the same commit.

A conflict between dependencies raises `DependencyConflict` naming the files; the caller records
it as the failure of the start step. Nothing here touches a worktree or moves a ref.
"""

from __future__ import annotations

import subprocess

from pydantic import BaseModel

from aictl.sandbox.workspace import GIT_FIXED_CONFIG, GIT_IDENTITY, WorkspaceError, WorkspaceManager

__all__ = ["DependencyConflict", "FoldedDependency", "StartPoint", "start_point"]

# Fixed dates too: the start merge of the same commits is the same commit on every host.
_FIXED_DATE = "1970-01-01T00:00:00Z"


class DependencyConflict(WorkspaceError):
    code = "dependency_conflict"


class FoldedDependency(BaseModel):
    task_id: int
    commit: str
    how: str  # "contained", "fast_forward" or "merged"


class StartPoint(BaseModel):
    base: str  # the ref asked for
    base_commit: str  # what it resolved to
    commit: str  # where the task starts
    dependencies: list[FoldedDependency]


def start_point(workspaces: WorkspaceManager, base: str, deps: list[tuple[int, str]]) -> StartPoint:
    """Fold `deps` ([(task_id, commit), ...]) into `base`; raises DependencyConflict naming the files."""
    base_commit = workspaces._resolve(base)
    current, folded = base_commit, list[FoldedDependency]()
    for task_id, commit in deps:
        commit = _commit_of(workspaces, task_id, commit)
        if _is_ancestor(workspaces, commit, current):
            how = "contained"
        elif _is_ancestor(workspaces, current, commit):
            current, how = commit, "fast_forward"
        else:
            current, how = _merge(workspaces, current, commit, task_id, folded), "merged"
        folded.append(FoldedDependency(task_id=task_id, commit=commit, how=how))
    return StartPoint(base=base, base_commit=base_commit, commit=current, dependencies=folded)


def _commit_of(workspaces: WorkspaceManager, task_id: int, commit: str) -> str:
    top, _ = workspaces._repo()
    p = workspaces._git(
        top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}", check=False
    )
    if p.returncode != 0:
        raise WorkspaceError(
            f"dependency task {task_id}'s result commit {commit[:12]} is not in {top}",
            hint="its branch was deleted or comes from another host; fetch it, or run that task again",
        )
    return p.stdout.decode().strip()


def _is_ancestor(workspaces: WorkspaceManager, a: str, b: str) -> bool:
    top, _ = workspaces._repo()
    return workspaces._git(top, "merge-base", "--is-ancestor", a, b, check=False).returncode == 0


def _merge(
    workspaces: WorkspaceManager, current: str, commit: str, task_id: int, folded: list[FoldedDependency]
) -> str:
    top, _ = workspaces._repo()
    p = workspaces._git(top, "merge-tree", "--write-tree", "--name-only", "--no-messages", current, commit, check=False)
    lines = p.stdout.decode("utf-8", "replace").splitlines()
    if p.returncode == 1:
        files = sorted({line for line in lines[1:] if line})
        others = ", ".join(f"#{d.task_id}" for d in folded) or "the base"
        raise DependencyConflict(
            f"the results of dependency #{task_id} and {others} conflict in: {', '.join(files)}",
            hint="resolve it in one of those tasks (or a new one they both precede), then retry this task",
            details={"files": files, "task_id": task_id, "commit": commit, "onto": current},
        )
    if p.returncode != 0:
        raise WorkspaceError(f"git merge-tree failed in {top}: {p.stderr.decode('utf-8', 'replace').strip()}")
    message = f"aictl: start point with dependency #{task_id}\n\nAictl-Dependency: {task_id} {commit}\n"
    env = {**workspaces._env, "GIT_AUTHOR_DATE": _FIXED_DATE, "GIT_COMMITTER_DATE": _FIXED_DATE}
    parents = ("-p", current, "-p", commit)
    cmd = ["git", "-C", str(top), *GIT_FIXED_CONFIG, *GIT_IDENTITY, "commit-tree", lines[0], *parents, "-F", "-"]
    c = subprocess.run(cmd, input=message.encode(), capture_output=True, env=env)
    if c.returncode != 0:
        raise WorkspaceError(f"git commit-tree failed in {top}: {c.stderr.decode('utf-8', 'replace').strip()}")
    return c.stdout.decode().strip()
