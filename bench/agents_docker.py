"""Agent tasks in Docker against the local backend, for bench/overhead.py (`--agents`).

One Claude Code run = the real CLI, the claude-code connector, the fake provider on loopback scripted to write
one file and finish (two model turns). The same run on the local backend and inside the agents image with its
egress proxy, interleaved, n times each. The split of what docker adds, measured apart in the same run:

    image_start   bare `docker run --rm --network none AGENTS true`
    proxy         an egress network created and removed with its proxy started and stopped (RunNetwork)
    cli_start     `claude --version` inside the image minus image_start, against the same on the host
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import log, ms_stats

KEY_ENV = "BENCH_FAKE_KEY"


def _connector_run(backend: str, image: str, fp: Any, claude: str, root: Path, i: int) -> float:
    from aictl.agents.connectors.base import RunContext
    from aictl.agents.connectors.claude_code import ClaudeCodeConnector
    from aictl.domain.models import AIRecord
    from aictl.sandbox import SandboxSpec, get_sandbox
    from tests.fakeprovider import reply, tool

    ws = root / f"{backend}-{i}"
    ws.mkdir()
    path = str(ws / "hello.txt")  # inside docker the worktree is at its host path too
    fp.script(reply("writing", [tool("Write", {"file_path": path, "content": "hi\n"})]), reply("done"))
    ai = AIRecord(
        id="bench-claude",
        connector="claude-code",
        model="claude-sonnet-4-5",
        config={"binary": claude, "base_url": fp.url, "api_key_env": KEY_ENV, "max_retries": 0},
    )
    ctx = RunContext(
        task=None,  # type: ignore[arg-type]
        workdir=ws,
        sandbox=get_sandbox(backend),
        spec=SandboxSpec(backend=backend, image=image, timeout_s=120),
        ai=ai,
        prompt="create hello.txt",
        state_dir=root / f"state-{backend}-{i}",
    )
    t = time.perf_counter()
    res = ClaudeCodeConnector().run(ctx)
    elapsed = time.perf_counter() - t
    if not res.ok or (ws / "hello.txt").read_text() != "hi\n":
        raise SystemExit(f"{backend} agent run failed: {res.error}")
    return elapsed


def _timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def _proxy_setup() -> float:
    from aictl.sandbox import SandboxSpec
    from aictl.sandbox.docker import connect, owner_labels
    from aictl.sandbox.egressnet import RunNetwork

    client = connect()
    try:
        t = time.perf_counter()
        RunNetwork(client.api, SandboxSpec(backend="docker", egress=["127.0.0.1:9"]), owner_labels({})).close()
        return time.perf_counter() - t
    finally:
        client.close()


def run(image: str, n: int) -> dict[str, Any]:
    from aictl.agents.connectors.cli_common import find_binary
    from tests.fakeprovider.server import FakeProvider

    claude = find_binary(None, "claude")
    if claude is None:
        return {"skipped": "Claude Code not installed (.ci/install-agent-clis)"}
    os.environ[KEY_ENV] = "sk-ant-api03-benchKEYnotREAL0123456789abcdefghijklmnopq"
    docker = shutil.which("docker") or "docker"
    root = Path(tempfile.mkdtemp(prefix="aictl-bench-agents-"))
    samples: dict[str, list[float]] = {k: [] for k in ("local", "docker", "image_start", "proxy", "cli_in", "cli_host")}
    try:
        with FakeProvider() as fp:
            for i in range(n + 1):
                log(f"agent run {i + 1}/{n + 1} (local, docker, split)")
                local = _connector_run("local", image, fp, claude, root, i)
                dock = _connector_run("docker", image, fp, claude, root, i)
                image_start = _timed([docker, "run", "--rm", "--network", "none", image, "true"])
                proxy = _proxy_setup()
                cli_in = _timed([docker, "run", "--rm", "--network", "none", image, "claude", "--version"])
                cli_host = _timed([claude, "--version"])
                if i == 0:
                    continue  # warm-up: page cache, first imports
                for k, v in zip(samples, (local, dock, image_start, proxy, cli_in, cli_host), strict=True):
                    samples[k].append(v)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    return {
        "agent": "claude-code (2 model turns, one Write)",
        "runs": n,
        "local_ms": ms_stats(samples["local"]),
        "docker_ms": ms_stats(samples["docker"]),
        "docker_minus_local_ms": round(med["docker"] - med["local"], 1),
        "target_extra_ms": 1000,
        "meets_target": med["docker"] - med["local"] <= 1000,
        "split_ms": {
            "image_start": round(med["image_start"], 1),
            "proxy_network_setup_and_teardown": round(med["proxy"], 1),
            "cli_start_in_container_minus_image_start": round(med["cli_in"] - med["image_start"], 1),
            "cli_start_on_host": round(med["cli_host"], 1),
        },
    }
