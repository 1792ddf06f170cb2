"""Cost of a Claude Code / Codex PreToolUse hook decision, end to end, against a bare interpreter start.

    .venv/bin/python bench/hook.py [--n 300] [--backend sqlite]

What Claude Code pays per tool call with aictl's hook: it starts `python -I -S pretooluse.py SOCKET`
with the call on stdin, the client asks the run's decision socket (hookserver.py, a thread of the
executor), the server maps the call to policy actions, RunPolicy decides each and writes its
Decision Record with its audit event (one SQLite transaction each), and the client prints the
hook's JSON. Measured from process start to its exit, as the CLI sees it.

Prints one JSON object on stdout (progress on stderr):

* hook.<call>: the end-to-end latency of each call kind (ms: p50/p90/p99/max), round-robin
  over the calls: a denied Read of a secret (1 decision), an allowed Write (1), a Bash `cat`
  (2: run_command and read_path), a denied `git push` (1).
* baseline: `python -I -S -c pass` started the same way, interleaved with the hook calls, so
  both see the same machine load; `hook_minus_baseline_p99_ms` is what aictl adds.
* socket_only: the same requests sent from this process straight to the socket (no process
  start): the decision and its records, plus the round trip.

Target: under 50 ms p99 end to end. No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, log, machine

from aictl.agents.connectors import pretooluse
from aictl.agents.connectors.hookserver import HookServer

POLICY = (
    (Path(__file__).resolve().parent.parent / "policies" / "protect-secrets.yaml").read_text()
    + """
  - id: commands
    effect: allow
    match: {actions: [run_command]}
  - id: no-push
    effect: deny
    match: {actions: [run_command], programs: ["git push"]}
"""
)


def percentiles(samples: list[float]) -> dict[str, float]:
    xs = sorted(samples)

    def at(q: float) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3, 3)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": round(xs[-1] * 1e3, 3), "n": len(xs)}


def calls(ws: Path) -> dict[str, bytes]:
    def call(tool: str, tool_input: dict[str, Any]) -> bytes:
        body = {"hook_event_name": "PreToolUse", "cwd": str(ws), "tool_name": tool, "tool_input": tool_input}
        return json.dumps(body).encode()

    return {
        "read_secret_denied": call("Read", {"file_path": str(ws / "secrets" / "token.txt")}),
        "write_allowed": call("Write", {"file_path": str(ws / "src" / "a.py"), "content": "x = 1\n" * 50}),
        "bash_cat_two_decisions": call("Bash", {"command": "cat src/app.py | wc -l"}),
        "bash_push_denied": call("Bash", {"command": "git push origin HEAD"}),
    }


def timed_process(argv: list[str], payload: bytes) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=payload, capture_output=True, env={}, check=True)
    return time.perf_counter() - t0, proc.stdout


def socket_call(path: str, payload: bytes) -> float:
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="hook calls per kind")
    args = parser.parse_args()

    from aictl.domain.models import AIRecord
    from aictl.policy.gate import load_gate
    from aictl.policy.runtime import RunPolicy
    from aictl.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="aictl-bench-hook-"))
    ws = tmp / "ws"
    (ws / "secrets").mkdir(parents=True)
    (ws / "src").mkdir()
    (ws / "secrets" / "token.txt").write_text("s3cret\n")
    (ws / "src" / "app.py").write_text("print('hi')\n")
    (tmp / "project" / ".ai").mkdir(parents=True)
    (tmp / "project" / ".ai" / "policy.yaml").write_text(POLICY)
    url = f"sqlite:///{tmp / 'state.db'}"
    open_store(url).close()  # schema in place before the clock starts
    run = RunPolicy(
        load_gate(tmp / "project", state_dir=tmp / "home"),
        open_store=lambda: open_store(url),
        task={"id": 1, "title": "bench", "labels": []},
        ai=AIRecord(id="bench-ai", connector="claude-code"),
        epoch=1,
        roots=(ws,),
    )
    payloads = calls(ws)
    hook_samples: dict[str, list[float]] = {k: [] for k in payloads}
    baseline: list[float] = []
    socket_samples: list[float] = []
    bare = [sys.executable, "-I", "-S", "-c", "pass"]
    with HookServer(run.decide, ws) as server:
        client = [sys.executable, "-I", "-S", pretooluse.__file__, server.path]
        for kind, payload in payloads.items():  # warm-up, and a check that each answers as expected
            _t, out = timed_process(client, payload)
            log(f"{kind}: {out.decode().strip()[:120]}")
        log(f"{args.n} rounds of {len(payloads)} hook calls and {len(payloads)} bare starts")
        for i in range(args.n):
            for kind, payload in payloads.items():
                hook_samples[kind].append(timed_process(client, payload)[0])
                baseline.append(timed_process(bare, b"")[0])
            if (i + 1) % 50 == 0:
                log(f"round {i + 1}/{args.n}")
        for _ in range(args.n):
            for payload in payloads.values():
                socket_samples.append(socket_call(server.path, payload))
    decided = run.decided
    run.close()
    everything = [s for v in hook_samples.values() for s in v]
    result = {
        "benchmark": "hook",
        "machine": machine(),
        "n_per_kind": args.n,
        "hook": {k: percentiles(v) for k, v in hook_samples.items()},
        "hook_all": percentiles(everything),
        "baseline_python_I_S_pass": percentiles(baseline),
        "socket_only": percentiles(socket_samples),
        "decisions_recorded": decided,
    }
    result["hook_minus_baseline_p99_ms"] = round(
        result["hook_all"]["p99_ms"] - result["baseline_python_I_S_pass"]["p99_ms"], 3
    )
    emit(result)


if __name__ == "__main__":
    main()
