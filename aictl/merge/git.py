"""Git plumbing for the merge queue: compose a task's change onto a tip without a worktree, move the target ref.

Composition uses `git merge-tree --write-tree` (git >= 2.38, no worktree). `rebase` replays the
task's own change (its recorded start `refs/aictl/base/task-N` .. its commit) onto the tip, written
as one commit on top of the tip (linear history): the merge base is forced by merging two throwaway
commits of the tip's and the task's trees that both have the task's start as parent (git 2.39 has no
`--merge-base`). `merge` merges the task's commit over their real merge base (two parents).
Commits are written with aictl's identity. The target only moves by `update-ref <ref> <new> <old>`,
so a target someone else moved meanwhile is never overwritten.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic import BaseModel

from aictl.sandbox.workspace import (
    GIT_FIXED_CONFIG,
    GIT_IDENTITY,
    WorkspaceError,
    WorkspaceManager,
    base_ref_name,
)

__all__ = ["Composed", "MergeGit"]


class Composed(BaseModel):
    commit: str | None  # None on conflict
    conflicts: list[str]


class MergeGit:
    def __init__(self, workspaces: WorkspaceManager):
        self.ws = workspaces
        self.top, _ = workspaces._repo()

    def run(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        return self.ws._git(self.top, *args, check=check, input=input)

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.decode("utf-8", "replace").strip()

    def rev(self, ref: str) -> str | None:
        p = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
        return p.stdout.decode().strip() if p.returncode == 0 else None

    def current_branch(self) -> str | None:
        p = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return p.stdout.decode().strip() if p.returncode == 0 else None

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.run("merge-base", "--is-ancestor", a, b, check=False).returncode == 0

    def task_base(self, task_id: int, commit: str, tip: str) -> str:
        """Where the task's change starts: its recorded start, else the merge base with the tip."""
        return self.rev(base_ref_name(task_id)) or self.out("merge-base", tip, commit)

    def _on(self, base: str, commit: str) -> str:
        return self.out(*GIT_IDENTITY, "commit-tree", f"{commit}^{{tree}}", "-p", base, "-m", "aictl: merge input")

    def compose(self, tip: str, commit: str, *, base: str, strategy: str, message: str) -> Composed:
        """The task's change on top of `tip` as a new commit, or the conflicting files."""
        ours, theirs = (self._on(base, tip), self._on(base, commit)) if strategy == "rebase" else (tip, commit)
        p = self.run("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs, check=False)
        lines = p.stdout.decode("utf-8", "replace").splitlines()
        if p.returncode == 1:
            return Composed(commit=None, conflicts=sorted({line for line in lines[1:] if line}))
        if p.returncode != 0:
            raise WorkspaceError(f"git merge-tree failed in {self.top}: {p.stderr.decode('utf-8', 'replace').strip()}")
        parents = ("-p", tip) if strategy == "rebase" else ("-p", tip, "-p", commit)
        made = self.run(*GIT_IDENTITY, "commit-tree", lines[0], *parents, "-F", "-", input=message.encode())
        return Composed(commit=made.stdout.decode().strip(), conflicts=[])

    def message_of(self, commit: str) -> str:
        return self.out("log", "-1", "--format=%B", commit)

    def move(self, ref: str, new: str, old: str, reason: str) -> bool:
        """update-ref guarded by the old value; False when the ref moved meanwhile."""
        return self.run("update-ref", "-m", reason, ref, new, old, check=False).returncode == 0

    def worktree_clean(self) -> bool:
        return self.out("status", "--porcelain", "--untracked-files=no") == ""

    def fast_forward_worktree(self, old: str, new: str) -> None:
        """Bring the main worktree's index and files from `old` to `new` (its branch ref already moved)."""
        self.run("read-tree", "-u", "-m", old, new)

    def checkout_scratch(self, path: Path, commit: str) -> None:
        """A detached scratch worktree at `commit`, reused between entries (reset, ignored files cleaned)."""
        if not (path / ".git").exists():
            self.run("worktree", "prune")
            self.run("worktree", "add", "--detach", "--quiet", str(path), commit)
            return
        cmd = ["git", "-C", str(path), *GIT_FIXED_CONFIG]
        for args in (("checkout", "-f", "--quiet", "--detach", commit), ("clean", "-fdxq")):
            p = subprocess.run([*cmd, *args], capture_output=True, env=self.ws._env)
            if p.returncode != 0:
                raise WorkspaceError(f"git {args[0]} failed in {path}: {p.stderr.decode('utf-8', 'replace').strip()}")
