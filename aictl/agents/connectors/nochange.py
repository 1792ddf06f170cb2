"""Whether a run left its worktree as it found it: for a task that locks paths, ending with no change is news.

The tool loop takes the worktree's HEAD before the first turn and, when the run ends ok, asks git whether
anything is different (an uncommitted or untracked file, or a new commit); the answer goes into the
result's summary. Not a git worktree, or git failing: nothing is said (no claim without evidence).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 10.0


def _git(workdir: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(workdir), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def head(workdir: Path) -> str | None:
    """The worktree's HEAD commit; None when it is not a git worktree."""
    out = _git(workdir, "rev-parse", "HEAD")
    return out.strip() if out else None


def unchanged(workdir: Path, locks: list[str], head_at_start: str) -> str | None:
    """What to say when a task that locks paths leaves its worktree exactly as it started, else None."""
    status = _git(workdir, "status", "--porcelain", "--untracked-files=all")
    if status is None or status.strip() or head(workdir) != head_at_start:
        return None
    return f"no change: the task locks {', '.join(locks[:5])} but the run left the worktree as it found it"


__all__ = ["head", "unchanged"]
