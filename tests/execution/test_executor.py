"""`aictl task execute` end to end with the command connector on the local backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aictl.cli.main import main
from aictl.config import load_settings
from aictl.execution.executor import ExecuteOptions, Executor, Outcome, tighten
from aictl.policy.gate import load_gate
from aictl.store import open_store
from tests.conftest import run_cli
from tests.execution.conftest import git


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def jrun(capsys, *args):
    code, out, err = run(capsys, *args, "-o", "json")
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def create(capsys, *args) -> int:
    code, out, err = run(capsys, "task", "create", *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)["id"]


def report_of(lines):
    return next(x for x in lines if x.get("type") == "report")


def decisions(capsys, task_id):
    code, out, _ = run(capsys, "audit", "decisions", "--task", str(task_id), "-o", "json")
    assert code == 0
    return json.loads(out)


def test_edit_lands_in_diff_evidence_and_task_is_done(git_project, capsys):
    tid = create(
        capsys,
        "update app",
        "--lock",
        "src/**",
        "--command",
        "echo 'print(\"new\")' > src/app.py && mkdir -p src/pkg && echo x > src/pkg/mod.py",
    )
    code, lines, err = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    rep = report_of(lines)
    assert code == 0 and rep["outcome"] == "done", err
    assert rep["changed_paths"] == ["src/app.py", "src/pkg/mod.py"] and rep["branch"] == f"aictl/task-{tid}"
    assert rep["task"]["status"] == "done" and rep["workspace"] is None
    phases = [x["phase"] for x in lines if x.get("type") == "phase"]
    assert phases[0] == "claimed" and "running" in phases and phases[-1] == "done"
    kinds = {e["kind"]: e for e in rep["evidence"]}
    assert {"diff", "changes", "run"} <= set(kinds)
    code, out, _ = run(capsys, "audit", "evidence", kinds["diff"]["digest"])
    assert '+print("new")' in out and "src/pkg/mod.py" in out
    run_rec = json.loads(run(capsys, "audit", "evidence", kinds["run"]["digest"])[1])
    assert run_rec["sandboxed"] is False and run_rec["exit_code"] == 0
    assert '+print("new")' in run(capsys, "task", "diff", str(tid))[1]
    assert git(git_project, "show", f"aictl/task-{tid}:src/app.py") == 'print("new")\n'
    assert git(git_project, "status", "--porcelain") == ""  # the main tree is untouched
    assert run(capsys, "task", "workspace", str(tid))[0] == 3  # removed on success
    locks = [d for d in decisions(capsys, tid) if d["matched_rules"] == ["aictl:locks"]]
    assert locks and locks[0]["effect"] == "allow"


def test_edit_outside_locks_fails_naming_the_path(git_project, capsys):
    tid = create(capsys, "sneaky", "--lock", "src/**", "--command", "echo hi >> README.md; echo y > src/ok.py")
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    rep = report_of(lines)
    assert code == 1 and rep["outcome"] == "failed" and "README.md" in rep["reason"]
    assert rep["task"]["status"] == "failed" and "README.md" in rep["task"]["result"]["error"]
    lock_check = next(d for d in decisions(capsys, tid) if d["matched_rules"] == ["aictl:locks"])
    assert lock_check["effect"] == "deny" and "README.md" in lock_check["reasons"][0]
    ws = rep["workspace"]
    assert ws and os.path.isdir(ws)  # kept for inspection
    code, out, _ = run(capsys, "task", "workspace", str(tid), "-o", "json")
    assert code == 0 and json.loads(out)["path"] == ws


def test_protected_path_fails_by_policy(git_project, capsys):
    tid = create(capsys, "leak", "--lock", "**", "--command", "echo KEY=1 > .env && echo ok > src/x.py")
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    rep = report_of(lines)
    assert code == 1 and ".env" in rep["reason"] and "src/x.py" not in rep["reason"].split("refuses changes to")[1]
    wp = [d for d in decisions(capsys, tid) if d["action"] == "write_path" and "protect-secrets" in d["matched_rules"]]
    assert wp and wp[0]["effect"] == "deny"


def test_failing_verification_fails_with_report_attached(git_project, capsys):
    junit = (
        "<testsuite tests='2' failures='1' errors='0' skipped='0'>"
        "<testcase name='a'/><testcase name='b'><failure>no</failure></testcase></testsuite>"
    )
    tid = create(
        capsys,
        "change",
        "--lock",
        "src/**",
        "--command",
        "echo y > src/y.py",
        "--verify",
        f"echo \"{junit}\" > $AICTL_REPORT_DIR/junit.xml; echo '1 failed'; exit 1",
    )
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    rep = report_of(lines)
    assert code == 1 and rep["outcome"] == "failed" and "verification failed" in rep["reason"]
    kinds = {e["kind"]: e for e in rep["evidence"]}
    assert kinds["test_report"]["summary"]["failures"] == 1
    assert kinds["verify_log"]["summary"]["exit_code"] == 1
    assert "1 failed" in run(capsys, "audit", "evidence", kinds["verify_log"]["digest"])[1]
    # the verification's own files did not leak into the agent's diff
    assert rep["changed_paths"] == ["src/y.py"]


def test_passing_verification(git_project, capsys):
    tid = create(capsys, "change", "--lock", "src/**", "--command", "echo y > src/y.py", "--verify", "test -f src/y.py")
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    assert code == 0 and report_of(lines)["outcome"] == "done"


def test_timeout_is_transient_and_retried_with_backoff(git_project, capsys):
    tid = create(capsys, "slow", "--lock", "src/**", "--command", "sleep 30", "--max-attempts", "3")
    t = time.monotonic()
    _code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1", "--timeout", "1")
    rep = report_of(lines)
    assert time.monotonic() - t < 15
    assert rep["outcome"] == "retrying" and rep["task"]["status"] == "queued" and rep["task"]["attempts"] == 1
    assert "timed out" in rep["reason"]


def test_policy_denial_of_execute_is_not_retried(git_project, capsys):
    policy = (git_project / ".ai" / "policy.yaml").read_text()
    (git_project / ".ai" / "policy.yaml").write_text(
        policy
        + """
  - id: no-local-runs
    effect: deny
    match: {actions: [execute]}
    when: context.sandbox.backend == "local"
    reason: unsandboxed runs are forbidden here
