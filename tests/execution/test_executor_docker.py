"""The same path inside Docker: the workspace is the only thing the agent can change."""

from __future__ import annotations

import json

import pytest

from aictl.cli.main import main

pytestmark = pytest.mark.docker


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def execute(capsys, *args):
    code, out, err = run(capsys, "task", "execute", *args, "-o", "json")
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    return code, next(x for x in lines if x.get("type") == "report"), err


def create(capsys, *args) -> int:
    code, out, err = run(capsys, "task", "create", *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)["id"]


@pytest.fixture
def docker_project(git_project, sandbox_image):
    (git_project / ".ai" / "config.yaml").write_text(
        "lease_ttl: 30\nheartbeat_interval: 1\nbackoff_base: 0\n"
        f"sandbox_backend: docker\nsandbox_image: {sandbox_image}\n"
        "sandbox_memory_mb: 128\nsandbox_pids: 64\nsandbox_cpus: 1\n"
    )
    return git_project


def containers(label="aictl.managed=true"):
    from aictl.sandbox.docker import connect

    return connect().containers.list(all=True, filters={"label": label})


def test_edit_in_docker_lands_in_the_diff(docker_project, capsys):
    tid = create(
        capsys, "docker edit", "--lock", "src/**", "--command", "echo from-docker > src/d.txt && cat /etc/hostname"
    )
    code, rep, err = execute(capsys, str(tid), "--owner", "w1")
    assert code == 0 and rep["outcome"] == "done", err
    assert rep["changed_paths"] == ["src/d.txt"]
    kinds = {e["kind"]: e for e in rep["evidence"]}
    diff = run(capsys, "audit", "evidence", kinds["diff"]["digest"])[1]
    assert "+from-docker" in diff
    run_rec = json.loads(run(capsys, "audit", "evidence", kinds["run"]["digest"])[1])
    assert run_rec["sandboxed"] is True and run_rec["sandbox"]["network"] == "none"
    assert run_rec["sandbox"]["read_only"] is True and run_rec["sandbox"]["memory_mb"] == 128
    assert not containers(f"aictl.task={tid}")


def test_writes_outside_the_workspace_fail_and_network_is_off(docker_project, capsys):
    tid = create(
        capsys,
        "escape",
        "--lock",
        "src/**",
        "--command",
        "echo x > /etc/evil 2>/dev/null && echo WROTE_ETC; "
        # the URL is built at run time, so aictl's command scan cannot see it: the container must stop it
        "wget -q -T 2 -O /dev/null \"$(printf 'http:%s' //1.1.1.1)\" 2>/dev/null && echo NET_OK; "
        "ls /sys/class/net; echo fine > src/ok.txt",
    )
    code, rep, err = execute(capsys, str(tid), "--owner", "w1")
    assert code == 0, err
    by_name = {e["name"]: e for e in rep["evidence"]}
    out = run(capsys, "audit", "evidence", by_name["stdout.txt"]["digest"])[1]
    err = run(capsys, "audit", "evidence", by_name["stderr.txt"]["digest"])[1]
    assert "WROTE_ETC" not in out and "NET_OK" not in out and out.split("\n")[0].strip() == "lo"
    assert "Read-only file system" in err
    assert rep["changed_paths"] == ["src/ok.txt"]


def test_timeout_in_docker_leaves_no_container(docker_project, capsys):
    tid = create(capsys, "hang", "--lock", "src/**", "--command", "sleep 60", "--max-attempts", "1")
    _code, rep, _ = execute(capsys, str(tid), "--owner", "w1", "--timeout", "2")
    assert rep["outcome"] == "failed" and "timed out" in rep["reason"]
    assert not containers(f"aictl.task={tid}")


def test_memory_hog_is_contained(docker_project, capsys):
    tid = create(
        capsys,
        "hog",
        "--lock",
        "src/**",
        "--command",
        "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived",
        "--max-attempts",
        "1",
    )
    code, rep, _ = execute(capsys, str(tid), "--owner", "w1")
    assert code == 1 and rep["outcome"] == "failed"
    assert not containers(f"aictl.task={tid}")


def test_a_policy_denied_secret_is_masked_and_a_network_deny_beats_sandbox_network(docker_project, capsys):
    from tests.agents.canary import SECRET, canary_policy
    from tests.execution.conftest import git

    (docker_project / ".ai" / "policy.yaml").write_text(canary_policy())
    config = docker_project / ".ai" / "config.yaml"
    config.write_text(config.read_text() + "sandbox_network: true\n")
    (docker_project / "secrets").mkdir()
    (docker_project / "secrets" / "token.txt").write_text(SECRET + "\n")
    (docker_project / "deploy.pem").write_text(SECRET + "-pem\n")
    git(docker_project, "add", "-A")
    git(docker_project, "commit", "-qm", "a secret in the repository")
    tid = create(
        capsys,
        "snoop",
        "--lock",
        "src/**",
        "--command",
        # Names built at run time: the policy's scan of the command line cannot see them, the mask holds.
        "f=$(printf 'secr%s/token.txt' ets); p=$(printf '%s.pem' deploy); cat $f $p; cp $f src/copy.txt; "
        "echo [net]; ls /sys/class/net; tail -n +2 /proc/net/route; echo [end]; echo done > src/ok.txt",
    )
    code, rep, err = execute(capsys, str(tid), "--owner", "w1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    by_name = {e["name"]: e for e in rep["evidence"]}
    out = run(capsys, "audit", "evidence", by_name["stdout.txt"]["digest"])[1]
    assert out.split("[net]")[1].split("[end]")[0].split() == ["lo"]  # no eth0, no route: no network at all
    everything = out + "".join(run(capsys, "audit", "evidence", e["digest"])[1] for e in rep["evidence"])
    assert SECRET not in everything and SECRET not in err
    assert sorted(rep["changed_paths"]) == ["src/copy.txt", "src/ok.txt"]
    assert git(docker_project, "show", f"aictl/task-{tid}:src/copy.txt") == ""  # what it copied was the mask
    run_rec = json.loads(run(capsys, "audit", "evidence", by_name["run.json"]["digest"])[1])
    assert run_rec["sandbox"]["network"] == "none"
    assert sorted(run_rec["sandbox"]["masked_paths"]) == ["deploy.pem", "secrets/token.txt"]
    code, out, err = run(capsys, "audit", "decisions", "--task", str(tid), "--action", "network", "-o", "json")
    network = json.loads(out)
    assert code == 0 and [(d["effect"], d["matched_rules"]) for d in network] == [("deny", ["no-network"])]
