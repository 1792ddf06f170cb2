"""Workflows: the engine's cost per step transition, and a 200-step fan-out through the daemon.

* overhead: a chain of N command steps (`true`) run by the foreground driver in-process; every step task's
  own run (Executor.execute: claim, worktree, sandbox, evidence, complete) is timed apart. Engine overhead
  per step = (whole run − Σ step task runs) / N: the advances (facts, the transaction that creates the next
  task), approvals aside. Also one no-op advance (nothing finished) on its own.
* fan-out: a workflow with one `for_each` step of N command steps (`true`) and a join, started with a real
  `aictl daemon start` (4 workers); steps/s = N / (last `complete` − first `claim` of the fan-out's tasks),
  against the same daemon running N plain `true` tasks created in one batch (bench/daemon.py's measure),
  in the same run.

    python bench/workflows.py [--chain 30] [--fan 200] [--workers 4] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import emit, git_state, log, machine, ms_stats
from daemon import Project, _env, throughput


def chain_yaml(n: int) -> str:
    steps = ["  - id: s0\n    command: 'true'\n"]
    steps += [f"  - id: s{i}\n    needs: [s{i - 1}]\n    command: 'true'\n" for i in range(1, n)]
    return "version: 1\nname: chain\nsteps:\n" + "".join(steps)


FAN = """version: 1
name: fan
inputs:
  items: {type: list}
steps:
  - id: each
    for_each: ${{ inputs.items }}
    command: 'true'
  - id: join
    needs: [each]
    command: 'true'
"""


def overhead(base: Path, url: str | None, n: int) -> dict:
    from aictl.execution.executor import Executor
    from aictl.workflows.driver import drive
    from aictl.workflows.engine import WorkflowEngine
    from aictl.workflows.loader import load_text

    p = Project(base, url)
    with _env(p.env):
        settings = p.settings()
        store = p.store()
        engine = WorkflowEngine(store, settings)
        executor = Executor(store, settings)
        spent: list[float] = []
        real = executor.execute

        def timed(task_id, opts):
            t = time.perf_counter()
            try:
                return real(task_id, opts)
            finally:
                spent.append(time.perf_counter() - t)

        executor.execute = timed  # type: ignore[method-assign]
        wf = load_text(chain_yaml(n), "chain.yaml")
        t0 = time.perf_counter()
        run = engine.start(wf, {})
        run = drive(engine, run.id, executor=executor, owner="bench/fg")
        total = time.perf_counter() - t0
        assert run.status == "succeeded", run.reason
        noop = []
        for _ in range(50):
            t = time.perf_counter()
            engine.advance(run.id)
            noop.append(time.perf_counter() - t)
        store.close()
    engine_s = total - sum(spent)
    return {
        "steps": n,
        "run_s": round(total, 3),
        "step_tasks_s": round(sum(spent), 3),
        "step_task_ms": ms_stats(spent),
        "engine_ms_per_step": round(engine_s / n * 1000, 2),
        "advance_of_a_finished_run_ms": ms_stats(noop),
    }


def fan_out(base: Path, url: str | None, n: int, workers: int) -> dict:
    import json
    import subprocess
    import sys

    p = Project(base, url)
    (p.root / ".ai" / "workflows" / "fan.yaml").write_text(FAN)
    store = p.store()
    p.start(workers)
    try:
        items = json.dumps(list(range(n)))
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "aictl", "workflow", "run", "fan", "--input", f"items={items}", "-o", "json"],
            cwd=p.root,
            env=p.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            raise SystemExit(f"workflow run failed: {r.stderr}")
        rid = json.loads(r.stdout)["id"]
        while True:
            with store.read() as tx:
                status = tx.one("SELECT status FROM workflow_runs WHERE id = :r", {"r": rid})["status"]
            if status != "running":
                break
            if time.monotonic() - t0 > 900:
                raise SystemExit("the fan-out did not finish in 900 s")
            time.sleep(0.2)
        wall = time.monotonic() - t0
    finally:
        p.stop()
    with store.read() as tx:
        ids = json.loads(
            tx.one("SELECT tasks FROM workflow_steps WHERE run_id = :r AND step_id = 'each'", {"r": rid})["tasks"]
        )
        lo, hi = min(ids), max(ids)
        first = tx.one(
            "SELECT MIN(ts) AS t FROM events WHERE action = 'claim' AND task_id BETWEEN :a AND :b", {"a": lo, "b": hi}
        )["t"]
        last = tx.one(
            "SELECT MAX(ts) AS t FROM events WHERE action = 'complete' AND task_id BETWEEN :a AND :b",
            {"a": lo, "b": hi},
        )["t"]
        finished = tx.one("SELECT MAX(ts) AS t FROM events WHERE action = 'workflow_finish'")["t"]
    store.close()
    span = last - first
    return {
        "workers": workers,
        "steps": n,
        "status": status,
        "seconds": round(span, 2),
        "steps_per_s": round(n / span, 1),
        "last_item_to_run_finished_s": round(finished - last, 3),
        "wall_s_including_start": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=30)
    ap.add_argument("--fan", type=int, default=200)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--backends", default="sqlite")
    a = ap.parse_args()
    out: dict = {"bench": "workflows", "machine": machine(), "code": git_state(), "results": {}}
    for backend in a.backends.split(","):
        pg = None
        url = None
        if backend == "postgres":
            from tests.pgserver import PgServer

            pg = PgServer().start()
            url = "postgres"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                log(f"{backend}: overhead, a chain of {a.chain} command steps")
                res = {"overhead": overhead(Path(tmp) / "chain", url and _fresh(pg, "chain"), a.chain)}
                log(f"{backend}: {a.fan} plain tasks through the daemon")
                res["plain_tasks"] = throughput(Path(tmp) / "plain", url and _fresh(pg, "plain"), a.workers, a.fan)
                log(f"{backend}: a {a.fan}-step fan-out through the daemon")
                res["fan_out"] = fan_out(Path(tmp) / "fan", url and _fresh(pg, "fan"), a.fan, a.workers)
                res["fan_out_vs_plain"] = round(res["fan_out"]["steps_per_s"] / res["plain_tasks"]["tasks_per_s"], 2)
                out["results"][backend] = res
        finally:
            if pg is not None:
                pg.stop()
    emit(out)


def _fresh(pg, name: str) -> str:
    return pg.create_database()


if __name__ == "__main__":
    main()
