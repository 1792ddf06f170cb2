"""The docker backend against a real engine and an image built from busybox: what the container can and cannot do."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from aictl.sandbox import SandboxSpec, get_sandbox

pytestmark = pytest.mark.docker


@pytest.fixture
def box():
    return get_sandbox("docker")


@pytest.fixture
def ws(tmp_path) -> Path:
    (tmp_path / "hello.txt").write_text("hello from the workspace\n")
    return tmp_path


@pytest.fixture
def spec(sandbox_image):
    def make(**kw) -> SandboxSpec:
        kw.setdefault("timeout_s", 60)
        kw.setdefault("image", sandbox_image)
        return SandboxSpec(backend="docker", **kw)

    return make


@pytest.fixture
def tag() -> str:
    """A label value that marks this test's containers, to prove none of them is left behind."""
    return uuid.uuid4().hex[:12]


def test_runs_in_the_mounted_workspace_and_writes_as_the_invoking_user(box, ws, spec, tag, aictl_containers):
    r = box.run(
        ["sh", "-c", "pwd; cat hello.txt; echo made > out.txt; id -u; id -g"],
        workdir=ws,
        spec=spec(),
        labels={"test": tag},
    )
    assert r.ok, r.stderr
    # The invoker's uid, except that root's runs use an unprivileged one; the files end up the invoker's either way.
    uid, gid = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    assert r.stdout.splitlines() == ["/workspace", "hello from the workspace", str(uid), str(gid)]
    st = (ws / "out.txt").stat()
    assert (ws / "out.txt").read_text() == "made\n" and (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert r.backend == "docker" and r.sandboxed and r.settings["user"] == f"{uid}:{gid}"
    assert aictl_containers(tag) == []


def test_only_spec_env_and_home_reach_the_process(box, ws, spec, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "sk-should-not-leak")
    r = box.run(["env"], workdir=ws, spec=spec(env={"GIVEN_TOKEN": "t0ps3cret"}))
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert "FAKE_API_KEY" not in env and env["GIVEN_TOKEN"] == "t0ps3cret" and env["HOME"] == "/tmp"
    assert "GIVEN_TOKEN" in r.settings["env_keys"] and "t0ps3cret" not in repr(r.settings)


def test_network_is_off(box, ws, spec):
    r = box.run(
        [
            "sh",
            "-c",
            "ls /sys/class/net; wget -q -T 3 -O /dev/null http://1.1.1.1/ && echo WGET-OK; "
            "nc -w 3 1.1.1.1 53 </dev/null && echo NC-OK; true",
        ],
        workdir=ws,
        spec=spec(),
    )
    assert r.stdout.splitlines() == ["lo"], r.stdout
    assert "WGET-OK" not in r.stdout and "NC-OK" not in r.stdout
    assert r.settings["network"] == "none"


def test_only_the_workspace_and_tmp_are_writable(box, ws, spec):
    r = box.run(
        [
            "sh",
            "-c",
            'for f in /etc/x /bin/x /x /workspace/ok /tmp/ok; do if echo data > $f; then echo "$f writable"; fi; done',
        ],
        workdir=ws,
        spec=spec(),
    )
    assert r.stdout.splitlines() == ["/workspace/ok writable", "/tmp/ok writable"]
    assert r.stderr.count("Read-only file system") == 3, r.stderr
    assert r.settings["read_only"] is True and r.settings["cap_drop"] == ["ALL"]


def test_no_capabilities_even_as_root(box, ws, spec):
    r = box.run(
        ["sh", "-c", "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status"],
        workdir=ws,
        spec=spec(),
    )
    caps = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000"
    assert caps["NoNewPrivs"] == "1"


def test_limits_are_applied_and_recorded(box, ws, spec, docker_engine, tag, aictl_containers):
    seen = {}

    def inspect_while_running(stream, line):
        if line == "ready":
            # The process can print before the engine marks the container running: list all states.
            (name,) = aictl_containers(tag)  # also proves that aictl_containers sees a live container
            seen.update(docker_engine.api.inspect_container(name)["HostConfig"])

    r = box.run(
        ["sh", "-c", "echo ready; sleep 1"],
        workdir=ws,
        spec=spec(cpus=0.5, memory_mb=96, pids=50),
        on_output=inspect_while_running,
        labels={"test": tag},
    )
    assert r.ok, r.stderr
    assert {k: r.settings[k] for k in ("cpus", "memory_mb", "memswap_mb", "pids")} == {
        "cpus": 0.5,
        "memory_mb": 96,
        "memswap_mb": 96,
        "pids": 50,
    }
    assert seen["NanoCpus"] == 500_000_000 and seen["PidsLimit"] == 50
    assert seen["Memory"] == seen["MemorySwap"] == 96 * 1024 * 1024
    assert seen["NetworkMode"] == "none" and seen["ReadonlyRootfs"] is True
    assert seen["SecurityOpt"] == ["no-new-privileges"] and seen["CapDrop"] == ["ALL"]


def test_more_cpus_than_the_machine_has_are_capped_and_recorded(box, tmp_path, spec):
    ws = tmp_path / "a:b"  # a colon would break the "src:dst:mode" bind syntax
    ws.mkdir()
    r = box.run(["sh", "-c", "echo hi > f"], workdir=ws, spec=spec(cpus=1000))
    assert r.ok, r.stderr or r.start_error
    assert (ws / "f").read_text() == "hi\n"
    assert r.settings["cpus"] == os.cpu_count() and r.settings["cpus_requested"] == 1000


def test_fork_bomb_is_contained_by_the_pids_limit(box, ws, spec, tag, aictl_containers):
    t0 = time.monotonic()
    r = box.run(
        ["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 60"],
        workdir=ws,
        spec=spec(pids=64, timeout_s=5),
        labels={"test": tag},
    )
    assert r.timed_out and r.exit_code == 137 and time.monotonic() - t0 < 30
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr, r.stderr[-500:]
    assert aictl_containers(tag) == []
    host = subprocess.run(["sh", "-c", "echo alive"], capture_output=True, text=True, timeout=10)
    assert host.stdout == "alive\n"


def test_memory_hog_is_oom_killed_and_reported(box, ws, spec, tag, aictl_containers):
    r = box.run(
        ["sh", "-c", 'x=$(head -c 300000000 /dev/zero | tr "\\0" a); echo survived'],
        workdir=ws,
        spec=spec(memory_mb=64),
        labels={"test": tag},
    )
    assert r.oom_killed and r.exit_code == 137 and "survived" not in r.stdout
    assert "out of memory" in r.stderr and not r.timed_out
    assert aictl_containers(tag) == []


def test_timeout_kills_and_removes_the_container(box, ws, spec, tag, aictl_containers):
    r = box.run(["sh", "-c", "echo started; sleep 100"], workdir=ws, spec=spec(timeout_s=1.5), labels={"test": tag})
    assert r.timed_out and r.exit_code == 137 and r.stdout == "started\n" and r.duration_s < 15
    assert aictl_containers(tag) == []


def test_cancel_kills_and_removes_the_container(box, ws, spec, tag, aictl_containers):
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    r = box.run(["sleep", "100"], workdir=ws, spec=spec(), cancel=cancel, labels={"test": tag})
    assert r.cancelled and not r.timed_out and r.duration_s < 15
    assert aictl_containers(tag) == []


def test_output_is_streamed_while_the_container_runs(box, ws, spec):
    seen = []
    t0 = time.monotonic()
    r = box.run(
        ["sh", "-c", "echo one; echo warn >&2; sleep 1; echo two"],
        workdir=ws,
        spec=spec(),
        on_output=lambda s, line: seen.append((time.monotonic() - t0, s, line)),
    )
    assert [(s, line) for _, s, line in seen] in (
        [("stdout", "one"), ("stderr", "warn"), ("stdout", "two")],
        [("stderr", "warn"), ("stdout", "one"), ("stdout", "two")],
    )
    assert seen[0][0] < r.duration_s - 0.5, "the first line arrived only at the end: not streamed"
    assert (r.stdout, r.stderr) == ("one\ntwo\n", "warn\n")


def test_missing_image_is_a_start_error_not_an_exception(box, ws, spec, tag, aictl_containers):
    r = box.run(["true"], workdir=ws, spec=spec(image="aictl-no-such-image:0"), labels={"test": tag})
    assert r.exit_code is None and "aictl sandbox build" in r.start_error and not r.ok
    assert aictl_containers(tag) == []


def test_missing_command_is_exit_127_not_a_start_error(box, ws, spec, tag, aictl_containers):
    r = box.run(["no-such-command-xyz"], workdir=ws, spec=spec(), labels={"test": tag})
    assert r.exit_code == 127 and r.start_error is None and "no-such-command-xyz" in r.stderr
    assert aictl_containers(tag) == []


def test_unreachable_engine_is_a_start_error(box, ws, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    r = box.run(["true"], workdir=ws, spec=SandboxSpec(backend="docker"))
    assert r.exit_code is None and "not reachable" in r.start_error and "dockerd" in r.start_error


def test_masked_files_read_empty_and_cannot_be_written_removed_renamed_or_linked(box, ws, spec, tag, aictl_containers):
    (ws / "secrets").mkdir()
    (ws / "secrets" / "token.txt").write_text("TOKEN-BYTES-42\n")
    (ws / "deploy.pem").write_text("PEM-BYTES-42\n")
    (ws / "link.txt").symlink_to("secrets/token.txt")
    script = (
        "cat secrets/token.txt deploy.pem link.txt; echo [read]; "
        "echo x > secrets/token.txt || echo write-refused; "
        "rm -f deploy.pem || echo rm-refused; "
        "ln secrets/token.txt hard.txt || echo ln-refused; "
        "mv secrets/token.txt t.txt || echo mv-refused; "
        "mv secrets moved && cat moved/token.txt; echo [moved]; "
        "cat hello.txt"
    )
    masked = ["secrets/token.txt", "deploy.pem", "link.txt", "no/such/file"]
    r = box.run(["sh", "-c", script], workdir=ws, spec=spec(masked_paths=masked), labels={"test": tag})
    assert r.exit_code == 0, r.stderr
    assert "BYTES-42" not in r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[read]"  # the secrets, directly and through the symlink, read as empty
    assert {"write-refused", "rm-refused", "mv-refused", "ln-refused"} <= set(lines)
    assert "[moved]" in lines  # a directory around a mask moves, and the mask with it: still nothing to read
    assert lines[-1] == "hello from the workspace"  # the rest of the workspace is untouched
    assert (ws / "moved" / "token.txt").read_text() == "TOKEN-BYTES-42\n" and (ws / "deploy.pem").exists()
    assert r.settings["masked_paths"] == masked
    assert aictl_containers(tag) == []


def test_a_masked_path_outside_the_workspace_is_refused_before_start(box, ws, spec):
    r = box.run(["cat", "/etc/hostname"], workdir=ws, spec=spec(masked_paths=["../etc/passwd"]))
    assert r.exit_code is None and "not a path inside the workspace" in r.start_error


def test_inside_deferred_cleanup_removal_waits_for_the_block_and_an_interrupted_run_removes_at_once(
    box, ws, spec, tag, aictl_containers, monkeypatch
):
    """The executor's run: the container goes on a thread while the caller collects, and is gone when the block
    ends; a run that an exception interrupts removes its container before the exception leaves run()."""
    from aictl.sandbox import docker

    with docker.deferred_cleanup():
        r = box.run(["sh", "-c", "echo done"], workdir=ws, spec=spec(), labels={"test": tag})
        assert r.ok and r.stdout == "done\n"
        pending = docker._DEFERRED.get()
        assert pending is not None and len(pending) == 1  # the removal was handed to a thread
    assert not pending[0].is_alive() and aictl_containers(tag) == []

    class Boom(Exception):
        pass

    def broken_wait(*args, **kwargs):
        raise Boom  # a bug (or Ctrl-C) while the container still runs

    monkeypatch.setattr(docker.DockerSandbox, "_wait", staticmethod(broken_wait))
    with docker.deferred_cleanup():
        with pytest.raises(Boom):
            box.run(["sleep", "30"], workdir=ws, spec=spec(), labels={"test": tag})
        assert aictl_containers(tag) == []  # removed before run() gave the exception back, not at the block's end


def test_a_client_with_a_remembered_api_version_still_reports_a_dead_engine(monkeypatch, tmp_path):
    """connect() skips the version handshake once it knows the engine's version, but still pings: an engine that
    went away is EngineUnavailable with its hint (not a raw connection error), and the version is forgotten."""
    from aictl.sandbox import docker

    where = f"unix://{tmp_path}/gone.sock"
    monkeypatch.setenv("DOCKER_HOST", where)
    monkeypatch.setitem(docker._API_VERSIONS, where, "1.41")
    with pytest.raises(docker.EngineUnavailable, match="not reachable"):
        docker.connect(timeout=2)
    assert where not in docker._API_VERSIONS
