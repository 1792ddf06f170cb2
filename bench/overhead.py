"""Executor overhead per task: `aictl task execute` with the command connector running `true`.

Measures the whole path in-process (claim → policy → git worktree → run → evidence →
checks → complete → workspace removed) on a small repository, for the local backend
and, when an engine answers, the docker backend; and times a bare
`docker run --rm --network none IMAGE true` in the same run as the floor Docker
itself costs. The bare runs alternate with the docker tasks (one after each), so a
change in the machine's load moves both alike. With `--agents N`, also an agent task
(Claude Code against the fake provider) on the local backend and inside the agents
image behind its egress proxy, with the split of what docker adds (bench/agents_docker.py).
Prints one JSON object.

    python bench/overhead.py [--tasks 30] [--docker-tasks 10] [--no-docker] [--agents 5]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import emit, git_state, log, machine, ms_stats


def make_project(root: Path, backend: str, image: str) -> Path:
    from aictl.cli.main import main

    (root / "src").mkdir(parents=True)
    for i in range(20):
        (root / "src" / f"m{i}.py").write_text(f"x = {i}\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    import os

    os.chdir(root)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the benchmark's JSON
        assert main(["init", "-o", "json"]) == 0
    (root / ".ai" / "config.yaml").write_text(
        f"sandbox_backend: {backend}\nsandbox_image: {image}\nheartbeat_interval: 5\nlease_ttl: 60\n"
    )
    subprocess.run(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"], check=True
    )
    return root


def run_executor(root: Path, backend: str, image: str, n: int, between: Callable[[], float] | None = None) -> dict:
    from aictl.config import load_settings
    from aictl.execution.executor import ExecuteOptions, Executor
    from aictl.policy.gate import load_gate
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    make_project(root, backend, image)
    settings = load_settings(root)
    store = open_store(settings.resolved_database_url)
    svc = TaskService(store, settings)
    ids = [
        t.id
        for t in svc.create_many([TaskSpec(title=f"t{i}", command="true", lock_paths=["src/**"]) for i in range(n + 2)])
    ]
    executor = Executor(store, settings, policy=load_gate(root))
    totals, phases, baseline = [], {}, []
    for i, tid in enumerate(ids):
        t = time.perf_counter()
        rep = executor.execute(tid, ExecuteOptions(owner="bench"))
        elapsed = time.perf_counter() - t
        if rep.outcome != "done":
            raise SystemExit(f"task {tid} ended {rep.outcome}: {rep.reason}")
        floor = between() if between is not None else None
        if i < 2:
            continue  # warm-up: first imports, page cache
        totals.append(elapsed)
        if floor is not None:
            baseline.append(floor)
        for k, v in rep.timings.items():
            phases.setdefault(k, []).append(v)
    store.close()
    out = {
        "backend": backend,
        "tasks": n,
        "execute_ms": ms_stats(totals),
        "phases_ms": {k: ms_stats(v) for k, v in phases.items()},
    }
    if baseline:
        out["bare_docker_run_ms"] = ms_stats(baseline)
        pairs = zip(phases["until_complete"][-len(baseline) :], baseline, strict=True)
        out["median_pair_ratio"] = round(statistics.median(a / b for a, b in pairs), 3)
    return out


def bare_docker(image: str) -> float:
    """One `docker run --rm --network none IMAGE true`, in seconds: the floor Docker itself costs."""
    docker = shutil.which("docker") or "docker"
    t = time.perf_counter()
    subprocess.run([docker, "run", "--rm", "--network", "none", image, "true"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--docker-tasks", type=int, default=10)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--image", default="aictl-sandbox:latest")
    ap.add_argument("--agents", type=int, default=0, help="agent runs per backend (0: skip; needs the agents image)")
    ap.add_argument("--agents-image", default="aictl-agents:latest")
    args = ap.parse_args()
    out = {"benchmark": "executor_overhead", "machine": machine(), "code": git_state(), "results": []}
    base = Path(tempfile.mkdtemp(prefix="aictl-overhead-"))
    try:
        log(f"local backend, {args.tasks} tasks")
        local = run_executor(base / "local", "local", args.image, args.tasks)
        # The path is claim → worktree → run → evidence → complete; removing the
        # workspace afterwards is reported separately (phases_ms.cleanup).
        local["target_ms"] = 100
        local["until_complete_median_ms"] = local["phases_ms"]["until_complete"]["median_ms"]
        local["meets_target"] = local["until_complete_median_ms"] < 100
        out["results"].append(local)
        if not args.no_docker:
            from aictl.sandbox.image import build_image, engine_status

            status = engine_status(args.image)
            if not status.get("reachable"):
                out["docker"] = {"skipped": "no Docker engine answers (start dockerd)"}
            else:
                if not status.get("image_present"):
                    log("building the sandbox image")
                    build_image(args.image)
                log(f"docker backend, {args.docker_tasks} tasks, each followed by a bare docker run")
                dock = run_executor(
                    base / "docker", "docker", args.image, args.docker_tasks, between=lambda: bare_docker(args.image)
                )
                bare = dock["bare_docker_run_ms"]
                dock["ratio_to_bare"] = round(dock["phases_ms"]["until_complete"]["median_ms"] / bare["median_ms"], 3)
                dock["target_ratio"] = 1.15
                dock["meets_target"] = dock["ratio_to_bare"] <= 1.15
                out["results"].append(dock)
                if args.agents:
                    import agents_docker

                    out["agents"] = agents_docker.run(args.agents_image, args.agents)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    sys.exit(main())
