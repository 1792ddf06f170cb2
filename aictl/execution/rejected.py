"""Branches whose result the checks refused are moved out of `refs/heads`, so they are never merged by mistake.

A run whose changes broke a check (a refused path such as `.env` or `.ai/policy.yaml`, a lock
violation, failed verification) keeps its commit for inspection, but not on `aictl/task-<id>`:
the commit moves to `refs/aictl/rejected/task-<id>-e<epoch>` and the task branch is deleted.
`git branch` and the merge tooling only see `refs/heads`; look at a rejected result with
`git log refs/aictl/rejected/task-<id>-e<epoch>`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REJECTED_PREFIX = "refs/aictl/rejected/"


def rejected_ref(task_id: int, epoch: int) -> str:
    return f"{REJECTED_PREFIX}task-{task_id}-e{epoch}"


def reject_branch(repo: Path, worktree: Path, branch: str, task_id: int, epoch: int) -> str | None:
    """Move `branch` to its rejected ref (the worktree is detached first); the ref, or None when there was no branch."""

    def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)

    head = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    if head.returncode != 0:
        return None
    commit = head.stdout.strip()
    ref = rejected_ref(task_id, epoch)
    if worktree.is_dir():
        git(worktree, "checkout", "--quiet", "--detach")  # a checked-out branch cannot be deleted cleanly
    if git(repo, "update-ref", ref, commit).returncode != 0:
        return None
    # Only delete the branch if it still points where we looked (a newer attempt may own it now).
    if git(repo, "update-ref", "-d", f"refs/heads/{branch}", commit).returncode != 0:
        return None
    return ref
