"""Task workspaces as git worktrees: real git, real repositories, real processes killed with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aictl.domain.errors import Conflict, LeaseLost, NotFound
from aictl.sandbox import workspace as workspace_mod
from aictl.sandbox.workspace import BaseRefNotFound, NotAGitRepository, Workspace, WorkspaceError, WorkspaceManager

REPO = Path(__file__).resolve().parents[2]
UTIL_PY = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n" for i in range(12))


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    p = subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.fixture
def repo(tmp_path) -> Path:
    """main: first (tag v1) -> second; feature: first -> feature."""
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    write(root / "README.md", "hello\n")
    write(root / "src" / "app.py", "print('v1')\n")
    write(root / "src" / "util.py", UTIL_PY)
    write(root / "run.sh", "echo hi\n")
    write(root / "logo.bin", b"\x89PNG\0\0\x01binary")
    write(root / ".gitignore", "*.log\nbuild/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    git(root, "tag", "v1")
    git(root, "switch", "-qc", "feature")
    write(root / "feature.txt", "feature\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "feature")
    git(root, "switch", "-q", "main")
    write(root / "README.md", "hello v2\n")
    git(root, "commit", "-qam", "second")
    return root


@pytest.fixture
def mgr(repo) -> WorkspaceManager:
    return WorkspaceManager(repo, repo / ".ai" / "workspaces")


def worktrees(repo: Path) -> list[Path]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [Path(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("worktree ")]


def assert_clean(repo: Path, mgr: WorkspaceManager, kept: list[Workspace] = ()) -> None:
    """Only the main tree and the kept workspaces exist: no stray dirs, entries, metadata or locks."""
    listed = worktrees(repo)
    assert listed[0] == repo and sorted(listed[1:]) == sorted(ws.path for ws in kept)
    expected = {".gitignore", ".locks"} | {ws.path.name for ws in kept} | {ws.path.name + ".json" for ws in kept}
    assert set(os.listdir(mgr.workspaces_dir)) == expected
    assert sorted(mgr.list(), key=lambda w: w.path) == sorted(kept, key=lambda w: w.path)
    assert not list((repo / ".git").rglob("*.lock"))
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_create_collect_remove_round_trip(repo, mgr):
    head = git(repo, "rev-parse", "HEAD")
    ws = mgr.create(7, 1)

    assert ws.path == mgr.workspaces_dir / "task-7-e1" and ws.path.is_dir()
    assert (ws.branch, ws.base_ref, ws.base_commit) == ("aictl/task-7", "HEAD", head)
    assert git(ws.path, "symbolic-ref", "HEAD") == "refs/heads/aictl/task-7"
    assert (ws.path / "README.md").read_text() == "hello v2\n"
    assert mgr.get(7) == ws and mgr.list() == [ws]
    assert json.loads((mgr.workspaces_dir / "task-7-e1.json").read_text())["base_commit"] == head

    write(ws.path / "src" / "app.py", "print('v2')\n")
    changes = mgr.collect(ws, message="Task 7: bump the greeting")

    assert changes.paths == ["src/app.py"]
    assert changes.stats == {"files": 1, "insertions": 1, "deletions": 1}
    assert "-print('v1')\n+print('v2')\n" in changes.diff
    assert git(repo, "rev-parse", "aictl/task-7") == changes.commit
    assert (
        git(repo, "log", "-1", "--format=%an <%ae>|%cn|%P|%B", changes.commit)
        == f"aictl <aictl@localhost>|aictl|{head}|Task 7: bump the greeting"
    )

    mgr.remove(ws)
    assert not ws.path.exists()
    assert mgr.get(7) is None and mgr.list() == []
    assert git(repo, "rev-parse", "aictl/task-7") == changes.commit  # the branch keeps the result
    assert_clean(repo, mgr)
    mgr.remove(ws)  # removing twice is not an error


def test_collect_captures_every_kind_of_change(repo, mgr):
    ws = mgr.create(1, 1)
    p = ws.path
    write(p / "notes" / "deep" / "new.md", "new\n")  # new file in new subdirectories
    write(p / "src" / "app.py", "print('v2')\n")  # modified
    (p / "README.md").unlink()  # deleted
    (p / "src" / "util.py").rename(p / "src" / "helpers.py")  # renamed
    (p / "run.sh").chmod(0o755)  # executable bit
    write(p / "logo.bin", b"\x89PNG\0\0\x02other")  # binary, modified
    write(p / "pic.bin", bytes(range(256)))  # binary, new
    write(p / "debug.log", "ignored by *.log\n")  # ignored
    write(p / "build" / "out.txt", "ignored by build/\n")  # ignored, in a new directory

    ch = mgr.collect(ws, message="all kinds")

    assert ch.paths == [
        "README.md",
        "logo.bin",
        "notes/deep/new.md",
        "pic.bin",
        "run.sh",
        "src/app.py",
        "src/helpers.py",
        "src/util.py",
    ]
    assert ch.stats == {"files": 7, "insertions": 2, "deletions": 2}
    d = ch.diff
    assert "diff --git a/notes/deep/new.md b/notes/deep/new.md\nnew file mode 100644\n" in d
    assert "diff --git a/README.md b/README.md\ndeleted file mode 100644\n" in d
    assert "similarity index 100%\nrename from src/util.py\nrename to src/helpers.py\n" in d
    assert "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n" in d
    assert "Binary files a/logo.bin and b/logo.bin differ\n" in d
    assert "Binary files /dev/null and b/pic.bin differ\n" in d
    assert "GIT binary patch" not in d and "debug.log" not in d and "build/" not in d
    tree = git(repo, "ls-tree", "-r", ch.commit)
    assert "100755 blob" in next(line for line in tree.splitlines() if line.endswith("\trun.sh"))
    assert "debug.log" not in tree and "build/out.txt" not in tree


def test_no_change_means_no_commit(repo, mgr):
    ws = mgr.create(1, 1)
    write(ws.path / "only.log", "ignored\n")
    ch = mgr.collect(ws, message="nothing")
    assert (ch.paths, ch.diff, ch.commit) == ([], "", None)
    assert ch.stats == {"files": 0, "insertions": 0, "deletions": 0}
    assert git(repo, "rev-parse", "aictl/task-1") == ws.base_commit


def test_commits_made_by_the_agent_are_kept(repo, mgr):
    ws = mgr.create(1, 1)
    write(ws.path / "a.txt", "committed by the agent\n")
    git(ws.path, "add", "a.txt")
    git(ws.path, "commit", "-qm", "agent commit")
    agent_commit = git(ws.path, "rev-parse", "HEAD")
    write(ws.path / "b.txt", "left uncommitted\n")

    ch = mgr.collect(ws, message="collect")

    assert ch.paths == ["a.txt", "b.txt"]
    assert git(repo, "rev-parse", f"{ch.commit}^") == agent_commit
    # Agent commits and nothing else: the agent's commit is the result.
    ws2 = mgr.create(2, 1)
    write(ws2.path / "c.txt", "c\n")
    git(ws2.path, "add", "c.txt")
    git(ws2.path, "commit", "-qm", "agent commit")
    ch2 = mgr.collect(ws2, message="collect")
    assert ch2.paths == ["c.txt"] and ch2.commit == git(ws2.path, "rev-parse", "HEAD")


def test_base_ref_can_be_a_tag_or_a_branch(repo, mgr):
    ws = mgr.create(1, 1, base="v1")
    assert ws.base_commit == git(repo, "rev-parse", "v1^{commit}") and ws.base_ref == "v1"
    assert (ws.path / "README.md").read_text() == "hello\n"

    ws2 = mgr.create(2, 1, base="feature")
    assert ws2.base_commit == git(repo, "rev-parse", "feature")
    assert (ws2.path / "feature.txt").is_file()
    write(ws2.path / "feature.txt", "changed\n")
    assert mgr.collect(ws2, message="x").paths == ["feature.txt"]  # diffed against the branch, not HEAD


def test_clear_errors_for_bad_base_and_no_repository(repo, mgr, tmp_path):
    with pytest.raises(BaseRefNotFound, match="base ref 'no-such-branch' not found") as e:
        mgr.create(1, 1, base="no-such-branch")
    assert e.value.exit_code == 3 and "git branch" in e.value.hint
    with pytest.raises(BaseRefNotFound):
        mgr.create(1, 1, base="--output=/tmp/x")  # never read as an option

    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepository, match="not a git repository") as e:
        WorkspaceManager(tmp_path / "plain").create(1, 1)
    assert "git" in e.value.hint and "init" in e.value.hint

    git(tmp_path, "init", "-q", str(tmp_path / "empty"))
    with pytest.raises(BaseRefNotFound) as e:
        WorkspaceManager(tmp_path / "empty").create(1, 1)
    assert "no commits" in e.value.hint


def test_new_attempt_replaces_the_old_workspace(repo, mgr):
    old = mgr.create(1, 1)
    write(old.path / "attempt1.txt", "x\n")
    mgr.collect(old, message="attempt 1")
    other = mgr.create(2, 1)

    new = mgr.create(1, 2)

    assert not old.path.exists() and new.path.is_dir() and new.path.name == "task-1-e2"
    assert not (new.path / "attempt1.txt").exists()
    assert git(repo, "rev-parse", "aictl/task-1") == new.base_commit  # branch reset to the base
    assert mgr.get(1) == new
    assert_clean(repo, mgr, kept=[new, other])

    # The attempt with the older lease is fenced off, and leaves the new workspace alone.
    with pytest.raises(LeaseLost, match="epoch 1 is stale"):
        mgr.create(1, 1)
    assert mgr.get(1) == new and new.path.is_dir()

    # A base that does not resolve must not cost the existing workspace anything.
    with pytest.raises(BaseRefNotFound):
        mgr.create(1, 3, base="typo")
    assert mgr.get(1) == new and new.path.is_dir()


def test_refuses_a_branch_the_user_has_checked_out(repo, mgr):
    git(repo, "switch", "-qc", "aictl/task-5")
    with pytest.raises(Conflict, match="checked out"):
        mgr.create(5, 1)
    assert mgr.list() == []


def test_prune_removes_what_keep_rejects(repo, mgr):
    ws = {t: mgr.create(t, 1) for t in (1, 2, 3)}
    removed = mgr.prune(lambda task_id, epoch: task_id == 2)
    assert sorted(w.task_id for w in removed) == [1, 3]
    assert_clean(repo, mgr, kept=[ws[2]])
    assert mgr.prune(lambda *_: False) == [ws[2]]
    assert_clean(repo, mgr)


def test_main_repository_never_sees_workspaces(repo):
    # No .ai/.gitignore here (a repo aictl init never touched), and a second, unusual location.
    for wsdir in (repo / ".ai" / "workspaces", repo / "elsewhere"):
        m = WorkspaceManager(repo, wsdir)
        for t in (1, 2):
            ws = m.create(t, 1)
            write(ws.path / "scratch" / "new.txt", "untracked in the workspace\n")
            write(ws.path / "README.md", "modified in the workspace\n")
        assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
        m.prune(lambda *_: False)


def test_diff_works_after_the_workspace_is_gone(repo, mgr):
    ws = mgr.create(4, 1, base="v1")
    write(ws.path / "src" / "app.py", "print('task 4')\n")
    write(ws.path / "added.txt", "added\n")
    ch = mgr.collect(ws, message="task 4")
    assert mgr.diff(4) == ch.diff
    mgr.remove(4)
    assert mgr.diff(4) == ch.diff  # from the branch and the base ref, not from the vanished metadata
    assert "README" not in mgr.diff(4)  # main moved on since v1; that is not the task's change
    with pytest.raises(NotFound, match="task 99 has no workspace branch"):
        mgr.diff(99)


def test_collect_refuses_a_workspace_whose_git_link_is_gone(repo, mgr):
    ws = mgr.create(1, 1)
    write(ws.path / "new.txt", "x\n")
    write(repo / "user-work.txt", "the user's own uncommitted file\n")
    (ws.path / ".git").unlink()
    with pytest.raises(WorkspaceError, match="not an aictl workspace"):
        mgr.collect(ws, message="x")
    # Nothing was staged in the main repository that contains the workspace directory.
    assert git(repo, "diff", "--cached", "--name-only") == ""


def test_stale_git_locks_do_not_wedge_create_or_collect(repo, mgr, monkeypatch):
    monkeypatch.setattr(workspace_mod, "LOCK_WAIT", 0.3)
    (repo / ".git" / "refs" / "heads" / "aictl").mkdir(parents=True)
    (repo / ".git" / "refs" / "heads" / "aictl" / "task-1.lock").write_text("")
    ws = mgr.create(1, 1)
    write(ws.path / "x.txt", "x\n")
    gitdir = Path((ws.path / ".git").read_text().split(":", 1)[1].strip())
    (gitdir / "index.lock").write_text("")  # left by an agent's git that was killed
    assert mgr.collect(ws, message="x").paths == ["x.txt"]
    mgr.remove(ws)
    assert_clean(repo, mgr)


# ---- crashes and concurrency: real processes ----------------------------------------------------

CHILD = r"""
import os, signal, sys, time
from pathlib import Path
from aictl.sandbox import workspace as w

