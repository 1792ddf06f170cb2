"""The worktree pool: a finished task's worktree is cleaned, pooled and reused by the next task, which then pays
for what differs, not for the whole checkout; nothing of the previous task survives; a tampered worktree is
never pooled. Real git, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aictl.sandbox.workspace import Workspace, WorkspaceManager
from tests.sandbox.test_workspace import REPO, git, repo, worktrees, write

assert repo  # a fixture: pytest finds it in this module's namespace


@pytest.fixture
def pool(repo) -> WorkspaceManager:
    return WorkspaceManager(repo, repo / ".ai" / "workspaces", pool_size=2)


def slots(mgr: WorkspaceManager) -> list[Path]:
    return sorted(mgr.pool_dir.iterdir()) if mgr.pool_dir.is_dir() else []


def test_a_finished_worktree_is_reused_with_nothing_of_its_last_task(repo, pool):
    ws = pool.create(1, 1)
    inode = ws.path.stat().st_ino
    write(ws.path / "src" / "app.py", "print('task 1')\n")
    pool.collect(ws, message="task 1")
    write(ws.path / "build" / "cache.o", "ignored build output of task 1\n")  # ignored by .gitignore
    write(ws.path / "debug.log", "ignored log\n")
    write(ws.path / "notes.txt", "an untracked file\n")
    write(ws.path / "README.md", "edited after collect\n")
    (ws.path / "link").symlink_to("/etc/passwd")

    pool.recycle(ws)
    assert not ws.path.exists() and len(slots(pool)) == 1
    assert pool.get(1) is None and pool.list() == []
    assert git(repo, "rev-parse", "aictl/task-1") != git(repo, "rev-parse", "HEAD")  # the result branch stays

    ws2 = pool.create(2, 1, base="v1")
    assert ws2.path.stat().st_ino == inode and slots(pool) == []  # the same directory, moved into place
    assert git(ws2.path, "symbolic-ref", "HEAD") == "refs/heads/aictl/task-2"
    assert git(ws2.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "v1^{commit}")
    assert git(ws2.path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert (ws2.path / "README.md").read_text() == "hello\n" and (ws2.path / "src" / "app.py").read_text() == (
        "print('v1')\n"
    )
    for gone in ("build", "debug.log", "notes.txt", "link"):
        assert not os.path.lexists(ws2.path / gone), gone
    write(ws2.path / "feature2.txt", "x\n")
    assert pool.collect(ws2, message="task 2").paths == ["feature2.txt"]  # diff against its own base only


def test_the_pool_never_holds_more_than_its_size(repo, pool):
    made = [pool.create(t, 1) for t in (1, 2, 3)]
    for ws in made:
        pool.recycle(ws)
    assert len(slots(pool)) == 2
    listed = worktrees(repo)[1:]
    assert sorted(listed) == slots(pool)  # the third was removed, git's entry too


def test_a_worktree_whose_git_file_was_rewritten_is_removed_not_pooled(repo, pool):
    other = pool.create(1, 1)
    victim = pool.create(2, 1)
    # The agent of task 2 points its .git at task 1's admin dir: pooling it would hand task 1's index to a stranger.
    (victim.path / ".git").write_text((other.path / ".git").read_text())
    pool.recycle(victim)
    assert slots(pool) == [] and not victim.path.exists()
    assert git(other.path, "symbolic-ref", "HEAD") == "refs/heads/aictl/task-1"  # task 1 was never touched
    (other.path / ".git").unlink()
    (other.path / ".git").mkdir()  # a directory: a whole repository of the agent's making
    pool.recycle(other)
    assert slots(pool) == [] and not other.path.exists()
    assert git(repo, "status", "--porcelain") == ""


def test_prune_removes_a_slot_git_does_not_know(repo, pool):
    ws = pool.create(1, 1)
    pool.recycle(ws)
    debris = pool.pool_dir / "slot-debris"
    debris.mkdir()
    (debris / "file").write_text("a crash mid-move left this\n")
    pool.prune(lambda t, e: True)
    assert slots(pool) != [] and not debris.exists()


def test_pool_size_zero_removes_as_before(repo):
    mgr = WorkspaceManager(repo, repo / ".ai" / "workspaces", pool_size=0)
    ws = mgr.create(1, 1)
    mgr.recycle(ws)
    assert not ws.path.exists() and not mgr.pool_dir.exists() and worktrees(repo) == [repo]


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from aictl.sandbox.workspace import WorkspaceManager
    repo, wdir, task, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    mgr = WorkspaceManager(Path(repo), Path(wdir), pool_size=4)
    time.sleep(max(0.0, start_at - time.time()))
    ws = mgr.create(task, 1)
    print(ws.model_dump_json())
    """
)


def test_two_processes_never_take_the_same_slot(repo):
    mgr = WorkspaceManager(repo, repo / ".ai" / "workspaces", pool_size=4)
    for ws in [mgr.create(t, 1) for t in (1, 2, 3)]:
        mgr.recycle(ws)
    assert len(slots(mgr)) == 3
    start_at = time.time() + 0.3
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [str(mgr.repo_root), str(mgr.workspaces_dir)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, *args, str(t), str(start_at)], cwd=REPO, env=env, stdout=subprocess.PIPE
        )
        for t in (11, 12)
    ]
    made = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        made.append(Workspace.model_validate_json(out.splitlines()[-1]))
    assert len(slots(mgr)) == 1
    for ws in made:
        assert git(ws.path, "symbolic-ref", "--short", "HEAD") == ws.branch
        assert git(ws.path, "status", "--porcelain") == ""
    assert sorted(worktrees(repo)[1:]) == sorted([*slots(mgr), *(ws.path for ws in made)])
