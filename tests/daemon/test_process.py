"""`aictl daemon start|status|stop|logs` as a user runs them: real, detached processes on SQLite."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.daemon.conftest import start_foreground, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (the test process may be its parent in foreground tests).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """Some process of the group is alive (zombies waiting for init to reap them do not count)."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def test_start_status_run_stop(dproject):
    info = dproject.start("--workers", "3")
    pid = info["pid"]
    assert _alive(pid) and dproject.daemon_pid() == pid and info["store"]["reachable"] is True
    # Detached: its own session, not our child, not a session leader (double fork), cwd the project.
    assert os.getsid(pid) != os.getsid(0) and os.getsid(pid) != pid
    assert os.readlink(f"/proc/{pid}/cwd") == str(dproject.root)

    r = dproject.cli("daemon", "status", "-o", "json")
    st = json.loads(r.stdout)
    assert r.returncode == 0 and st["running"] and st["pid"] == pid and st["daemon_id"] == info["daemon_id"]
    assert st["workers"] == {"total": 3, "busy": 0, "idle": 3} and st["store"]["reachable"] is True
    mine = [d for d in st["daemons"] if d["id"] == info["daemon_id"]]
    assert mine and mine[0]["status"] == "running" and mine[0]["pid"] == pid

    tid = dproject.create("hello", "--lock", "src/**", "--command", "echo hi > src/hi.txt")
    wait_for(lambda: dproject.task(tid).status == "done", 60, "the daemon to finish the task")
    claim = dproject.events(tid, "claim")[0]
    assert claim["actor"].endswith(f"/daemon-{info['daemon_id']}/w1")  # <actor>/daemon-<id>/w<n>

    r = dproject.cli("daemon", "stop", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["mode"] == "drain"
    assert not _alive(pid) and not (dproject.daemon_dir / "daemon.pid").exists()
    r = dproject.cli("daemon", "status", "-o", "json")
    st = json.loads(r.stdout)
    assert r.returncode == 3 and st["running"] is False and st["stale_pid_file"] is False
    assert [d["status"] for d in st["daemons"] if d["id"] == info["daemon_id"]] == ["stopped"]
    actions = [e["action"] for e in dproject.events() if e["action"].startswith("daemon_")]
    assert actions == ["daemon_start", "daemon_stop"]
    from tests.daemon.conftest import git

    assert git(dproject.root, "status", "--porcelain") == ""  # .ai/daemon/ is ignored like the rest of the state
    assert dproject.cli("daemon", "stop").returncode == 3  # nothing left to stop


def test_double_start_is_refused(dproject):
    info = dproject.start()
    r = dproject.cli("daemon", "start", "-o", "json")
    assert r.returncode == 4
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "conflict" and str(info["pid"]) in err["message"]
    # The refused start changed nothing: the same daemon still runs and holds the pid file.
    assert dproject.daemon_pid() == info["pid"] and _alive(info["pid"])
    # A foreground start is refused the same way.
    proc = start_foreground(dproject)
    assert proc.wait(60) == 4 and "already running" in proc.stderr.read()
    assert dproject.cli("daemon", "stop").returncode == 0


def test_stale_pid_file_is_detected_and_taken_over(dproject):
    first = dproject.start()
    wait_for(lambda: dproject.events(action="daemon_start"), 30, "the daemon to register")
    os.kill(first["pid"], signal.SIGKILL)
    wait_for(lambda: not _alive(first["pid"]), 10, "the SIGKILLed daemon to die")
    r = dproject.cli("daemon", "status", "-o", "json")
    st = json.loads(r.stdout)
    assert r.returncode == 3 and st["running"] is False and st["stale_pid_file"] is True
    assert dproject.cli("daemon", "stop").returncode == 3

    second = dproject.start()
    assert second["took_over"] == {"pid": first["pid"], "daemon_id": first["daemon_id"]}
    r = dproject.cli("daemon", "status", "-o", "json")
    st = json.loads(r.stdout)
    by_id = {d["id"]: d for d in st["daemons"]}
    wait_for(lambda: dproject.events(action="daemon_stop"), 10, "the dead daemon to be signed off")
    stop = dproject.events(action="daemon_stop")[0]
    assert stop["data"]["daemon"] == first["daemon_id"] and "stale" in stop["data"]["reason"]
    assert by_id[second["daemon_id"]]["status"] == "running"
    log = (dproject.daemon_dir / "daemon.log").read_text()
    assert "taking over" in log
    assert dproject.cli("daemon", "stop").returncode == 0


def test_pid_file_of_a_dead_process_without_a_lock_file(dproject):
    """A pid file left by hand (or by an older layout) with nobody holding the lock: take over."""
    dproject.daemon_dir.mkdir(parents=True, exist_ok=True)
    (dproject.daemon_dir / "daemon.pid").write_text("999999\n")
    info = dproject.start()
    assert info["took_over"]["pid"] == 999999
    assert dproject.cli("daemon", "stop").returncode == 0


def test_drain_lets_a_running_task_finish(dproject):
    info = dproject.start()
    tid = dproject.create("slow", "--command", dproject.sleeper(2))
    wait_for(lambda: dproject.task(tid).status == "running", 60, "the task to start")
    r = dproject.cli("daemon", "stop", "--drain", "-o", "json")
    assert r.returncode == 0, r.stderr
    t = dproject.task(tid)
    assert t.status == "done" and t.lease_epoch == 1
    assert not dproject.events(tid, "release") and dproject.runs() == ["run"]
    assert not _alive(info["pid"])


@pytest.mark.parametrize("how", ["now", "grace"])
def test_stop_cancels_and_releases_with_epoch_and_reason(make_daemon_project, how):
    """--now (grace 0), or a drain whose grace period runs out: the run is killed, the task released."""
    from tests.daemon.conftest import CONFIG

    p = make_daemon_project(config=CONFIG.replace("daemon_grace_s: 20", "daemon_grace_s: 1"))
    info = p.start()
    tid = p.create("forever", "--command", p.sleeper(600))
    wait_for(lambda: p.task(tid).status == "running" and p.runs(), 60, "the task to start")
    epoch = p.task(tid).lease_epoch
    cmd_pgid = int(next(p.pid_dir.glob("*.pid")).read_text())
    r = p.cli("daemon", "stop", *(["--now"] if how == "now" else []), "-o", "json")
    assert r.returncode == 0, r.stderr
    t = p.task(tid)
    assert t.status == "queued" and t.attempts == 0  # given back, not failed, no attempt counted
    release = p.events(tid, "release")
    assert len(release) == 1 and release[0]["lease_epoch"] == epoch
    assert release[0]["actor"].endswith("/w1")
    expected = "stopping now" if how == "now" else "grace period of 1s ran out"
    assert expected in release[0]["data"]["reason"]
    assert not p.events(tid, "complete")
    assert not group_alive(cmd_pgid)  # the command was killed with the run, not left behind
    assert not _alive(info["pid"])


def test_foreground_runs_in_this_process_and_drains_on_sigint(dproject):
    proc = start_foreground(dproject, "--workers", "1")
    try:
        line = ""
        while "running in the foreground" not in line:
            line = proc.stderr.readline()
            assert line, "the foreground daemon exited before it was ready"
        assert f"pid {proc.pid}" in line
        tid = dproject.create("fg", "--command", "true")
        wait_for(lambda: dproject.task(tid).status == "done", 60, "the foreground daemon to run the task")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(x) for x in rest.splitlines() if x.startswith("{")]  # the log, teed to stderr
    assert any(e["event"] == "task finished" and e["task_id"] == tid for e in events)
    assert events[-1]["event"] == "daemon stopped"
    assert dproject.cli("daemon", "status").returncode == 3


