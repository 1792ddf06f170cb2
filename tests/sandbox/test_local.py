"""The local backend with real processes: workdir, clean env, timeouts and cancel that kill the whole group."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aictl.sandbox import SandboxSpec, get_sandbox
from aictl.sandbox.base import KILL_GRACE_S, TAIL_BYTES
from aictl.sandbox.local import READER_JOIN_S


@pytest.fixture
def box():
    return get_sandbox("local")


@pytest.fixture
def ws(tmp_path) -> Path:
    (tmp_path / "hello.txt").write_text("hello from the workspace\n")
    return tmp_path


def group_gone(pgid: int) -> bool:
    """No live process in the group. Killed orphans stay zombies until init reaps them: those are dead."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            return False
    return True


def test_runs_in_the_workdir_and_sees_its_files(box, ws):
    r = box.run(["sh", "-c", "pwd; cat hello.txt; echo made > out.txt"], workdir=ws, spec=SandboxSpec())
    assert r.exit_code == 0 and r.ok
    assert r.stdout.splitlines() == [str(ws.resolve()), "hello from the workspace"]
    assert (ws / "out.txt").read_text() == "made\n"
    assert r.backend == "local" and r.sandboxed is False and r.settings["sandboxed"] is False


def test_environment_is_clean_but_carries_spec_env(box, ws, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "sk-should-not-leak")
    r = box.run(["env"], workdir=ws, spec=SandboxSpec(env={"GIVEN": "yes"}))
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert "FAKE_API_KEY" not in env and "sk-should-not-leak" not in r.stdout
    assert env["GIVEN"] == "yes" and env["LANG"] == "C.UTF-8"
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "GIVEN", "PWD", "SHLVL", "_"}
    home, tmp = Path(env["HOME"]), Path(env["TMPDIR"])
    assert home != Path.home() and not home.exists() and not tmp.exists()  # per-run, removed afterwards
    assert r.settings["env_keys"] == ["GIVEN", "HOME", "LANG", "PATH", "TMPDIR"]


def test_exit_code_stderr_and_missing_command(box, ws):
    r = box.run(["sh", "-c", "echo oops >&2; exit 3"], workdir=ws, spec=SandboxSpec())
    assert (r.exit_code, r.stderr, r.ok) == (3, "oops\n", False)
    r = box.run(["no-such-command-xyz"], workdir=ws, spec=SandboxSpec())
    assert r.exit_code == 127 and "command not found" in r.stderr and r.start_error is None


def test_timeout_kills_the_process_and_its_children(box, ws):
    lines = []
    t0 = time.monotonic()
    r = box.run(
        ["sh", "-c", "echo $$; sleep 100 & sleep 100"],
        workdir=ws,
        spec=SandboxSpec(timeout_s=1),
        on_output=lambda s, line: lines.append(line),
    )
    assert time.monotonic() - t0 < 1 + KILL_GRACE_S + 2
    assert r.timed_out and not r.cancelled and r.exit_code == 128 + 15  # SIGTERM was enough for sh and sleep
    assert "timed out" in r.stderr
    pgid = int(lines[0])
    assert group_gone(pgid), "a process of the timed-out group survived"


def test_a_child_that_ignores_sigterm_gets_sigkill(box, ws):
    lines = []
    r = box.run(
        ["sh", "-c", "trap '' TERM; echo $$; sleep 100 & sleep 100; sleep 100"],
        workdir=ws,
        spec=SandboxSpec(timeout_s=0.5),
        on_output=lambda s, line: lines.append(line),
    )
    assert r.timed_out and group_gone(int(lines[0]))
    assert r.duration_s < 0.5 + KILL_GRACE_S + 2


def test_background_children_do_not_outlive_a_normal_exit(box, ws):
    lines = []
    r = box.run(
        ["sh", "-c", "echo $$; sleep 100 & exit 0"],
        workdir=ws,
        spec=SandboxSpec(timeout_s=30),
        on_output=lambda s, line: lines.append(line),
    )
    assert r.exit_code == 0 and not r.timed_out
    assert r.duration_s < READER_JOIN_S and "escaped" not in r.stderr  # killed, not waited out
    assert group_gone(int(lines[0]))


def test_cancel_event_stops_the_run(box, ws):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    lines = []
    r = box.run(
        ["sh", "-c", "echo $$; sleep 100"],
        workdir=ws,
        spec=SandboxSpec(timeout_s=60),
        cancel=cancel,
        on_output=lambda s, line: lines.append(line),
    )
    assert r.cancelled and not r.timed_out and r.duration_s < 5
    assert group_gone(int(lines[0]))


def test_output_is_streamed_line_by_line_while_running(box, ws):
    seen: list[tuple[float, str, str]] = []
    t0 = time.monotonic()
    r = box.run(
        ["sh", "-c", "echo one; echo warn >&2; sleep 1; printf 'two\\nno-newline'"],
        workdir=ws,
        spec=SandboxSpec(),
        on_output=lambda s, line: seen.append((time.monotonic() - t0, s, line)),
    )
    assert [(s, line) for _, s, line in seen if s == "stdout"] == [
        ("stdout", "one"),
        ("stdout", "two"),
        ("stdout", "no-newline"),
    ]
    assert ("stderr", "warn") in [(s, line) for _, s, line in seen]
    first = seen[0][0]
    assert first < r.duration_s - 0.5, "the first line arrived only at the end: not streamed"
    assert r.stdout == "one\ntwo\nno-newline"


def test_captured_output_keeps_the_tail_and_says_it_was_truncated(box, ws):
    r = box.run(
        ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo THE-END"], workdir=ws, spec=SandboxSpec()
    )
    assert r.stdout.startswith("[aictl: output truncated,") and r.stdout.endswith("THE-END\n")
    assert TAIL_BYTES <= len(r.stdout) < TAIL_BYTES + 200


def test_a_failing_on_output_does_not_hang_the_run(box, ws):
    def boom(stream, line):
        raise RuntimeError("consumer broke")

    r = box.run(
        ["sh", "-c", "head -c 500000 /dev/zero | tr '\\0' '\\n'; echo done"],
        workdir=ws,
        spec=SandboxSpec(timeout_s=30),
        on_output=boom,
    )
    assert r.exit_code == 0 and not r.timed_out and "consumer broke" in r.stderr


def test_missing_workdir_is_a_caller_error(box, tmp_path):
    from aictl.domain.errors import UsageError

    with pytest.raises(UsageError):
        box.run(["true"], workdir=tmp_path / "nope", spec=SandboxSpec())


def test_the_command_dies_with_a_sigkilled_aictl(tmp_path):
    """start_new_session detached the command from its parent: a SIGKILLed aictl left it running."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from aictl.sandbox import SandboxSpec, get_sandbox; "
        "get_sandbox('local').run(['sh', '-c', 'echo $$ > pid; exec sleep 30'], workdir=Path(sys.argv[1]), "
        "spec=SandboxSpec())"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(pid_file.read_text())
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _running(child), "the command outlived the process that ran it"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