"""
    )
    tid = create(capsys, "x", "--lock", "src/**", "--command", "true", "--max-attempts", "5")
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    rep = report_of(lines)
    assert code == 1 and rep["task"]["status"] == "failed" and "unsandboxed" in rep["reason"]
    ex = next(d for d in decisions(capsys, tid) if d["action"] == "execute")
    assert ex["effect"] == "deny" and ex["input"]["context"]["sandbox"]["sandboxed"] is False


def test_require_approval_round_trip(git_project, capsys):
    policy = (git_project / ".ai" / "policy.yaml").read_text()
    (git_project / ".ai" / "policy.yaml").write_text(
        policy
        + """
  - id: migrations-need-a-human
    effect: require_approval
    match: {actions: [execute], task_labels: [migration]}
"""
    )
    tid = create(capsys, "migrate", "-l", "migration", "--lock", "src/**", "--command", "echo m > src/m.py")
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    assert code == 5 and report_of(lines)["outcome"] == "awaiting_approval"
    code, out, _ = run(capsys, "task", "list", "--status", "awaiting_approval", "-o", "name")
    assert out.split() == [str(tid)] and not json.loads(run(capsys, "task", "locks", "-o", "json")[1])
    assert run(capsys, "task", "approve", str(tid), "-m", "looked at it")[0] == 0
    code, lines, _ = jrun(capsys, "task", "execute", str(tid), "--owner", "w1")
    assert code == 0 and report_of(lines)["outcome"] == "done"
    ex = [d for d in decisions(capsys, tid) if d["action"] == "execute"]
    assert [d["effect"] for d in ex] == ["require_approval", "allow"]
    assert any("approved by" in r for r in ex[1]["reasons"])


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc/*/task/*/children), however deep."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = {int(x) for x in children.read_text().split()}
            except OSError:  # exited meanwhile
                continue
            todo += sorted(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_cancel_stops_a_running_execution(git_project):
    tid = json.loads(
        run_cli(
            "task", "create", "long", "--lock", "src/**", "--command", "sleep 60", "-o", "json", cwd=git_project
        ).stdout
    )["id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aictl", "task", "execute", str(tid), "--owner", "w1", "-o", "json"],
        cwd=git_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:
            if '"phase": "running"' in line:
                break
        deadline = time.monotonic() + 20
        agent: set[int] = set()
        while not agent and time.monotonic() < deadline:  # this executor's own agent process, nobody else's
            agent = {p for p in descendants(proc.pid) if cmdline(p).startswith("sleep 60")}
            time.sleep(0.05)
        assert agent, "the agent's process never started"
        assert run_cli("task", "cancel", str(tid), "--reason", "not needed", cwd=git_project).returncode == 0
        t = time.monotonic()
        out, _err = proc.communicate(timeout=20)
        assert time.monotonic() - t < 10
    finally:
        proc.kill()
    rep = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 1 and rep["outcome"] == "cancelled" and rep["task"]["status"] == "cancelled"
    assert not [p for p in agent if alive(p)], "the agent's process survived the cancellation"


def test_executor_killed_mid_run_task_runs_again_elsewhere(git_project):
    tid = json.loads(
        run_cli(
            "task",
            "create",
            "crashy",
            "--lock",
            "src/**",
            "--command",
            "if [ -f /tmp/aictl-crash-$PPID ]; then :; fi; echo done > src/out.py; sleep ${NAP:-0}",
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
            "--command",
            "sleep 60",
            "-o",
            "json",
        ],
        cwd=git_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in proc.stdout:
        if '"phase": "running"' in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the executor and its agent die at once, no cleanup
    proc.wait()
    ws = json.loads(run_cli("workspace", "list", "-o", "json", cwd=git_project).stdout)
    assert [w["task_id"] for w in ws] == [tid]  # left behind by the crash
    # The survivor runs 3 s later on the service clock: past the dead executor's 2 s lease, without waiting.
    settings = load_settings(git_project)
    with open_store(settings.resolved_database_url) as store:
        rep = Executor(store, settings, policy=load_gate(git_project), clock=lambda: time.time() + 3).execute(
            tid, ExecuteOptions(owner="survivor")
        )
    assert rep.outcome is Outcome.DONE and rep.exit_code == 0 and rep.lease_epoch == 2
    assert rep.changed_paths == ["src/out.py"]
    r = run_cli("task", "complete", str(tid), "--owner", "doomed", "--epoch", "1", cwd=git_project)
    assert r.returncode == 4  # the dead executor's late result would be refused
    assert json.loads(run_cli("workspace", "list", "-o", "json", cwd=git_project).stdout) == []
    r = run_cli("workspace", "prune", "-o", "json", cwd=git_project)
    assert r.returncode == 0


def test_nothing_to_execute_exit_3(git_project, capsys):
    assert run(capsys, "task", "execute")[0] == 3


def test_task_without_command_is_a_usage_error_and_releases(git_project, capsys):
    tid = create(capsys, "no command", "--lock", "src/**")
    code, _, err = run(capsys, "task", "execute", str(tid), "--connector", "command")
    assert code == 2 and "--command" in err
    assert json.loads(run(capsys, "task", "get", str(tid), "-o", "json")[1])["status"] == "queued"
    # without --connector a task with no command is routed to an AI: none is registered, so nothing is claimed
    code, _out, err = run(capsys, "task", "execute", str(tid))
    assert code == 3 and "no AI is registered" in err and "aictl ai register" in err
    assert json.loads(run(capsys, "task", "get", str(tid), "-o", "json")[1])["status"] == "queued"


def test_an_error_in_the_run_is_a_failed_attempt_until_max_attempts(git_project, capsys):
    """`task execute` counts an unexpected error as an attempt (it used to give the task back: epoch 5,
    attempts 0, for ever): each run fails retryably with its evidence, and the last one fails the task."""
    tid = create(capsys, "doomed", "--lock", "src/**", "--command", "true", "--max-attempts", "3")
    settings = load_settings(git_project)
    with open_store(settings.resolved_database_url) as store:
        for attempt in (1, 2, 3):
            later = time.time() + 3600 * attempt  # past each retry's backoff, on the service clock
            rep = Executor(store, settings, clock=lambda later=later: later).execute(
                tid, ExecuteOptions(owner="w1", base="no-such-branch")
            )
            assert rep.task.attempts == attempt and rep.lease_epoch == attempt and "no-such-branch" in rep.reason
            assert rep.outcome is (Outcome.RETRYING if attempt < 3 else Outcome.FAILED) and rep.exit_code == 1
            assert [e["name"] for e in rep.evidence] == ["executor_error.txt"]
    assert rep.task.status == "failed"
    assert run(capsys, "task", "execute", str(tid), "--owner", "w1")[0] == 4  # failed for good: nothing to run
    _code, out, _ = run(capsys, "task", "evidence", str(tid), "-o", "json")
    assert [e["lease_epoch"] for e in json.loads(out)] == [1, 2, 3]  # every attempt's evidence is kept


def test_policy_sandbox_limits_only_tighten(git_project):
    """A policy's `backend: local` does not loosen a requested docker run; its memory limit is a ceiling."""
    from aictl.sandbox.base import SandboxSpec

    policy = (git_project / ".ai" / "policy.yaml").read_text()
    (git_project / ".ai" / "policy.yaml").write_text(
        policy
        + """
  - id: small-local
    effect: allow
    match: {actions: [execute]}
    limits: {sandbox: {backend: local, memory_mb: 256, network: false}}
"""
    )
    record = load_gate(git_project).check("execute", ai="w1", actor="w1", task={"id": 1, "labels": []})
    limits = record.limits["sandbox"]
    assert limits == {"backend": "local", "memory_mb": 256, "network": False}
    docker = tighten(SandboxSpec(backend="docker", memory_mb=1024, network=True), limits)
    assert (docker.backend, docker.memory_mb, docker.network) == ("docker", 256, False)
    small = tighten(SandboxSpec(backend="local", memory_mb=128), limits)
    assert (small.backend, small.memory_mb) == ("local", 128)  # the lower of the two
    assert tighten(SandboxSpec(backend="local"), {"backend": "docker"}).backend == "docker"