def test_logs_are_json_lines_and_follow_sees_new_ones(dproject):
    import subprocess
    import sys

    assert dproject.cli("daemon", "logs").returncode == 3  # nothing logged yet
    dproject.start()
    follower = subprocess.Popen(
        [sys.executable, "-m", "aictl", "daemon", "logs", "-f", "-n", "0", "-o", "json"],
        cwd=dproject.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        tid = dproject.create("logged", "--command", "true")
        seen = []
        for line in follower.stdout:
            seen.append(json.loads(line))
            if seen[-1]["event"] == "task finished":
                break
        assert seen[-1]["task_id"] == tid and seen[-1]["outcome"] == "done"
        assert all(e["event"] != "daemon started" for e in seen)  # -n 0: only what came after
    finally:
        follower.kill()
        follower.wait()
    r = dproject.cli("daemon", "logs", "-o", "json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["event"] == "daemon started" and all("timestamp" in x and "level" in x for x in lines)
    human = dproject.cli("daemon", "logs", "-n", "1").stdout
    assert human.strip() and not human.startswith("{")
    assert dproject.cli("daemon", "stop").returncode == 0


def test_outside_a_project_is_a_clear_error(tmp_path):
    from tests.conftest import run_cli

    for verb in ("start", "status", "stop", "logs"):
        r = run_cli("daemon", verb, cwd=tmp_path)
        assert r.returncode == 1 and "aictl init" in r.stderr and "Traceback" not in r.stderr, verb


def test_bad_workers_value_is_a_usage_error(dproject):
    r = dproject.cli("daemon", "start", "--workers", "0")
    assert r.returncode == 2 and dproject.daemon_pid() is None


def test_sighup_reloads_the_policy(dproject):
    """Unchanged files are not reloaded on their own; SIGHUP forces it (e.g. after editing a file in place)."""
    info = dproject.start()
    assert "policy reloaded" not in (dproject.daemon_dir / "daemon.log").read_text()
    os.kill(info["pid"], signal.SIGHUP)
    wait_for(
        lambda: "policy reloaded" in (dproject.daemon_dir / "daemon.log").read_text(),
        30,
        "the daemon to reload its policy",
    )
    assert dproject.cli("daemon", "stop").returncode == 0


def test_start_reports_why_it_could_not_start_and_leaves_nothing_running(dproject):
    policy = dproject.root / ".ai" / "policy.yaml"
    good = policy.read_text()
    policy.write_text(good + "rules: [oops\n")
    r = dproject.cli("daemon", "start", "-o", "json")
    assert r.returncode == 2 and json.loads(r.stderr)["error"]["code"] == "config_invalid"
    assert "policy.yaml" in json.loads(r.stderr)["error"]["message"]
    policy.write_text(good)
    r = dproject.cli("daemon", "start", "--ai", "nobody", "-o", "json")
    assert r.returncode == 3 and "no AI registered as nobody" in r.stderr
    st = dproject.cli("daemon", "status", "-o", "json")
    assert st.returncode == 3 and json.loads(st.stdout)["stale_pid_file"] is False  # nothing half-started
