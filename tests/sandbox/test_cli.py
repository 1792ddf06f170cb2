"""`aictl sandbox …` as a user runs it; Ctrl-C and a killed aictl leave no container behind for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aictl.cli.main import main


def test_every_sandbox_command_has_help(capsys):
    import typer

    from aictl.cli.main import app

    group = typer.main.get_command(app).commands["sandbox"]
    for name, cmd in group.commands.items():
        assert cmd.help and cmd.help.strip(), f"sandbox {name} has no help text"
        assert main(["sandbox", name, "--help"]) == 0
    assert {"build", "status", "cleanup", "run"} <= set(group.commands)
    capsys.readouterr()


def test_local_run_passes_the_exit_code_and_json_result(tmp_path, capsys, j):
    assert main(["sandbox", "run", "-b", "local", "-w", str(tmp_path), "--", "sh", "-c", "echo hi; exit 3"]) == 3
    assert capsys.readouterr().out == "hi\n"
    r = j("sandbox", "run", "-b", "local", "-w", str(tmp_path), "-e", "X=1", "--", "sh", "-c", "echo $X")
    assert r["stdout"] == "1\n" and r["sandboxed"] is False and r["exit_code"] == 0


def test_cleanup_all_needs_yes(capsys):
    assert main(["sandbox", "cleanup", "--all"]) == 2
    assert "--yes" in capsys.readouterr().err


def test_status_reports_an_unreachable_engine_with_a_hint(tmp_path, monkeypatch, j):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    s = j("sandbox", "status", code=1)
    assert s["reachable"] is False and "dockerd" in s["hint"]


def test_build_without_an_engine_exits_1_with_how_to_start_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    assert main(["sandbox", "build"]) == 1
    err = capsys.readouterr().err
    assert "not reachable" in err and "hint: start it: dockerd" in err and "apt-get install -y docker.io" in err


@pytest.mark.docker
def test_status_sees_engine_and_image(sandbox_image, j):
    s = j("sandbox", "status", "--image", sandbox_image)
    assert s["reachable"] and s["image_present"] and s["version"] and s["cgroup_version"] in ("1", "2")
    s = j("sandbox", "status", "--image", "aictl-no-such-image:0")
    assert not s["image_present"] and "aictl sandbox build" in s["hint"]


@pytest.mark.docker
def test_build_with_a_missing_base_exits_1_with_a_hint(docker_engine, capsys):
    assert main(["sandbox", "build", "--base", "aictl-no-such-base:0", "-t", "aictl-sandbox:never"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "hint:" in err


def _start_sleeping_run(image: str, cwd) -> tuple[subprocess.Popen, str]:
    """A whole `aictl sandbox run` process; returns it once its container is running, with the container id."""
    import docker

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aictl",
            "sandbox",
            "run",
            "--image",
            image,
            "--",
            "sh",
            "-c",
            "echo started; sleep 100",
        ],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout.readline() == "started\n"
        # all=True: the process can print before the engine lists the container as running.
        (c,) = docker.from_env().api.containers(all=True, filters={"label": f"aictl.owner_pid={proc.pid}"})
    except BaseException:
        proc.kill()
        raise
    return proc, c["Id"]


def _reap(proc: subprocess.Popen, client, container_id: str) -> None:
    """Whatever the test did: no aictl process and no container outlives it."""
    import docker.errors

    proc.kill()
    proc.communicate()
    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass


@pytest.mark.docker
def test_ctrl_c_removes_the_container(sandbox_image, docker_engine, tmp_path):
    proc, cid = _start_sleeping_run(sandbox_image, tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert docker_engine.api.containers(all=True, filters={"id": cid}) == []
    finally:
        _reap(proc, docker_engine, cid)


@pytest.mark.docker
def test_cleanup_removes_the_container_of_a_killed_aictl_and_keeps_live_ones(sandbox_image, docker_engine, tmp_path, j):
    from aictl.sandbox.docker import cleanup_containers, owner_labels

    proc, stray = _start_sleeping_run(sandbox_image, tmp_path)
    proc.kill()  # no finally runs: the container is left behind
    proc.communicate()
    live = docker_engine.api.create_container(sandbox_image, command=["true"], labels=owner_labels())["Id"]
    try:
        assert docker_engine.api.containers(all=True, filters={"id": stray}) != []
        dry = j("sandbox", "cleanup", "--dry-run")
        assert stray[:12] in [c["id"] for c in dry] and live[:12] not in [c["id"] for c in dry]
        assert docker_engine.api.containers(all=True, filters={"id": stray}) != []
        removed = cleanup_containers()
        mine = [c for c in removed if c["id"] in (stray[:12], live[:12])]
        assert [c["id"] for c in mine] == [stray[:12]] and mine[0]["owner_alive"] is False
        assert docker_engine.api.containers(all=True, filters={"id": stray}) == []
        assert docker_engine.api.containers(all=True, filters={"id": live}) != []
    finally:
        _reap(proc, docker_engine, stray)
        docker_engine.api.remove_container(live, force=True)


@pytest.mark.docker
def test_docker_run_from_the_cli(sandbox_image, tmp_path, proc_cli):
    r = proc_cli(
        "sandbox", "run", "--image", sandbox_image, "--", "sh", "-c", "echo out; echo err >&2; exit 5", cwd=tmp_path
    )
    assert r.returncode == 5 and r.stdout == "out\n" and "err" in r.stderr and "docker: exit 5" in r.stderr
    r = proc_cli("sandbox", "run", "--image", "aictl-no-such-image:0", "--", "true", cwd=tmp_path)
    assert r.returncode == 1 and "aictl sandbox build" in r.stderr and "Traceback" not in r.stderr
