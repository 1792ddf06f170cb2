"""A frozen `aictl task execute` that lost its lease exits 4 (lease lost), like every other fenced writer.

Real processes: the first executor runs a task with a 1 s lease and is frozen (SIGSTOP) while its
command runs; a second executor takes the task once the lease has expired and finishes it (which
removes the first one's workspace); the first is then thawed (SIGCONT). It must say lease lost and
exit 4 — not "workspace gone" (exit 3) — and write nothing: the task stays done by the second run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


def _aictl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aictl.cli.main", *args], cwd=root, capture_output=True, text=True, timeout=60
    )


def _until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_thawed_executor_whose_lease_was_taken_exits_4(git_project, tmp_path):
    created = _aictl(
        git_project,
        "task",
        "create",
        "slow",
        "--command",
        "sleep 1; echo run >> marker.txt",
        "--lock",
        "marker.txt",
        "-o",
        "json",
    )
    tid = str(json.loads(created.stdout)["id"])
    err = tmp_path / "first.err"
    with err.open("w") as e:
        first = subprocess.Popen(
            [sys.executable, "-m", "aictl.cli.main", "task", "execute", tid, "--ttl", "1"],
            cwd=git_project,
            stdout=subprocess.PIPE,
            stderr=e,
            text=True,
        )
    try:
        _until(lambda: "running" in err.read_text())
        first.send_signal(signal.SIGSTOP)
        second = _until(lambda: (p := _aictl(git_project, "task", "execute", tid, "--ttl", "30")).returncode == 0 and p)
        assert "done" in second.stdout
    finally:
        first.send_signal(signal.SIGCONT)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 4, (out, err.read_text())
    assert "lease_lost" in out and "gone" not in out
    task = json.loads(_aictl(git_project, "task", "get", tid, "-o", "json").stdout)
    assert task["status"] == "done" and task["lease_epoch"] >= 2
