"""Round-trip latency of aictl over MCP (stdio and streamable HTTP) against the CLI, per call.

    .venv/bin/python bench/mcp.py [--tasks 1000] [--runs 30]

A project made by `aictl init` in a temp dir with N queued tasks (in-process create_many). Then, per transport:
  - CLI:   `aictl task list -L 20 -o json`, and `aictl task claim --id I` + `aictl task complete I --epoch E`,
           each a fresh process (as an agent without MCP calls aictl);
  - stdio: one `aictl mcp serve` subprocess, the SDK's client: task_list(limit=20), task_claim + task_complete;
  - HTTP:  one `aictl mcp serve --http 127.0.0.1:0` with a bearer token, the SDK's client, the same calls.
One warm-up call of each kind first, not counted. Reported: median/min/max seconds per call (claim+complete
counted as one pair), and the CLI/stdio ratio. Goal: MCP at least 10x faster per call than a CLI process.
No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import ROOT, emit, log, machine  # noqa: E402

# This file is named mcp.py: with its folder on the path, `import mcp` would find it, not the SDK.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

AICTL = [sys.executable, "-m", "aictl"]
TOKEN = "bench:" + "b" * 40


def stats(xs: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(xs), 5),
        "min_s": round(min(xs), 5),
        "max_s": round(max(xs), 5),
        "n": len(xs),
    }


def make_project(n: int) -> str:
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    root = tempfile.mkdtemp(prefix="aictl-bench-mcp-")
    subprocess.run([*AICTL, "init"], cwd=root, check=True, capture_output=True)
    settings = load_settings(root)
    store = open_store(settings.resolved_database_url)
    TaskService(store, settings).create_many([TaskSpec(title=f"task {i}") for i in range(n)])
    store.close()
    return root


def bench_cli(root: str, runs: int, ids: list[int]) -> dict[str, Any]:
    env = {**os.environ, "AICTL_ACTOR": "bench-cli"}

    def run(*args: str) -> str:
        return subprocess.run([*AICTL, *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout

    import json

    lists, pairs = [], []
    for _ in range(runs + 1):
        t = time.perf_counter()
        run("task", "list", "-L", "20", "-o", "json")
        lists.append(time.perf_counter() - t)
        tid = ids.pop(0)
        t = time.perf_counter()
        epoch = json.loads(run("task", "claim", "--id", str(tid), "-o", "json"))["lease"]["lease_epoch"]
        run("task", "complete", str(tid), "--epoch", str(epoch), "-o", "json")
        pairs.append(time.perf_counter() - t)
    return {"task_list": stats(lists[1:]), "claim_complete": stats(pairs[1:])}


async def bench_client(client: Any, runs: int, ids: list[int]) -> dict[str, Any]:
    lists, pairs = [], []
    for _ in range(runs + 1):
        t = time.perf_counter()
        r = await client.call_tool("task_list", {"limit": 20})
        assert not r.is_error, r.content
        lists.append(time.perf_counter() - t)
        tid = ids.pop(0)
        t = time.perf_counter()
        r = await client.call_tool("task_claim", {"task_id": tid})
        assert not r.is_error, r.content
        epoch = r.structured_content["lease"]["lease_epoch"]
        r = await client.call_tool("task_complete", {"task_id": tid, "epoch": epoch})
        assert not r.is_error, r.content
        pairs.append(time.perf_counter() - t)
    return {"task_list": stats(lists[1:]), "claim_complete": stats(pairs[1:])}


def bench_stdio(root: str, runs: int, ids: list[int]) -> dict[str, Any]:
    import anyio
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "aictl", "mcp", "serve"], cwd=root, env={"AICTL_ACTOR": "bench-stdio"}
    )

    async def main() -> dict[str, Any]:
        t = time.perf_counter()
        async with Client(params) as client:
            started = time.perf_counter() - t
            out = await bench_client(client, runs, ids)
        return {**out, "connect_s": round(started, 4)}

    return anyio.run(main)


def bench_http(root: str, runs: int, ids: list[int]) -> dict[str, Any]:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    env = {**os.environ, "AICTL_MCP_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [*AICTL, "mcp", "serve", "--http", "127.0.0.1:0", "--token-env", "AICTL_MCP_TOKEN"],
        cwd=root,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        m = re.search(r"listening on (http://\S+)", proc.stderr.readline())
        assert m, "the HTTP server did not start"

        async def main() -> dict[str, Any]:
            http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + TOKEN.split(":", 1)[1]}, timeout=30)
            async with http, Client(streamable_http_client(m.group(1), http_client=http)) as client:
                return await bench_client(client, runs, ids)

        return anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    root = make_project(a.tasks)
    ids = list(range(1, a.tasks + 1))
    log(f"project with {a.tasks} tasks in {root}")
    cli = bench_cli(root, min(a.runs, 15), ids)  # a CLI pair is ~0.5 s: fewer rounds give the same median
    log(f"cli: {cli}")
    stdio = bench_stdio(root, a.runs, ids)
    log(f"stdio: {stdio}")
    http = bench_http(root, a.runs, ids)
    log(f"http: {http}")
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    ratio = {k: round(cli[k]["median_s"] / stdio[k]["median_s"], 1) for k in ("task_list", "claim_complete")}
    emit(
        {
            "bench": "mcp",
            "tasks": a.tasks,
            "runs": a.runs,
            "cli": cli,
            "stdio": stdio,
            "http": http,
            "cli_over_stdio": ratio,
            "machine": machine({"root": ROOT}),
        }
    )


if __name__ == "__main__":
    main()
