"""Task workspaces: one git worktree per task attempt, on the branch ``aictl/task-<id>``.

Layout under ``workspaces_dir`` (default ``<home>/workspaces``)::

    task-<id>-e<epoch>/         the worktree, a checkout of the base commit
    task-<id>-e<epoch>.json     its metadata, written (tmp + os.replace) only once the worktree is complete
    .pool/slot-<n>/             finished worktrees, detached and cleaned (`clean -ffdx`), waiting for reuse
    .locks/task-<id>.lock       flock held by whoever creates, collects or removes that task's workspaces
    .locks/pool.lock            flock held while a slot is taken from or put into the pool
    .gitignore                  "*", so the main repository never lists the workspaces as untracked

The pool makes a workspace cost O(change), not O(repository): `git worktree add` writes every file of the
checkout, while a pooled worktree is moved into place (`git worktree move`) and switched to the task's branch
(`checkout -f`), which writes only the files that differ. A slot holds no trace of its last task: `recycle`
resets it to its HEAD and removes every untracked and ignored file before it enters the pool, and a worktree
whose `.git` file the agent rewrote (or that fails any step) is removed instead of pooled.

Two refs per task outlive the worktree: ``refs/heads/aictl/task-<id>`` (the result) and
``refs/aictl/base/task-<id>`` (the commit it started from). `create` sets both in one ref
transaction, so `diff` can always say what a task changed, even after `remove`.

Crash safety: a SIGKILL anywhere in `create` leaves at worst a directory without metadata,
maybe a git worktree entry locked "initializing", maybe a stale ``*.lock`` file. All of it
belongs to one task, so whoever next holds that task's flock may treat it as debris: the
next `create` of the task clears it, and `prune` clears it for every task nobody is working on.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from aictl.domain.errors import AictlError, Conflict, LeaseLost, NotFound, NotInitialized
from aictl.sandbox.ownership import strip_special
from aictl.sandbox.safeio import Refused, read_regular

__all__ = [
    "BaseRefNotFound",
    "Changes",
    "GitError",
    "NotAGitRepository",
    "Workspace",
    "WorkspaceError",
    "WorkspaceManager",
    "base_ref_name",
    "branch_name",
]

BRANCH_PREFIX = "aictl/task-"
BASE_REF_PREFIX = "refs/aictl/base/task-"
GIT_IDENTITY = ("-c", "user.name=aictl", "-c", "user.email=aictl@localhost")
# Settings a user's or repo's config could set that would change what we do or print.
GIT_FIXED_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "core.quotePath=false",
    "-c",
    "advice.detachedHead=false",
)
DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv", "-M", "--src-prefix=a/", "--dst-prefix=b/", "--unified=3")
LOCK_WAIT = 2.0  # seconds to wait out another git process's lock before calling the lock stale
GITFILE_LIMIT = 64 * 1024  # a worktree's .git file holds one "gitdir: <path>" line
TASK_LOCK_WAIT = 60.0  # seconds to wait for another aictl process working on the same task
COLLECT_TIMEOUT_S = 600.0  # all of collect's git calls together: a workspace git cannot take in that is refused
_ENTRY = re.compile(r"task-(\d+)-e(\d+)(\.json(?:\.tmp)?)?")
_REF_LOCK = re.compile(r"task-(\d+)\.lock")
_LOCK_ERROR = re.compile(r"\.lock'?: File exists|cannot lock ref|[Uu]nable to create '[^']*\.lock'")


class WorkspaceError(AictlError):
    code = "workspace_error"


class GitError(WorkspaceError):
    code = "git_error"


class NotAGitRepository(WorkspaceError):
    code = "not_a_git_repository"


class BaseRefNotFound(NotFound):
    code = "base_ref_not_found"


class Workspace(BaseModel):
    task_id: int
    lease_epoch: int
    path: Path
    branch: str
    base_ref: str
    base_commit: str  # "" for a half-created leftover reported by prune
    created_at: float


class Changes(BaseModel):
    paths: list[str]
    diff: str
    commit: str | None
    stats: dict
    refused: list[str] = []  # setuid/setgid bits and device nodes the collector stripped, for the evidence


def branch_name(task_id: int) -> str:
    return f"{BRANCH_PREFIX}{task_id}"


def base_ref_name(task_id: int) -> str:
    return f"{BASE_REF_PREFIX}{task_id}"


def _git_env(ceiling: Path) -> dict[str, str]:
    # No inherited GIT_DIR/GIT_INDEX_FILE/GIT_AUTHOR_* (e.g. when run from a hook); and git run in a
    # workspace must never walk up into the main repository that contains it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_CEILING_DIRECTORIES=str(ceiling), LC_ALL="C")
    return env


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # an agent left read-only directories behind (not an obstacle for root)
            for d, _, _ in os.walk(path):
                os.chmod(d, stat.S_IRWXU)
            shutil.rmtree(path)


def _parse_diff(out: bytes) -> tuple[list[str], str, dict[str, int]]:
    """Split `git diff --numstat -p -z` output into (paths, patch, stats).

    Numstat records come first, "ADDED\\tDELETED\\tPATH\\0" ("-" counts for binary files) or
    "A\\tD\\t\\0OLD\\0NEW\\0" for a rename; an empty record separates them from the patch.
    """
    paths: set[str] = set()
    files = insertions = deletions = 0
    pos = 0
    while pos < len(out):
        end = out.index(b"\0", pos)
        record, pos = out[pos:end], end + 1
        if not record:
            break
        added, deleted, path = record.split(b"\t", 2)
        names = [path]
        if not path:
            old_end = out.index(b"\0", pos)
            new_end = out.index(b"\0", old_end + 1)
            names, pos = [out[pos:old_end], out[old_end + 1 : new_end]], new_end + 1
        paths.update(n.decode("utf-8", "replace") for n in names)
        files += 1
        insertions += int(added) if added != b"-" else 0
        deletions += int(deleted) if deleted != b"-" else 0
    patch = out[pos:].decode("utf-8", "replace")
    return sorted(paths), patch, {"files": files, "insertions": insertions, "deletions": deletions}


class WorkspaceManager:
    """Creates, collects, lists and removes the git worktrees tasks run in."""

    def __init__(self, repo_root: Path, workspaces_dir: Path | None = None, *, pool_size: int = 0):
        self.repo_root = Path(repo_root).resolve()
        self.workspaces_dir = Path(workspaces_dir or self.repo_root / ".ai" / "workspaces").resolve()
        self.pool_size = pool_size
        self._env = _git_env(self.workspaces_dir)
        self._top: Path | None = None
        self._common: Path | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> WorkspaceManager:
        if settings.project_dir is None or settings.home is None:
            raise NotInitialized(
                "not inside an aictl project (no .ai/ directory here or above)", hint="create one with: aictl init"
            )
        return cls(settings.project_dir, settings.home / "workspaces", pool_size=settings.workspace_pool)

    def _git(
        self,
        cwd: Path,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        stale_locks: tuple[Path, ...] = (),
        until: float | None = None,
    ) -> subprocess.CompletedProcess:
        """Run git in `cwd`; wait out lock contention, then remove `stale_locks` (ours) once. `until`: a
        time.monotonic() deadline past which the git process is killed (GitError)."""
        cmd = ["git", "-C", str(cwd), *GIT_FIXED_CONFIG, *args]
        deadline, delay, cleared = time.monotonic() + LOCK_WAIT, 0.01, False
        while True:
            try:
                p = subprocess.run(
                    cmd,
                    input=input,
                    capture_output=True,
                    env=self._env,
                    stdin=None if input is not None else subprocess.DEVNULL,
                    timeout=None if until is None else max(0.0, until - time.monotonic()),
                )
            except subprocess.TimeoutExpired:
                raise GitError(
                    f"git {' '.join(args[:2])} in {cwd} did not finish in time (killed)",
                    hint="the workspace holds more than git can take in the time left (huge or very many files?)",
                    details={"command": cmd},
                ) from None
            if p.returncode == 0:
                return p
            err = p.stderr.decode("utf-8", "replace").strip()
            locked = bool(_LOCK_ERROR.search(err))
            if locked and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            if locked and not cleared and any(lk.exists() for lk in stale_locks):
                # Only this task's processes take these locks and we hold the task's flock:
                # the holder died mid-git (SIGKILL).
                for lk in stale_locks:
                    lk.unlink(missing_ok=True)
                cleared = True
                continue
            if not check:
                return p
            raise GitError(
                f"git {' '.join(args[:2])} failed in {cwd}: {err}",
                hint="another git process holds the lock named above; if none runs, delete that file"
                if locked
                else None,
                details={"command": cmd, "exit_code": p.returncode},
            )

    def _out(self, cwd: Path, *args: str, **kw: Any) -> str:
        return self._git(cwd, *args, **kw).stdout.decode("utf-8", "replace").strip()

    def _repo(self) -> tuple[Path, Path]:
        """(top-level directory, common git dir) of the main repository; one git call per manager."""
        if self._common is None:
            p = self._git(self.repo_root, "rev-parse", "--show-toplevel", "--git-common-dir", check=False)
            if p.returncode != 0:
                raise NotAGitRepository(
                    f"not a git repository: {self.repo_root}",
                    hint=f"tasks run in git worktrees; create a repository with: git -C {self.repo_root} init "
                    "&& git commit --allow-empty -m init",
                )
            top, common = p.stdout.decode().splitlines()
            self._top, self._common = Path(top), (self.repo_root / common).resolve()
        assert self._top is not None
        return self._top, self._common

    def _resolve(self, base: str) -> str:
        top, _ = self._repo()
        p = self._git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}", check=False)
        if p.returncode != 0:
            hint = (
                "the repository has no commits yet; commit something first"
                if base == "HEAD"
                else "pass a branch, tag or commit that exists (see: git branch -a; git tag)"
            )
            raise BaseRefNotFound(f"base ref {base!r} not found in {top}", hint=hint)
        return p.stdout.decode().strip()

    def _path(self, task_id: int, epoch: int) -> Path:
        return self.workspaces_dir / f"task-{task_id}-e{epoch}"

    def _meta(self, task_id: int, epoch: int) -> Path:
        return self.workspaces_dir / f"task-{task_id}-e{epoch}.json"

    def _ensure_dir(self) -> None:
        (self.workspaces_dir / ".locks").mkdir(parents=True, exist_ok=True)
        ignore = self.workspaces_dir / ".gitignore"
        if not ignore.exists():
            # Works in any repo, whatever its .gitignore says: git then hides this whole directory.
            try:
                with builtins.open(ignore, "x") as f:
                    f.write("# aictl task workspaces: never part of the repository\n*\n")
            except FileExistsError:
                pass

    @contextmanager
    def _task_lock(self, task_id: int, *, wait: bool = True) -> Iterator[bool]:
        """Hold task `task_id`'s flock (released by the kernel if we die); yield False if busy and not `wait`."""
        self._ensure_dir()
        fd = os.open(self.workspaces_dir / ".locks" / f"task-{task_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline, delay = time.monotonic() + TASK_LOCK_WAIT, 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        yield False
                        return
                    if time.monotonic() > deadline:
                        raise Conflict(
                            f"task {task_id}'s workspace is busy in another process",
                            hint="wait for it, or find it with: fuser "
                            + str(self.workspaces_dir / ".locks" / f"task-{task_id}.lock"),
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _entries(self, task_id: int | None = None) -> dict[int, set[int]]:
        """{task_id: {epoch, ...}} of everything on disk: worktrees, metadata, temp files."""
        found: dict[int, set[int]] = {}
        try:
            names = os.listdir(self.workspaces_dir)
        except FileNotFoundError:
            return found
        for name in names:
            m = _ENTRY.fullmatch(name)
            if m and (task_id is None or int(m[1]) == task_id):
                found.setdefault(int(m[1]), set()).add(int(m[2]))
        return found

    def _read_meta(self, task_id: int, epoch: int) -> Workspace | None:
        try:
            ws = Workspace.model_validate_json(self._meta(task_id, epoch).read_bytes())
        except (OSError, ValidationError):
            return None
        return ws if (ws.task_id, ws.lease_epoch) == (task_id, epoch) else None

    def _write_meta(self, ws: Workspace) -> None:
        final = self._meta(ws.task_id, ws.lease_epoch)
        tmp = final.with_name(final.name + ".tmp")  # one writer per task: we hold its flock
        tmp.write_text(ws.model_dump_json(indent=2))
        os.replace(tmp, final)

    def _worktree_gitdir(self, path: Path) -> Path:
        """The worktree's admin dir in the main repo, checked so git never acts on another repository."""
        _, common = self._repo()
        try:  # the agent owns this file: a FIFO or a link to /dev/zero here must not hang or flood the host
            text = read_regular(path, ".git", limit=GITFILE_LIMIT).decode("utf-8", "replace")
        except (Refused, OSError):
            text = ""
        gitdir = Path(text[len("gitdir:") :].strip()) if text.startswith("gitdir:") else None
        gitdir = (path / gitdir).resolve() if gitdir else None  # relative with worktree.useRelativePaths
        if gitdir is None or gitdir.parent != common / "worktrees":
            raise WorkspaceError(
                f"{path} is not an aictl workspace of {self.repo_root} (its .git file is missing or points elsewhere)",
                hint="start the task again in a fresh workspace",
            )
        return gitdir

    def _remove_one(self, task_id: int, epoch: int) -> None:
        """Metadata first (so a crash here leaves a leftover prune recognises), then worktree and files."""
        path = self._path(task_id, epoch)
        self._meta(task_id, epoch).unlink(missing_ok=True)
        self._meta(task_id, epoch).with_suffix(".json.tmp").unlink(missing_ok=True)
        # --force twice: also a worktree with local changes, or locked "initializing" by a killed
        # `git worktree add` (with or without its directory). Fails harmlessly if git never knew it.
        remove = ("worktree", "remove", "--force", "--force", str(path))
        if self._git(self.repo_root, *remove, check=False).returncode != 0 and path.exists():
            _rmtree(path)  # git could not delete it all; once it is gone git can drop its entry
            self._git(self.repo_root, *remove, check=False)

    def create(self, task_id: int, lease_epoch: int, *, base: str = "HEAD") -> Workspace:
        """A fresh worktree at the base commit on branch aictl/task-<id>, reset to that commit.

        Older attempts' workspaces of the task are removed first (the branch can be checked out
        only once); a newer attempt's workspace means this caller's lease is gone: LeaseLost.
        """
        top, common = self._repo()
        branch, path = branch_name(task_id), self._path(task_id, lease_epoch)
        with self._task_lock(task_id):
            existing = self._entries(task_id).get(task_id, set())
            newer = sorted(e for e in existing if e > lease_epoch)
            if newer:
                raise LeaseLost(
                    f"task {task_id} already has a workspace of a newer attempt (epoch {newer[-1]}); "
                    f"epoch {lease_epoch} is stale",
                    hint=f"claim the task again: aictl task claim --id {task_id}",
                )
            base_commit = self._resolve(base)  # before anything is removed: a typo must not cost the old workspace
            for epoch in sorted(existing):
                self._remove_one(task_id, epoch)
            self._check_branch_free(task_id, common)
            for lock in (common / "refs" / "heads" / f"{branch}.lock", common / f"{base_ref_name(task_id)}.lock"):
                lock.unlink(missing_ok=True)  # only a killed aictl process of this task leaves these
            self._git(
                top,
                "update-ref",
                "-m",
                f"aictl: workspace for task {task_id} epoch {lease_epoch}",
                "--stdin",
                input=f"update refs/heads/{branch} {base_commit}\n"
                f"update {base_ref_name(task_id)} {base_commit}\n".encode(),
            )
            if not self._from_pool(path, branch):
                self._add(top, task_id, lease_epoch, path, branch)
            ws = Workspace(
                task_id=task_id,
                lease_epoch=lease_epoch,
                path=path,
                branch=branch,
                base_ref=base,
                base_commit=base_commit,
                created_at=time.time(),
            )
            self._write_meta(ws)
            return ws

    def _add(self, top: Path, task_id: int, lease_epoch: int, path: Path, branch: str) -> None:
        add = ("worktree", "add", "--quiet", str(path), branch)
        p = self._git(top, *add, check=False)
        if p.returncode != 0 and b"missing but locked" in p.stderr:
            # A killed `git worktree add` of this very path left its entry locked; nobody else can own it.
            self._git(top, "worktree", "remove", "--force", "--force", str(path), check=False)
            p = self._git(top, *add, check=False)
        if p.returncode != 0:
            self._remove_one(task_id, lease_epoch)
            raise GitError(
                f"could not create the workspace of task {task_id} at {path}: "
                f"{p.stderr.decode('utf-8', 'replace').strip()}",
                details={"exit_code": p.returncode},
            )

    # -- the pool of finished worktrees ---------------------------------------------------------------

    @property
    def pool_dir(self) -> Path:
        return self.workspaces_dir / ".pool"

    @contextmanager
    def _pool_lock(self) -> Iterator[None]:
        self._ensure_dir()
        fd = os.open(self.workspaces_dir / ".locks" / "pool.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _slots(self) -> builtins.list[Path]:
        if not self.pool_dir.is_dir():
            return []
        return sorted(p for p in self.pool_dir.iterdir() if p.name.startswith("slot-") and not p.is_symlink())

    def _sane(self, path: Path) -> bool:
        """Is this still the worktree git made: a regular .git file naming its own admin dir under the main repo?"""
        try:
            gitdir = self._worktree_gitdir(path)
        except (OSError, AictlError):
            return False
        try:  # the admin dir must name this worktree back: not another task's, which a rewritten .git could point to
            back = read_regular(gitdir, "gitdir", limit=GITFILE_LIMIT).decode("utf-8", "replace").strip()
        except (Refused, OSError):
            return False
        return (gitdir / back).resolve() == (path / ".git").resolve()

    def _from_pool(self, path: Path, branch: str) -> bool:
        """Move a pooled worktree to `path` and check out `branch` there (forced: the files that differ are
        written); False when the pool is empty or the slot will not serve (it is removed then)."""
        if self.pool_size <= 0:
            return False
        top, _ = self._repo()
        with self._pool_lock():
            slots = self._slots()
            if not slots:
                return False
            slot = slots[0]
            moved = self._git(top, "worktree", "move", str(slot), str(path), check=False).returncode == 0
        if not moved:
            self._discard(slot)
            return False
        switched = self._git(path, "checkout", "--quiet", "--force", "--no-recurse-submodules", branch, check=False)
        if switched.returncode != 0 or self._git(path, "clean", "-ffdxq", check=False).returncode != 0:
            self._discard(path)
            return False
        return True

    def recycle(self, ws: Workspace) -> None:
        """A finished task's worktree: reset, emptied of untracked and ignored files, detached and pooled for
        the next task; removed instead when the pool is full or the worktree is not as git made it."""
        if self.pool_size <= 0:
            self.remove(ws)
            return
        with self._task_lock(ws.task_id):
            path = ws.path
            self._meta(ws.task_id, ws.lease_epoch).unlink(missing_ok=True)  # no longer this task's workspace
            strip_special(path)
            steps = (("checkout", "--quiet", "--force", "--detach"), ("clean", "-ffdxq"))  # forced: tracked files reset
            if not self._sane(path) or any(self._git(path, *a, check=False).returncode != 0 for a in steps):
                self._remove_one(ws.task_id, ws.lease_epoch)
                return
            top, _ = self._repo()
            with self._pool_lock():
                if len(self._slots()) >= self.pool_size:
                    slot = None
                else:
                    self.pool_dir.mkdir(exist_ok=True)
                    slot = self.pool_dir / f"slot-{os.getpid()}-{time.monotonic_ns()}"
                    if self._git(top, "worktree", "move", str(path), str(slot), check=False).returncode != 0:
                        slot = None
            if slot is None:
                self._remove_one(ws.task_id, ws.lease_epoch)

    def _discard(self, path: Path) -> None:
        if self._git(self.repo_root, "worktree", "remove", "--force", "--force", str(path), check=False).returncode:
            if path.exists():
                _rmtree(path)
            self._git(self.repo_root, "worktree", "prune", check=False)

    def _check_branch_free(self, task_id: int, common: Path) -> None:
        """Refuse before moving the branch if someone other than aictl has it checked out.

        A worktree entry of this task that survived its directory (killed `git worktree add`,
        then the directory deleted by hand) is debris: removed here.
        """
        branch = branch_name(task_id)
        for head in [common / "HEAD", *(common / "worktrees").glob("*/HEAD")]:
            try:
                if head.read_text().strip() != f"ref: refs/heads/{branch}":
                    continue
                # The admin dir's gitdir file names "<worktree>/.git" (relative with worktree.useRelativePaths).
                where = (
                    self.repo_root
                    if head.parent == common
                    else (head.parent / (head.parent / "gitdir").read_text().strip()).resolve().parent
                )
            except (FileNotFoundError, NotADirectoryError):
                continue
            m = _ENTRY.fullmatch(where.name)
            if where.parent == self.workspaces_dir and m and int(m[1]) == task_id:
                self._git(self.repo_root, "worktree", "remove", "--force", "--force", str(where), check=False)
                continue
            raise Conflict(
                f"branch {branch} is checked out in {where}; aictl owns that branch",
                hint="switch that checkout to another branch (git switch -), then retry",
            )

    def collect(self, ws: Workspace, *, message: str, timeout_s: float = COLLECT_TIMEOUT_S) -> Changes:
        """Commit everything in the workspace (git add -A, so .gitignore holds) on its task branch; diff vs base.

        The agent must have stopped: a git lock it left behind is waited out briefly, then removed.
        Commits the agent made itself are kept (the new commit goes on top of HEAD). Every git call shares
        one deadline (`timeout_s`): what the agent left cannot hold the worker forever.
        """
        until = time.monotonic() + timeout_s
        with self._task_lock(ws.task_id):
            if not ws.path.is_dir():
                raise NotFound(
                    f"workspace of task {ws.task_id} (epoch {ws.lease_epoch}) is gone: {ws.path}",
                    hint="it was removed or pruned; start the task again",
                )
            refused = strip_special(ws.path)  # never kept, never committed: whatever the backend let the agent make
            gitdir = self._worktree_gitdir(ws.path)
            _, common = self._repo()
            ref = f"refs/heads/{ws.branch}"
            stale = (gitdir / "index.lock", common / f"{ref}.lock")
            self._git(ws.path, "add", "--all", stale_locks=stale, until=until)
            tree = self._out(ws.path, "write-tree", stale_locks=stale, until=until)
            head, head_tree, tip = self._out(ws.path, "rev-parse", "HEAD", "HEAD^{tree}", ref).split()
            commit = head
            if tree != head_tree:
                commit = self._out(
                    ws.path,
                    *GIT_IDENTITY,
                    "commit-tree",
                    tree,
                    "-p",
                    head,
                    "-F",
                    "-",
                    input=message.encode(),
                    until=until,
                )
            if commit != tip:  # also when the agent committed on a detached HEAD: the result lands on the branch
                self._git(
                    ws.path,
                    "update-ref",
                    "-m",
                    f"aictl: collect task {ws.task_id}",
                    ref,
                    commit,
                    tip,
                    stale_locks=stale,
                )
            paths: builtins.list[str]
            if commit == ws.base_commit:  # nothing changed and nothing committed: no diff to ask git for
                paths, patch, stats = [], "", {"files": 0, "insertions": 0, "deletions": 0}
            else:
                out = self._git(
                    ws.path, "diff", *DIFF_FLAGS, "--numstat", "-p", "-z", ws.base_commit, commit, until=until
                ).stdout
                paths, patch, stats = _parse_diff(out)
            return Changes(paths=paths, diff=patch, commit=commit if paths else None, stats=stats, refused=refused)

    def write_anchor(self, ref: str, text: str) -> None:
        """Point `ref` in the main repository at a blob holding `text` (the audit chain's head, kept outside the db)."""
        top, _ = self._repo()
        blob = self._out(top, "hash-object", "-w", "--stdin", input=text.encode())
        self._git(top, "update-ref", "-m", "aictl: audit anchor", ref, blob)

    def read_anchor(self, ref: str) -> str | None:
        """The text `write_anchor` left under `ref`, or None if there is none."""
        top, _ = self._repo()
        p = self._git(top, "cat-file", "blob", ref, check=False)
        return p.stdout.decode("utf-8", "replace") if p.returncode == 0 else None

    def remove(self, ws_or_task_id: Workspace | int) -> None:
        """Remove a workspace (or every workspace of a task id): worktree and directory go, the branch stays."""
        if isinstance(ws_or_task_id, Workspace):
            task_id, epochs = ws_or_task_id.task_id, {ws_or_task_id.lease_epoch}
        else:
            task_id, epochs = int(ws_or_task_id), None
        with self._task_lock(task_id):
            for epoch in sorted(epochs or self._entries(task_id).get(task_id, set())):
                self._remove_one(task_id, epoch)

    def get(self, task_id: int) -> Workspace | None:
        """The kept workspace of a task (its newest epoch with complete metadata), or None."""
        for epoch in sorted(self._entries(task_id).get(task_id, set()), reverse=True):
            ws = self._read_meta(task_id, epoch)
            if ws is not None:
                return ws
        return None

    def list(self) -> builtins.list[Workspace]:
        found = [self._read_meta(t, e) for t, epochs in sorted(self._entries().items()) for e in sorted(epochs)]
        return [ws for ws in found if ws is not None]

    def _git_worktrees(self) -> set[Path]:
        """Paths of the worktrees git knows about (also those whose directory vanished)."""
        out = self._out(self.repo_root, "worktree", "list", "--porcelain")
        return {Path(line[len("worktree ") :]) for line in out.splitlines() if line.startswith("worktree ")}

    def prune(self, keep: Callable[[int, int], bool]) -> builtins.list[Workspace]:
        """Remove every workspace keep(task_id, epoch) rejects, and every half-created leftover.

        A task another process is working on right now (its flock is held) is skipped. Leftovers
        come back with base_commit "". Ends with `git worktree prune` for vanished directories.
        """
        _, common = self._repo()
        candidates = self._entries()
        for path in self._git_worktrees():
            m = _ENTRY.fullmatch(path.name)
            if m and path.parent == self.workspaces_dir:
                candidates.setdefault(int(m[1]), set()).add(int(m[2]))
        # A create killed inside its `update-ref` leaves a ref lock and nothing else of the task.
        ref_locks: dict[int, builtins.list[Path]] = {}
        for folder in ((common / "refs" / "heads" / branch_name(0)).parent, (common / base_ref_name(0)).parent):
            for lock in folder.glob("task-*.lock"):
                if m := _REF_LOCK.fullmatch(lock.name):
                    ref_locks.setdefault(int(m[1]), []).append(lock)
                    candidates.setdefault(int(m[1]), set())
        removed: builtins.list[Workspace] = []
        for task_id in sorted(candidates):
            with self._task_lock(task_id, wait=False) as mine:
                if not mine:
                    continue
                for lock in ref_locks.get(task_id, []):
                    lock.unlink(missing_ok=True)  # as in create: only a killed aictl process of this task leaves these
                # Look again under the lock: a create may have finished since the scan.
                epochs = candidates[task_id] | self._entries(task_id).get(task_id, set())
                for epoch in sorted(epochs):
                    ws = self._read_meta(task_id, epoch)
                    if ws is not None and ws.path.is_dir() and keep(task_id, epoch):
                        continue
                    self._remove_one(task_id, epoch)
                    removed.append(
                        ws
                        or Workspace(
                            task_id=task_id,
                            lease_epoch=epoch,
                            path=self._path(task_id, epoch),
                            branch=branch_name(task_id),
                            base_ref="",
                            base_commit="",
                            created_at=0.0,
                        )
                    )
        self._git(self.repo_root, "worktree", "prune")
        with self._pool_lock():  # a slot git no longer knows (a crash mid-move) is debris
            known = self._git_worktrees()
            for slot in self._slots():
                if slot not in known:
                    _rmtree(slot)
        return removed

    def current_branch(self) -> str | None:
        """The branch checked out in the main worktree (None on a detached HEAD)."""
        top, _ = self._repo()
        p = self._git(top, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return p.stdout.decode().strip() or None if p.returncode == 0 else None

    def task_branches(self) -> dict[int, builtins.list[str]]:
        """Task id -> its refs (refs/heads/aictl/task-N and refs/aictl/base/task-N) in the main repository."""
        top, _ = self._repo()
        found: dict[int, builtins.list[str]] = {}
        heads, bases = f"refs/heads/{BRANCH_PREFIX}", BASE_REF_PREFIX
        folders = (heads.rsplit("/", 1)[0], bases.rsplit("/", 1)[0])  # for-each-ref matches whole path components
        for ref in self._out(top, "for-each-ref", "--format=%(refname)", *folders).splitlines():
            for prefix in (heads, bases):
                if ref.startswith(prefix) and ref[len(prefix) :].isdigit():
                    found.setdefault(int(ref[len(prefix) :]), []).append(ref)
        return found

    def prune_branches(self, prunable: Callable[[int], bool]) -> builtins.list[int]:
        """Delete the task branch and base ref of every task `prunable` accepts that has no workspace here (one
        ref transaction per task, under its flock; a task someone is working on is skipped). The task ids."""
        top, _ = self._repo()
        pruned = []
        for task_id, refs in sorted(self.task_branches().items()):
            if not prunable(task_id):
                continue
            with self._task_lock(task_id, wait=False) as mine:
                if not mine or self._entries(task_id).get(task_id):
                    continue
                delete = "".join(f"delete {ref}\n" for ref in refs).encode()
                self._git(top, "update-ref", "-m", f"aictl: prune task {task_id}", "--stdin", input=delete)
                pruned.append(task_id)
        return pruned

    def diff(self, task_id: int) -> str:
        """Unified diff of branch aictl/task-<id> against the commit its last attempt started from."""
        top, _ = self._repo()
        branch = f"refs/heads/{branch_name(task_id)}"
        refs = dict(
            line.split()
            for line in self._out(
                top, "for-each-ref", "--format=%(refname) %(objectname)", branch, base_ref_name(task_id)
            ).splitlines()
        )
        if branch not in refs:
            raise NotFound(
                f"task {task_id} has no workspace branch ({branch_name(task_id)})",
                hint=f"it has not run yet; run it with: aictl task execute {task_id}",
            )
        if base_ref_name(task_id) in refs:
            base = refs[base_ref_name(task_id)]
        elif (ws := self.get(task_id)) is not None:
            base = ws.base_commit
        else:  # the base ref was deleted by hand: the best guess is where the branch left HEAD
            base = self._out(top, "merge-base", "HEAD", branch)
        return _parse_diff(self._git(top, "diff", *DIFF_FLAGS, "--numstat", "-p", "-z", base, refs[branch]).stdout)[1]