def test_the_executor_takes_the_next_tasks_worktree_from_the_pool(git_project, capsys):
    """workspace_pool (default 4): a finished task's worktree is cleaned and pooled, and the next task's workspace
    is that same directory (moved, not checked out anew) with nothing of the last task in it."""
    pool = git_project / ".ai" / "workspaces" / ".pool"
    first = create(capsys, "first", "--lock", "src/**", "--command", "echo a > src/a.txt")
    code, lines, err = jrun(capsys, "task", "execute", str(first), "--owner", "w1")
    assert code == 0 and report_of(lines)["outcome"] == "done", err
    slots = list(pool.iterdir())
    assert len(slots) == 1
    inode = slots[0].stat().st_ino
    look = "ls -A src > src/seen.txt; stat -c %i . >> src/seen.txt"
    second = create(capsys, "second", "--lock", "src/**", "--command", look)
    code, lines, err = jrun(capsys, "task", "execute", str(second), "--owner", "w1")
    assert code == 0 and report_of(lines)["outcome"] == "done", err
    seen = git(git_project, "show", f"aictl/task-{second}:src/seen.txt").split()
    assert seen[-1] == str(inode)  # the pooled directory itself
    assert "a.txt" not in seen and "app.py" in seen  # the main line's files, not the last task's

    (git_project / ".ai" / "config.yaml").write_text("lease_ttl: 30\nheartbeat_interval: 1\nworkspace_pool: 0\n")
    for slot in pool.iterdir():
        subprocess.run(["git", "-C", str(git_project), "worktree", "remove", "--force", str(slot)], check=True)
    third = create(capsys, "third", "--lock", "src/**", "--command", "true")
    code, lines, err = jrun(capsys, "task", "execute", str(third), "--owner", "w1")
    assert code == 0 and report_of(lines)["outcome"] == "done", err
    assert list(pool.iterdir()) == []  # pool off: removed as before
