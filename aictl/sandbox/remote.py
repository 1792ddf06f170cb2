"""Several hosts, one git remote (`remote: origin` in config): what crosses it and under which names.

    refs/heads/aictl/task-N      a task's result, pushed by the host that ran it (policy action `push`),
    refs/aictl/base/task-N       and the commit it started from (so `task diff` and rebase work anywhere);
    refs/heads/<integration>     moved only by the merge queue's holder, by a plain (non-forced) push, so a
                                 host that lost the race is refused by the remote instead of overwriting;
    refs/aictl/remote/<branch>   this host's copy of the remote's integration branch, fetched before a
                                 task starts (the start point) and before the merge queue composes.

Every git call here is bounded (REMOTE_TIMEOUT_S) and never prompts (GIT_TERMINAL_PROMPT=0): a remote
that hangs or asks for a password is an error with the remote's own words, not a stuck worker.
"""

from __future__ import annotations

import subprocess

from aictl.sandbox.workspace import (
    GIT_FIXED_CONFIG,
    WorkspaceError,
    WorkspaceManager,
    base_ref_name,
    branch_name,
)

__all__ = ["REMOTE_TRACKING_PREFIX", "Remote", "RemoteError"]

REMOTE_TIMEOUT_S = 120.0
REMOTE_TRACKING_PREFIX = "refs/aictl/remote/"


class RemoteError(WorkspaceError):
    code = "remote_error"


class Remote:
    def __init__(self, workspaces: WorkspaceManager, name: str):
        self.ws = workspaces
        self.name = name
        self.top, _ = workspaces._repo()

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**self.ws._env, "GIT_TERMINAL_PROMPT": "0"}
        cmd = ["git", "-C", str(self.top), *GIT_FIXED_CONFIG, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=REMOTE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RemoteError(
                f"git {args[0]} {self.name}: no answer within {REMOTE_TIMEOUT_S:g}s",
                hint=f"check the remote: git -C {self.top} ls-remote {self.name}",
            ) from None
        if check and p.returncode != 0:
            raise RemoteError(
                f"git {args[0]} {self.name} failed: {p.stderr.decode('utf-8', 'replace').strip()[-2000:]}",
                hint=f"check the remote: git -C {self.top} remote -v",
                details={"exit_code": p.returncode},
            )
        return p

    def has(self, commit: str) -> bool:
        p = self.ws._git(self.top, "cat-file", "-e", f"{commit}^{{commit}}", check=False)
        return p.returncode == 0

    def push_task(self, task_id: int) -> None:
        """The task's branch and start ref, forced: aictl owns these names and a retry rewrites them."""
        refs = [f"refs/heads/{branch_name(task_id)}", base_ref_name(task_id)]
        self._git("push", "--quiet", "--atomic", self.name, *(f"+{r}:{r}" for r in refs))

    def fetch_tasks(self, task_ids: list[int]) -> None:
        """Bring other hosts' task branches and start refs here (missing ones on the remote are an error)."""
        if not task_ids:
            return
        specs = []
        for t in sorted(set(task_ids)):
            for ref in (f"refs/heads/{branch_name(t)}", base_ref_name(t)):
                specs.append(f"+{ref}:{ref}")
        self._git("fetch", "--quiet", "--no-tags", self.name, *specs)

    def fetch_branch(self, branch: str) -> str | None:
        """The remote's tip of `branch`, fetched into refs/aictl/remote/<branch>; None if the remote has none."""
        ls = self._git("ls-remote", "--heads", self.name, f"refs/heads/{branch}")
        if not ls.stdout.strip():
            return None
        tracking = f"{REMOTE_TRACKING_PREFIX}{branch}"
        self._git("fetch", "--quiet", "--no-tags", self.name, f"+refs/heads/{branch}:{tracking}")
        out = self.ws._git(self.top, "rev-parse", "--verify", tracking).stdout.decode().strip()
        return out

    def push_branch(self, branch: str, commit: str) -> bool:
        """Move the remote's `branch` to `commit`, never forced: False when the remote refused (it moved)."""
        p = self._git("push", "--quiet", "--porcelain", self.name, f"{commit}:refs/heads/{branch}", check=False)
        if p.returncode == 0:
            return True
        text = (p.stdout + p.stderr).decode("utf-8", "replace")
        if "[rejected]" in text or "non-fast-forward" in text or "fetch first" in text:
            return False
        raise RemoteError(f"git push {self.name} {branch} failed: {text.strip()[-2000:]}")

    def delete_tasks(self, task_ids: list[int]) -> None:
        """Best effort: merged tasks' branches and start refs leave the remote too."""
        if not task_ids:
            return
        refs = [r for t in task_ids for r in (f"refs/heads/{branch_name(t)}", base_ref_name(t))]
        self._git("push", "--quiet", self.name, *(f":{r}" for r in refs), check=False)
