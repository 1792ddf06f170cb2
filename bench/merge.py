"""Merge queue throughput: N independent done tasks with a slow verify, batched versus one by one.

Builds a repository of --files files, then N tasks whose branches each add one file (made
with git directly and completed through the task plane, so only `aictl merge` is measured),
with the same --verify-s second verify. Merges them with --batch N, then, on a fresh copy,
one by one (batch 1); prints one JSON object with both wall times and the speed-up.

    python bench/merge.py [--tasks 100] [--files 1000] [--verify-s 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, git_state, log, machine


def git(root: Path, *args: str) -> str:
    cmd = ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def make_project(root: Path, files: int, tasks: int, verify_s: float) -> None:
    from aictl.cli.main import main
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    (root / "src").mkdir(parents=True)
    for i in range(files):
        (root / "src" / f"f{i}.txt").write_text(f"{i}\n")
    git(root, "init", "-q", "-b", "main")
    os.chdir(root)
    with contextlib.redirect_stdout(sys.stderr):
        assert main(["init", "-o", "json"]) == 0
    policy = root / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text().replace(
            "effect: require_approval\n    match:\n      actions: [merge]",
            "effect: allow\n    match:\n      actions: [merge]",
        )
    )
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    base = git(root, "rev-parse", "HEAD")
    settings = load_settings(str(root))
    svc = TaskService(open_store(settings.resolved_database_url), settings)
    for i in range(tasks):
        task = svc.create(TaskSpec(title=f"t{i}", lock_paths=[f"new/t{i}.txt"], verify=f"sleep {verify_s}"))
        blob = subprocess.run(
            ["git", "-C", str(root), "hash-object", "-w", "--stdin"],
            input=f"t{i}\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = {**os.environ, "GIT_INDEX_FILE": str(root / ".git" / f"bench-index-{i}")}
        run = lambda *a, env=env: subprocess.run(  # noqa: E731 - a private index per task
            ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", *a],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        run("read-tree", base)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},new/t{i}.txt")
        tree = run("write-tree")
        commit = run("commit-tree", tree, "-p", base, "-m", f"task {i}")
        git(root, "update-ref", f"refs/heads/aictl/task-{task.id}", commit)
        git(root, "update-ref", f"refs/aictl/base/task-{task.id}", base)
        claim = svc.claim("bench", task_id=task.id)
        assert claim is not None
        svc.complete(task.id, "bench", claim.lease.lease_epoch, result={"commit": commit})


def merge_once(root: Path, batch: int) -> dict:
    from aictl.config import load_settings
    from aictl.merge.queue import MergeQueue
    from aictl.policy.gate import load_gate
    from aictl.store import open_store

    settings = load_settings(str(root))
    queue = MergeQueue(open_store(settings.resolved_database_url), settings, policy=load_gate(root))
    t = time.monotonic()
    report = queue.run(batch=batch)
    elapsed = time.monotonic() - t
    merged = sum(e.outcome == "merged" for e in report.entries)
    assert merged == len(report.entries), [e.outcome for e in report.entries]
    return {"batch": batch, "merged": merged, "seconds": round(elapsed, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--verify-s", type=float, default=1.0)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch in (("batched", args.tasks), ("one_by_one", 1)):
            root = Path(tmp) / name
            log(f"building {name}: {args.files} files, {args.tasks} done tasks")
            make_project(root, args.files, args.tasks, args.verify_s)
            log(f"merging {name} (batch {batch})")
            results[name] = merge_once(root, batch)
    emit(
        {
            "bench": "merge",
            "tasks": args.tasks,
            "files": args.files,
            "verify_s": args.verify_s,
            **results,
            "speedup": round(results["one_by_one"]["seconds"] / results["batched"]["seconds"], 1),
            "git": git_state(),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