repo, wsdir, task_id, epoch, point = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
start_at = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0

def die():
    os.killpg(0, signal.SIGKILL)  # the whole process group: a git child dies mid-write too

real_git = w.WorkspaceManager._git
def git(self, cwd, *args, **kw):
    name = args[0] + (" " + args[1] if args[0] == "worktree" else "")
    if point == "before " + name:
        die()
    p = real_git(self, cwd, *args, **kw)
    if point == "after " + name:
        die()
    return p
w.WorkspaceManager._git = git
real_replace = os.replace
def replace(src, dst):
    if point == "before replace":
        die()
    return real_replace(src, dst)
os.replace = replace

mgr = w.WorkspaceManager(Path(repo), Path(wsdir))
print("ready", flush=True)
while time.time() < start_at:
    time.sleep(0.001)
ws = mgr.create(task_id, epoch)
print(ws.model_dump_json(), flush=True)
"""


def start_child(
    mgr: WorkspaceManager, task_id: int, epoch: int, point: str = "none", start_at: float = 0.0
) -> subprocess.Popen:
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(mgr.repo_root),
            str(mgr.workspaces_dir),
            str(task_id),
            str(epoch),
            point,
            str(start_at),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert p.stdout.readline() == "ready\n", p.stderr.read()
    return p


def wait_killed(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, (p.returncode, out, err)


KILL_POINTS = ["after rev-parse", "after update-ref", "before worktree add", "after worktree add", "before replace"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_during_create_leaves_debris_that_prune_removes(repo, mgr, point):
    kept = mgr.create(9, 1)
    wait_killed(start_child(mgr, 1, 1, point))
    assert mgr.get(1) is None  # metadata is written last: no half-made workspace ever looks complete

    removed = mgr.prune(lambda *_: True)

    assert [(w.task_id, w.base_commit) for w in removed] == (
        [(1, "")] if point in ("after worktree add", "before replace") else []
    )
    assert_clean(repo, mgr, kept=[kept])


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_during_create_does_not_wedge_the_next_attempt(repo, mgr, point):
    wait_killed(start_child(mgr, 1, 1, point))
    ws = mgr.create(1, 2)
    write(ws.path / "x.txt", "x\n")
    assert mgr.collect(ws, message="x").paths == ["x.txt"]
    assert_clean(repo, mgr, kept=[ws])


@pytest.fixture
def slow_checkout(repo, tmp_path):
    """A smudge filter that, while `gate` exists, announces itself and hangs: git killed mid-checkout."""
    gate, started = tmp_path / "gate", tmp_path / "started"
    git(repo, "config", "filter.slow.smudge", f"if [ -e {gate} ]; then touch {started}; sleep 60; fi; cat")
    git(repo, "config", "filter.slow.clean", "cat")
    write(repo / ".gitattributes", "*.slow filter=slow\n")
    write(repo / "data.slow", "slow to check out\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "slow file")
    gate.write_text("")
    return gate, started


@pytest.mark.parametrize(
    "rm, then, epoch",
    [
        (None, "prune", None),
        (None, "recreate", 2),
        ("on branch", "prune", None),
        ("on branch", "recreate", 2),
        ("detached", "recreate", 1),  # same epoch, same path: git refuses a "missing but locked" path until cleared
    ],
)
def test_sigkill_in_the_middle_of_git_worktree_add(repo, mgr, slow_checkout, rm, then, epoch):
    gate, started = slow_checkout
    child = start_child(mgr, 1, 1)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline and child.poll() is None, child.stderr.read()
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)
    wait_killed(child)
    gate.unlink()
    # What a killed `git worktree add` leaves: a locked entry, its index.lock, a half-checked-out dir.
    assert "locked initializing" in git(repo, "worktree", "list", "--porcelain")
    assert list((repo / ".git" / "worktrees").rglob("index.lock"))
    if rm:
        # Someone deleted the directory by hand; git's entry stays, locked, so `git worktree prune` keeps it.
        subprocess.run(["rm", "-rf", str(mgr.workspaces_dir / "task-1-e1")], check=True)
    if rm == "detached":
        # As if killed a moment earlier, before git pointed the new HEAD at the branch.
        (repo / ".git" / "worktrees" / "task-1-e1" / "HEAD").write_text(git(repo, "rev-parse", "HEAD") + "\n")

    if then == "prune":
        assert [w.lease_epoch for w in mgr.prune(lambda *_: True)] == [1]
        assert_clean(repo, mgr)
    else:
        ws = mgr.create(1, epoch)
        assert (ws.path / "data.slow").read_text() == "slow to check out\n"
        assert_clean(repo, mgr, kept=[ws])


def test_prune_clears_the_ref_locks_a_create_killed_inside_update_ref_leaves(repo, mgr):
    head = git(repo, "rev-parse", "HEAD")
    locks = [
        repo / ".git" / "refs" / "heads" / "aictl" / "task-5.lock",
        repo / ".git" / "refs" / "aictl" / "base" / "task-5.lock",
    ]
    for lock in locks:  # all a SIGKILL during `git update-ref` leaves: no directory, no worktree entry
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(head + "\n")
    assert mgr.prune(lambda *_: True) == []
    assert_clean(repo, mgr)
    assert mgr.create(5, 1).base_commit == head


@pytest.mark.slow
def test_sigkill_at_random_moments_then_prune_leaves_a_consistent_state(repo, mgr):
    rng = random.Random(4)
    finished = 0
    for attempt in range(1, 13):
        task_id = attempt % 3
        child = start_child(mgr, task_id, attempt)
        time.sleep(rng.uniform(0, 0.1))
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        mgr.prune(lambda *_: True)
        kept = mgr.list()  # what survived: complete workspaces only, at most one per task
        assert_clean(repo, mgr, kept=kept)
        assert len({ws.task_id for ws in kept}) == len(kept)
        if child.returncode == 0:  # it finished before the kill
            finished += 1
            assert Workspace.model_validate_json(out.splitlines()[-1]) in kept
        for ws in kept:
            assert git(ws.path, "status", "--porcelain") == ""
            assert git(ws.path, "symbolic-ref", "--short", "HEAD") == ws.branch
    assert finished < 12, "every create finished before its kill: the kills prove nothing"
    mgr.prune(lambda *_: False)
    assert_clean(repo, mgr)


def test_two_processes_create_workspaces_at_once(repo, mgr):
    made = []
    for round_ in range(4):
        start_at = time.time() + 0.3
        children = [start_child(mgr, t, 1, start_at=start_at) for t in (2 * round_ + 1, 2 * round_ + 2)]
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            made.append(Workspace.model_validate_json(out.splitlines()[-1]))
    assert_clean(repo, mgr, kept=made)
    for ws in made:
        assert git(ws.path, "symbolic-ref", "--short", "HEAD") == ws.branch
        assert git(ws.path, "status", "--porcelain") == ""


def test_collect_is_bounded_by_its_deadline(repo, mgr):
    """What an agent leaves (here: enough files that git add cannot finish at once) never holds the worker."""
    ws = mgr.create(9, 1)
    for i in range(2000):
        write(ws.path / "junk" / f"{i}.txt", f"{i}\n")
    with pytest.raises(workspace_mod.GitError, match="did not finish in time"):
        mgr.collect(ws, message="too much", timeout_s=0.001)
    assert mgr.collect(ws, message="in time").paths[:1] == ["junk/0.txt"]  # the same workspace, a sane deadline
