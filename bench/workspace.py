"""Workspace setup on a big repository: a fresh `git worktree add` per task versus the pool of reused worktrees.

Builds a repository of --files files (spread over directories, ~100 bytes each), then runs --tasks task
workspaces one after another with each manager: create (the setup a task waits for), change one file, collect,
then remove (fresh) or recycle (pooled). Then, pooled, the start of a task from 3 dependencies' commits
(start_point folds them with merge-tree) against a plain start. Both managers run in the same process on
the same repository, so the ratio is fair on a loaded machine. Also times a bare `git worktree add` +
`remove` as the floor of the fresh path. Prints one JSON object.

    python bench/workspace.py [--files 20000] [--tasks 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import emit, git_state, log, machine


def git(root: Path, *args: str) -> str:
    cmd = ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: int) -> None:
    git(root.parent, "init", "-q", "-b", "main", str(root))
    for i in range(files):
        d = root / f"pkg{i % 200:03d}" / f"mod{(i // 200) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.py").write_text(f"# file {i}\nVALUE = {i}\n" + "x = 1\n" * 12)
    (root / ".gitignore").write_text("build/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "big repo")


def run_tasks(mgr, first_id: int, tasks: int, pooled: bool) -> dict[str, list[float]]:
    setup, cleanup = [], []
    for n in range(tasks):
        t0 = time.perf_counter()
        ws = mgr.create(first_id + n, 1)
        setup.append(time.perf_counter() - t0)
        (ws.path / "pkg000" / "mod0" / "f0.py").write_text(f"VALUE = {n}\n")
        (ws.path / "build").mkdir(exist_ok=True)
        (ws.path / "build" / "out.o").write_text("ignored build output\n")
        mgr.collect(ws, message=f"task {first_id + n}")
        t0 = time.perf_counter()
        mgr.recycle(ws) if pooled else mgr.remove(ws)
        cleanup.append(time.perf_counter() - t0)
    return {"setup": setup, "cleanup": cleanup}


def dependent_start(mgr, tasks: int) -> dict[str, list[float]]:
    """Starting from 3 dependencies' commits (folded with merge-tree, no worktree) against a plain start."""
    from aictl.sandbox.startpoint import start_point

    deps = []
    for n, t in enumerate((30_001, 30_002, 30_003)):
        ws = mgr.create(t, 1)
        (ws.path / f"pkg00{n}" / "mod1" / f"dep{n}.py").write_text(f"DEP = {n}\n")
        deps.append((t, mgr.collect(ws, message=f"dep {n}").commit))
        mgr.recycle(ws)
    plain, folded = [], []
    for n in range(tasks):
        t0 = time.perf_counter()
        ws = mgr.create(40_000 + n, 1)
        plain.append(time.perf_counter() - t0)
        mgr.recycle(ws)
        t0 = time.perf_counter()
        start = start_point(mgr, "HEAD", deps)
        ws = mgr.create(50_000 + n, 1, base=start.commit)
        folded.append(time.perf_counter() - t0)
        mgr.recycle(ws)
    return {"plain": plain, "from_3_deps": folded}


def stats(xs: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(xs), 4), "max_s": round(max(xs), 4), "n": len(xs)}


def main() -> None:
    from aictl.sandbox.workspace import WorkspaceManager

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--tasks", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aictl-bench-ws-") as tmp:
        root = Path(tmp) / "repo"
        log(f"building a repository of {args.files} files")
        make_repo(root, args.files)
        bare = []
        for n in range(5):
            t0 = time.perf_counter()
            git(root, "worktree", "add", "-q", "--detach", str(Path(tmp) / f"bare{n}"))
            bare.append(time.perf_counter() - t0)
            git(root, "worktree", "remove", "--force", str(Path(tmp) / f"bare{n}"))
        fresh = WorkspaceManager(root, root / ".ai" / "ws-fresh", pool_size=0)
        pooled = WorkspaceManager(root, root / ".ai" / "ws-pooled", pool_size=2)
        log("fresh worktree per task")
        f = run_tasks(fresh, 1, args.tasks, pooled=False)
        log("pooled worktrees")
        pooled.create(10_000, 1)  # the first task of a host pays a fresh add; the pool serves the rest
        pooled.recycle(pooled.get(10_000))  # type: ignore[arg-type]
        p = run_tasks(pooled, 20_000, args.tasks, pooled=True)
        log("dependent starts")
        d = dependent_start(pooled, args.tasks)
    result = {
        "bench": "workspace",
        "files": args.files,
        "tasks": args.tasks,
        "bare_worktree_add": stats(bare),
        "fresh": {"setup": stats(f["setup"]), "cleanup": stats(f["cleanup"])},
        "pooled": {"setup": stats(p["setup"]), "cleanup": stats(p["cleanup"])},
        "setup_speedup": round(statistics.median(f["setup"]) / statistics.median(p["setup"]), 2),
        "start_plain": stats(d["plain"]),
        "start_from_3_deps": stats(d["from_3_deps"]),
        "from_3_deps_extra_s": round(statistics.median(d["from_3_deps"]) - statistics.median(d["plain"]), 4),
        "goal": "pooled setup under 0.3 s median on 20,000 files; 3 dependencies add under 0.1 s",
        "machine": machine(),
        "git": git_state(),
    }
    emit(result)


if __name__ == "__main__":
    main()
