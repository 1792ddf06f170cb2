"""Claude Code and Codex inside the docker backend: the real CLIs in the agents image, the fake provider on the host
reached only through the run's egress proxy, a second local server (127.0.0.2) as the forbidden host.

Each task runs through `aictl task execute --backend docker`: the file lands on the task branch (the collector
commits on the host), the agent is not root, git works inside on the read-only metadata, the worktree is the only
writable path, the forbidden server is refused and the refusal is in the run's evidence."""

from __future__ import annotations

import json

import pytest

from aictl.config import load_settings
from tests.agents.cli_fixtures import cli_json, evidence_of, execute
from tests.fakeprovider import reply, tool

pytestmark = pytest.mark.docker

KEY_ENV = "FAKE_AGENT_KEY"
KEY = "sk-ant-api03-fakeKEYforDOCKERtests0123456789abcdefghijkl"


@pytest.fixture
def docker_project(git_project, agents_image, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    config = git_project / ".ai" / "config.yaml"
    config.write_text(config.read_text() + f"sandbox_image: {agents_image}\n")
    return git_project


def _probe(forbidden_port: int) -> str:
    """What the agent runs inside: who it is, git on the worktree, writes elsewhere, and the forbidden server."""
    # /opt and the forbidden URL are built at run time: the hook's scan of the command line cannot see them, so
    # what stops them is the container itself (read-only paths, the proxy), which is what this probes.
    return (
        "echo who=$(whoami); git status --short; git log --format=log=%s -1; "
        "python3 -c \"open('/op' + 't/x', 'w')\" 2>/dev/null; echo opt=$?; "
        "python3 -c \"import subprocess as s; d = s.check_output(['git', 'rev-parse', '--git-common-dir']); "
        "open(d.decode().strip() + '/x', 'w')\" 2>/dev/null; "
        f'echo gitdir=$?; c=\':\'; u="http${{c}}//127.0.0.2${{c}}{forbidden_port}/"; echo body=$(curl -s -m 5 "$u"); '
        "curl -s -m 3 --noproxy '*' \"$u\" >/dev/null; echo direct=$?"
    )


def _hooked(capsys, tid: int) -> list[tuple[str, str]]:
    """The commands the run's PreToolUse hook asked about from inside the container (action, effect)."""
    decisions = cli_json(capsys, "audit", "decisions", "--task", str(tid))
    return [(d["action"], d["effect"]) for d in decisions if d["action"] == "run_command"]


def _check(capsys, tid: int, fake_provider, forbidden, git_project) -> None:
    from tests.execution.conftest import git

    assert git(git_project, "show", f"aictl/task-{tid}:hello.txt") == "hi\n"
    found = evidence_of(capsys, tid)
    transcript = found["transcript"]
    assert "who=" in transcript and "who=root" not in transcript
    assert "?? hello.txt" in transcript and "log=initial" in transcript  # git works on the read-only metadata
    assert "opt=1" in transcript and "gitdir=1" in transcript  # only the worktree is writable
    assert "not allowed" in transcript and "leaked" not in transcript and forbidden.hits == 0
    assert "direct=0" not in transcript  # no route around the proxy
    sandbox = json.loads(found["run"])["sandbox"]
    assert sandbox["network"] == "egress-proxy" and sandbox["user"] != "0:0"
    attempts = {(a["host"], a["port"], a["allowed"]) for a in sandbox["egress"]}
    assert ("127.0.0.1", fake_provider.port, True) in attempts  # the provider was reached through the proxy
    assert ("127.0.0.2", forbidden.server_address[1], False) in attempts
    assert KEY not in "".join(found.values())
    # Every connection the container tried is a decision record: the provider allowed as the AI's own API, the
    # forbidden server denied by the policy's network rules.
    net = [d for d in cli_json(capsys, "audit", "decisions", "--task", str(tid)) if d["action"] == "network"]
    assert any(d["effect"] == "allow" and d["matched_rules"] == ["aictl:ai-api"] for d in net), net
    assert any(d["effect"] == "deny" and "127.0.0.2" in json.dumps(d) for d in net), net


def test_claude_code_completes_a_task_inside_the_container(docker_project, fake_provider, forbidden, capsys):
    cli_json(
        capsys,
        "ai",
        "register",
        "claude-d",
        "--connector",
        "claude-code",
        "--model",
        "claude-sonnet-4-5",
        "--base-url",
        fake_provider.url,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=0",
    )
    tid = cli_json(capsys, "task", "create", "create hello.txt containing hi", "--lock", "hello.txt")["id"]
    workspace = load_settings(docker_project).home / "workspaces" / f"task-{tid}-e1"  # at the same path inside
    fake_provider.script(
        reply("I'll create it.", [tool("Write", {"file_path": str(workspace / "hello.txt"), "content": "hi\n"})]),
        reply("Checking.", [tool("Bash", {"command": _probe(forbidden.server_address[1])})]),
        reply("Sharing it.", [tool("Bash", {"command": "git push origin HEAD"})]),
        reply("Created hello.txt."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "claude-d", "--backend", "docker")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    _check(capsys, tid, fake_provider, forbidden, docker_project)
    # The hook ran inside the container: the probe and the push were each decided, the push refused.
    assert _hooked(capsys, tid) == [("run_command", "allow"), ("run_command", "deny")]
    assert "git push" in evidence_of(capsys, tid)["transcript"]


def test_codex_completes_a_task_inside_the_container(docker_project, fake_provider, forbidden, capsys):
    cli_json(
        capsys,
        "ai",
        "register",
        "codex-d",
        "--connector",
        "codex",
        "--model",
        "gpt-5.5",
        "--base-url",
        fake_provider.url,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=0",
    )
    tid = cli_json(capsys, "task", "create", "create hello.txt containing hi", "--lock", "hello.txt")["id"]
    fake_provider.script(
        reply("", [tool("exec_command", {"cmd": "echo hi > hello.txt; " + _probe(forbidden.server_address[1])})]),
        reply("Created hello.txt."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "codex-d", "--backend", "docker")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    _check(capsys, tid, fake_provider, forbidden, docker_project)
    assert _hooked(capsys, tid)[0] == ("run_command", "allow")  # Codex's hook ran inside the container too


def test_a_session_resumes_inside_the_container(agents_image, fake_provider, tmp_path, monkeypatch):
    """The state dir is mounted per AI and task: a follow-up run's --resume finds the first run's session."""
    from aictl.agents.connectors.claude_code import ClaudeCodeConnector
    from aictl.sandbox.base import SandboxSpec
    from aictl.sandbox.docker import DockerSandbox
    from tests.agents.cli_fixtures import make_ai, make_ctx

    monkeypatch.setenv(KEY_ENV, KEY)
    ai = make_ai("claude-code", "claude", fake_provider, model="claude-sonnet-4-5", key_env=KEY_ENV)
    spec = SandboxSpec(backend="docker", image=agents_image, timeout_s=120)
    first_ws, second_ws = tmp_path / "w1", tmp_path / "w2"
    first_ws.mkdir()
    second_ws.mkdir()
    fake_provider.script(reply("remember PINEAPPLE"))
    ctx = make_ctx(first_ws, ai, state_dir=tmp_path / "state", prompt="remember a word")
    ctx.sandbox, ctx.spec = DockerSandbox(), spec
    first = ClaudeCodeConnector().run(ctx)
    assert first.ok and first.session_id, first.error
    fake_provider.script(reply("it was PINEAPPLE"))
    ctx = make_ctx(second_ws, ai, state_dir=tmp_path / "state", prompt="which word?", resume=first.session_id)
    ctx.sandbox, ctx.spec = DockerSandbox(), spec
    second = ClaudeCodeConnector().run(ctx)
    assert second.ok, second.error
    assert "remember a word" in json.dumps(fake_provider.calls("anthropic")[-1].body["messages"])


def test_a_sigkilled_executor_leaves_container_and_network_for_the_reclaim_to_remove(
    docker_project, fake_provider, docker_engine, capsys
):
    import os
    import signal
    import subprocess
    import sys
    import time

    from aictl.sandbox.runs import stop_stale_runs

    cli_json(capsys, "ai", "register", "claude-k", "--connector", "claude-code", "--model", "claude-sonnet-4-5",
             "--base-url", fake_provider.url, "--api-key-env", KEY_ENV, "--config", "max_retries=0")  # fmt: skip
    tid = cli_json(capsys, "task", "create", "think for a long time", "--lock", "hello.txt")["id"]
    fake_provider.script(reply("thinking " * 200, delay_s=0.2))  # streams for a while: the run is in progress
    proc = subprocess.Popen(
        [sys.executable, "-m", "aictl", "task", "execute", str(tid), "--ai", "claude-k", "--backend", "docker"],
        cwd=docker_project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    label = {"label": ["aictl.managed=true", f"aictl.task={tid}", "aictl.epoch=1"]}
    api = docker_engine.api
    try:
        deadline = time.monotonic() + 60
        while not fake_provider.calls("anthropic") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert fake_provider.calls("anthropic"), "the CLI never reached the provider"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the executor alone, mid-run: none of its cleanup runs
        proc.wait()
    assert api.containers(filters=label) and api.networks(filters=label)  # left running without their owner
    stopped = stop_stale_runs(load_settings(docker_project).home / "workspaces", tid, 2)  # what a reclaim does
    assert any(s.startswith("container") for s in stopped) and any(s.startswith("network") for s in stopped)
    assert api.containers(all=True, filters=label) == [] and api.networks(filters=label) == []


def test_without_the_agents_image_the_run_says_how_to_build_it(docker_engine, fake_provider, tmp_path, monkeypatch):
    from aictl.agents.connectors.codex import CodexConnector
    from aictl.sandbox.base import SandboxSpec
    from aictl.sandbox.docker import DockerSandbox
    from tests.agents.cli_fixtures import make_ai, make_ctx

    monkeypatch.setenv(KEY_ENV, KEY)
    ai = make_ai("codex", "codex", fake_provider, model="gpt-5.5", key_env=KEY_ENV)
    ctx = make_ctx(tmp_path, ai, state_dir=tmp_path / "state", prompt="anything")
    ctx.sandbox, ctx.spec = DockerSandbox(), SandboxSpec(backend="docker", image="aictl-agents:never-built")
    res = CodexConnector().run(ctx)
    assert not res.ok and res.transient and "aictl sandbox build --preset agents" in res.error
    assert fake_provider.requests == []
