"""Whole-process latency of the aictl CLI against a project holding 10,000 tasks.

    .venv/bin/python bench/cli_latency.py [--tasks 10000] [--runs 7] [--aictl PATH]

Each command is a fresh process (`.venv/bin/aictl ...`), run in a project made by
`aictl init` in a temp dir and pre-filled in-process with TaskService.create_many
(5,000 per transaction). Commands run round-robin (one warm-up round first, not
counted) so machine noise spreads over all of them. The lease commands act on tasks
claimed in-process beforehand: `task heartbeat` extends one held lease each round,
`task complete` finishes the next pre-claimed task each round, `task claim` takes the
next queued one. `--aictl` times another installation's `aictl` (e.g. a checkout before
a change) against a store filled by this one. Reported: median/min/max
seconds per command, with `python -c pass` (interpreter start) and
`python -c "import aictl.cli.main"` (imports only) as floors.

Then `python -X importtime -m aictl task list` (output discarded): the 10 imports
with the largest cumulative time, and the 10 with the largest self time, so a
reader sees where start-up goes. And an in-process split of `task list` on the
same store: query + Task models, and JSON rendering.

Target: every hot command under 0.2 s, `aictl --help` under 0.15 s. No timing is asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, emit, log, machine

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
PY = os.path.join(VENV_BIN, "python") if os.path.exists(os.path.join(VENV_BIN, "python")) else sys.executable
AICTL = [os.path.join(VENV_BIN, "aictl")] if os.path.exists(os.path.join(VENV_BIN, "aictl")) else [PY, "-m", "aictl"]
LOCAL_AICTL = AICTL
TARGET_S = 0.2
HELP_TARGET_S = 0.15


def clean_env(cfg_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICTL_")}
    env["AICTL_CONFIG_DIR"] = cfg_dir  # no user-level config leaks in
    env["AICTL_ACTOR"] = "bench@localhost"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let the first (warm-up) run write .pyc like an installed CLI
    return env


def make_project(tasks: int, held: int) -> tuple[str, dict[str, str], dict[str, Any]]:
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    base = tempfile.mkdtemp(prefix="aictl-bench-cli-")
    proj, cfg = os.path.join(base, "repo"), os.path.join(base, "cfg")
    os.makedirs(proj)
    os.makedirs(cfg)
    env = clean_env(cfg)
    r = subprocess.run([*LOCAL_AICTL, "init"], cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"aictl init failed ({r.returncode}): {r.stderr.strip()}")
    settings = load_settings(proj)
    store = open_store(settings.resolved_database_url)
    svc = TaskService(store, settings)
    t0 = time.perf_counter()
    for start in range(0, tasks, 5000):
        svc.create_many(
            [
                TaskSpec(title=f"bench task {i}", priority=i % 5, labels=["bench"] if i % 3 == 0 else [])
                for i in range(start, min(tasks, start + 5000))
            ]
        )
        log(f"  filled {min(tasks, start + 5000)}/{tasks}")
    fill_s = time.perf_counter() - t0
    # Leases for the lease commands: one kept alive by heartbeats, then one per round to complete.
    leases = [svc.claim("bench@localhost", ttl=3600) for _ in range(held)]
    store.close()
    return (
        proj,
        env,
        {
            "tasks": tasks,
            "seconds": round(fill_s, 2),
            "how": "TaskService.create_many, 5,000 per tx",
            "database_url": "sqlite (.ai/state.db)",
            "held": [(r.task.id, r.lease.lease_epoch) for r in leases if r is not None],
        },
    )


def time_once(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return dt, len(r.stdout), r.returncode


def importtime(cwd: str, env: dict[str, str]) -> dict[str, Any]:
    """Parse `python -X importtime` (stderr: 'import time: self [us] | cumulative | imported package')."""
    r = subprocess.run(
        [PY, "-X", "importtime", "-m", "aictl", "task", "list"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:") :].split("|", 2)
            rows.append(
                {
                    "module": name.rstrip(),
                    "self_ms": int(self_us) / 1e3,
                    "cumulative_ms": int(cum_us) / 1e3,
                    "depth": (len(name) - len(name.lstrip())) // 2,
                }
            )
        except ValueError:
            continue
    for row in rows:
        row["module"] = row["module"].strip()
    top_level = [r for r in rows if r["depth"] == 0]
    by_cum = sorted(rows, key=lambda r: r["cumulative_ms"], reverse=True)[:10]
    by_self = sorted(rows, key=lambda r: r["self_ms"], reverse=True)[:10]

    def fmt(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "module": r["module"],
                "cumulative_ms": round(r["cumulative_ms"], 1),
                "self_ms": round(r["self_ms"], 1),
            }
            for r in rs
        ]

    heavy = {}
    for name in (
        "typer",
        "click",
        "rich",
        "pydantic",
        "yaml",
        "sqlite3",
        "psycopg",
        "sqlmodel",
        "sqlalchemy",
        "pathspec",
        "celpy",
        "cel",
        "anthropic",
        "openai",
        "structlog",
        "httpx",
    ):
        hit = [r for r in rows if r["module"] == name]
        if hit:
            heavy[name] = round(hit[0]["cumulative_ms"], 1)
    return {
        "modules_imported": len(rows),
        "total_import_ms": round(sum(r["cumulative_ms"] for r in top_level), 1),
        "top10_cumulative": fmt(by_cum),
        "top10_self": fmt(by_self),
        "selected_packages_cumulative_ms": heavy,
    }


def inprocess_list(proj: str) -> dict[str, Any]:
    """Where `task list -o json` spends its time once imports are done."""
    from aictl.cli.output import Output
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.queries import TaskQueries

    out: dict[str, list[float]] = {"load_settings": [], "open_store": [], "query_list_all": [], "render_json": []}
    for _ in range(5):
        t0 = time.perf_counter()
        settings = load_settings(proj)
        t1 = time.perf_counter()
        store = open_store(settings.resolved_database_url)
        t2 = time.perf_counter()
        tasks = TaskQueries(store).list(limit=500)
        t3 = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            Output("json").emit(tasks)
        t4 = time.perf_counter()
        store.close()
        for k, v in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            out[k].append(v)
    res: dict[str, Any] = {k + "_ms": round(statistics.median(v) * 1e3, 1) for k, v in out.items()}
    res["tasks_listed"] = len(tasks)
    return res


def main() -> int:
    global AICTL, PY
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--aictl", help="the aictl executable to time (default: this checkout's .venv/bin/aictl)")
    args = ap.parse_args()
    if args.aictl:
        AICTL = [os.path.abspath(args.aictl)]
        PY = os.path.join(os.path.dirname(AICTL[0]), "python")

    log(f"making a project with {args.tasks} tasks")
    proj, env, fill = make_project(args.tasks, args.runs + 2)
    (hb_id, hb_epoch), to_complete = fill["held"][0], fill.pop("held")[1:]
    owner = ["--owner", "bench@localhost"]
    commands: dict[str, Callable[[int], list[str]]] = {
        "python -c pass": lambda r: [PY, "-c", "pass"],
        "python -c 'import aictl.cli.main'": lambda r: [PY, "-c", "import aictl.cli.main"],
        "aictl --help": lambda r: [*AICTL, "--help"],
        "aictl task create TITLE": lambda r: [*AICTL, "task", "create", "bench title"],
        "aictl task get 1 -o json": lambda r: [*AICTL, "task", "get", "1", "-o", "json"],
        "aictl task list -o json": lambda r: [*AICTL, "task", "list", "-o", "json"],
        "aictl task list -o json --limit 20": lambda r: [*AICTL, "task", "list", "-o", "json", "--limit", "20"],
        "aictl task claim": lambda r: [*AICTL, "task", "claim", *owner],
        "aictl task heartbeat ID --epoch N": lambda r: [
            *AICTL,
            "task",
            "heartbeat",
            str(hb_id),
            "--epoch",
            str(hb_epoch),
            *owner,
        ],
        "aictl task complete ID --epoch N": lambda r: [
            *AICTL,
            "task",
            "complete",
            str(to_complete[r][0]),
            "--epoch",
            str(to_complete[r][1]),
            *owner,
        ],
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    out_bytes: dict[str, int] = {}
    try:
        for rnd in range(args.runs + 1):  # round 0 is the warm-up
            for name, argv in commands.items():
                dt, nbytes, _ = time_once(argv(rnd), proj, env)
                out_bytes[name] = nbytes
                if rnd:
                    samples[name].append(dt)
            log(f"round {rnd}/{args.runs} done" + (" (warm-up)" if rnd == 0 else ""))
        results = []
        for name, xs in samples.items():
            med = statistics.median(xs)
            row = {
                "command": name,
                "median_s": round(med, 3),
                "min_s": round(min(xs), 3),
                "max_s": round(max(xs), 3),
                "stdout_bytes": out_bytes[name],
            }
            if name.startswith("aictl"):
                target = HELP_TARGET_S if name == "aictl --help" else TARGET_S
                row["target_s"] = target
                row["under_target"] = med < target
            results.append(row)
        log("python -X importtime -m aictl task list")
        imports = importtime(proj, env)
        log("in-process split of task list")
        split = inprocess_list(proj)
        emit(
            {
                "benchmark": "cli_latency",
                "runs": args.runs,
                "fill": fill,
                "aictl": " ".join(AICTL),
                "results": results,
                "importtime_task_list": imports,
                "inprocess_task_list": split,
                "target": f"each hot aictl command < {TARGET_S} s, aictl --help < {HELP_TARGET_S} s (median)",
                "machine": machine(),
            }
        )
    finally:
        shutil.rmtree(os.path.dirname(proj), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
