"""A run never outlives the process that holds its lease: SIGKILL `aictl task execute` mid-run, reclaim the
task, and exactly one copy of the agent writes. The agent backgrounds its writer, so the parent-death
signal alone (which reaches only its direct child) is not enough: the reclaim must kill the recorded group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aictl.config import load_settings
from aictl.execution.executor import ExecuteOptions, Executor, Outcome
from aictl.policy.gate import load_gate
from aictl.store import open_store
from tests.conftest import run_cli

# Each copy appends its own tag every 0.1 s, from a background subshell the shell waits for; 3 s in all.
WRITER = (
    "tag=$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); ( for i in $(seq 30); do echo $tag >> {marker}; "
    "sleep 0.1; done ) & wait; echo y > src/y.py"
)


def tags(marker) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def kill_executor_mid_run(git_project, marker, *extra, writer: str = WRITER) -> int:
    tid = json.loads(
        run_cli(
            "task",
            "create",
            "writer",
            "--lock",
            "src/**",
            "--command",
            writer.format(marker=marker),
            "-o",
            "json",
            cwd=git_project,
        ).stdout
    )["id"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aictl",
            "task",
            "execute",
            str(tid),
            "--owner",
            "doomed",
            "--ttl",
            "2",
            *extra,
            "-o",
            "json",
        ],
        cwd=git_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(tags(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tags(marker), "the first copy never started writing"
    finally:
        proc.send_signal(signal.SIGKILL)  # the executor alone: no cleanup, its agent is left to itself
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return tid


def reclaim_and_check(git_project, marker, tid, **opts) -> None:
    settings = load_settings(git_project)
    with open_store(settings.resolved_database_url) as store:
        rep = Executor(store, settings, policy=load_gate(git_project), clock=lambda: time.time() + 3).execute(
            tid, ExecuteOptions(owner="survivor", **opts)
        )
    assert rep.outcome is Outcome.DONE and rep.lease_epoch == 2, rep.reason
    first, *others = dict.fromkeys(tags(marker))
    assert len(others) == 1, "the second copy never wrote"
    lines = tags(marker)
    second_started = lines.index(others[0])
    assert first not in lines[second_started:], f"both copies wrote side by side: {lines}"
    time.sleep(0.3)
    assert tags(marker) == lines  # and nothing writes after the survivor is done


def test_sigkilled_local_run_is_killed_on_reclaim(git_project, tmp_path):
    marker = tmp_path / "marker"
    tid = kill_executor_mid_run(git_project, marker)
    reclaim_and_check(git_project, marker, tid)


def orphan_with_expired_lease(git_project, marker) -> int:
    """A task whose executor was SIGKILLed mid-run, its agent still writing, waited on until its lease ran out."""
    from aictl.tasks.queries import TaskQueries

    tid = kill_executor_mid_run(git_project, marker, writer=WRITER.replace("seq 30", "seq 300"))
    with open_store(load_settings(git_project).resolved_database_url) as store:
        deadline = time.monotonic() + 20
        while TaskQueries(store).get(tid).lease_expires_at >= time.time() and time.monotonic() < deadline:
            time.sleep(0.1)
    return tid


def assert_reaped_and_stopped(git_project, marker, tid: int) -> None:
    assert json.loads(run_cli("task", "get", str(tid), "-o", "json", cwd=git_project).stdout)["status"] == "queued"
    written = tags(marker)
    time.sleep(0.3)
    assert tags(marker) == written, "the reaped run kept writing"


def test_the_daemons_sweep_kills_the_run_of_a_reaped_lease(git_project, tmp_path):
    """Nobody reclaims the task (no worker free): the sweep that reaps the lease kills its run at once."""
    from aictl.daemon.loop import Daemon

    marker = tmp_path / "marker"
    tid = orphan_with_expired_lease(git_project, marker)
    settings = load_settings(git_project)
    with open_store(settings.resolved_database_url) as store:
        Daemon(settings)._sweep(store)
    assert_reaped_and_stopped(git_project, marker, tid)


def test_task_reap_kills_the_run_of_a_reaped_lease(git_project, tmp_path):
    """Without a daemon: `aictl task reap` gives the task back and stops its run on this host."""

    marker = tmp_path / "marker"
    tid = orphan_with_expired_lease(git_project, marker)
    r = run_cli("task", "reap", cwd=git_project)
    assert r.returncode == 0 and "stopped their runs on this host: local process group" in r.stderr, r.stderr
    assert_reaped_and_stopped(git_project, marker, tid)


@pytest.mark.docker
def test_sigkilled_docker_run_is_stopped_on_reclaim(git_project, sandbox_image):
    """The container of a SIGKILLed executor used to stay up while the task was run again."""
    from aictl.sandbox.docker import connect

    (git_project / ".ai" / "config.yaml").write_text(
        f"lease_ttl: 30\nheartbeat_interval: 1\nbackoff_base: 0\nsandbox_backend: docker\n"
        f"sandbox_image: {sandbox_image}\n"
    )
    home = load_settings(git_project).home
    tid = json.loads(
        run_cli(
            "task",
            "create",
            "writer",
            "--lock",
            "src/**",
            "--command",
            "echo y > src/y.py; while :; do echo x >> marker; sleep 0.1; done",
            "-o",
            "json",
            cwd=git_project,
        ).stdout
    )["id"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aictl",
            "task",
            "execute",
            str(tid),
            "--owner",
            "doomed",
            "--ttl",
            "2",
            "--timeout",
            "600",
            "-o",
            "json",
        ],
        cwd=git_project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = home / "workspaces" / f"task-{tid}-e1" / "marker"
    try:
        deadline = time.monotonic() + 60
        while not first.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.exists(), "the first container never started writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    label = f"aictl.task={tid}"
    assert connect().containers.list(filters={"label": label})  # still running without its executor
    settings = load_settings(git_project)
    with open_store(settings.resolved_database_url) as store:
        rep = Executor(store, settings, policy=load_gate(git_project), clock=lambda: time.time() + 3).execute(
            tid, ExecuteOptions(owner="survivor", command="echo y > src/y.py")
        )
    assert rep.outcome is Outcome.DONE and rep.lease_epoch == 2, rep.reason
    assert not connect().containers.list(all=True, filters={"label": [label, "aictl.epoch=1"]})


@pytest.mark.docker
@pytest.mark.skipif(os.getuid() != 0, reason="the sandbox as root needs aictl to run as root")
def test_root_invoker_runs_the_container_unprivileged_and_keeps_no_setuid_file(git_project, sandbox_image):
    """As root, a container ran as uid 0 and `chmod 4755` left a setuid-root binary in the host workspace."""
    import stat

    (git_project / ".ai" / "config.yaml").write_text(
        f"lease_ttl: 30\nheartbeat_interval: 1\nbackoff_base: 0\nsandbox_backend: docker\n"
        f"sandbox_image: {sandbox_image}\n"
    )
    tid = json.loads(
        run_cli(
            "task",
            "create",
            "suid",
            "--lock",
            "**",
            "--command",
            "cp /bin/busybox ./sush && chmod 4755 ./sush && id -u > uid.txt && mkdir -p d && echo w > d/f",
            "-o",
            "json",
            cwd=git_project,
        ).stdout
    )["id"]
    r = run_cli("task", "execute", str(tid), "--owner", "root", "--keep-workspace", "-o", "json", cwd=git_project)
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["outcome"] == "done", rep
    ws = Path(rep["workspace"])
    assert (ws / "uid.txt").read_text().strip() == "65534"
    for f in ws.rglob("*"):
        st = f.lstat()
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f
        assert (st.st_uid, st.st_gid) == (0, 0), f  # given back to the invoker
    mode = subprocess.run(
        ["git", "-C", str(git_project), "ls-tree", rep["commit"], "sush"], capture_output=True, text=True
    ).stdout.split()[0]
    assert mode == "100755"
    stderr = next(e for e in rep["evidence"] if e["name"] == "stderr.txt")
    text = run_cli("audit", "evidence", stderr["digest"], cwd=git_project).stdout
    assert "refused from the workspace: sush: setuid/setgid bit removed" in text
