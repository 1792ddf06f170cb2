"""An API connector's tool loop stays on the host while each run_command runs in the docker sandbox: a command
that writes outside the worktree or reaches the forbidden local server (127.0.0.2) fails to, and the tool result
the model reads, the events and the egress proxy's record all say so."""

from __future__ import annotations

import pytest

from aictl.agents.connectors.anthropic_api import AnthropicConnector
from aictl.agents.connectors.base import RunContext
from aictl.domain.models import AIRecord
from aictl.sandbox import SandboxSpec, get_sandbox
from tests.fakeprovider import reply, tool

pytestmark = pytest.mark.docker


def test_run_command_cannot_write_outside_or_reach_the_forbidden_server(
    fake_provider, forbidden, agents_image, tmp_path, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-KEYVALUE-0001")
    ws = tmp_path / "ws"
    ws.mkdir()
    port = forbidden.server_address[1]
    command = (
        "echo inside > ok.txt; touch /opt/x 2>/dev/null; echo opt=$?; touch /tmp/../etc/x 2>/dev/null; echo etc=$?; "
        f"echo body=$(curl -s -m 5 http://127.0.0.2:{port}/); curl -s -m 3 --noproxy '*' http://127.0.0.2:{port}/; "
        "echo direct=$?"
    )
    fake_provider.script(reply(tools=[tool("run_command", {"command": command})]), reply(text="done"))
    seen: list = []
    events: list[dict] = []
    spec = SandboxSpec(backend="docker", image=agents_image, timeout_s=120, egress=[], on_egress=seen.append)
    ctx = RunContext(
        task=None,
        workdir=ws,
        sandbox=get_sandbox("docker"),
        spec=spec,
        ai=AIRecord(
            id="anthropic-test", connector="anthropic", model="claude-haiku-4-5", config={"base_url": fake_provider.url}
        ),
        prompt="try to get out",
        on_event=events.append,
    )
    result = AnthropicConnector().run(ctx)
    assert result.ok, result.error
    assert (ws / "ok.txt").read_text() == "inside\n"  # the worktree is writable
    output = next(e for e in events if e["type"] == "tool_result")["output"]
    assert "opt=1" in output and "etc=1" in output  # nothing else is
    assert "not allowed" in output and "leaked" not in output and "direct=0" not in output
    assert forbidden.hits == 0
    assert [(a.host, a.port, a.allowed) for a in seen] == [("127.0.0.2", port, False)]


def test_an_agents_run_gets_the_agents_image_once_it_is_built(agents_image, docker_engine):
    """An API connector's commands in docker: git, python and node once the agents image exists, busybox before."""
    from aictl.sandbox.agents_image import AGENTS_IMAGE, for_agents
    from aictl.sandbox.image import DEFAULT_IMAGE

    named = SandboxSpec(backend="docker", image="my-own:1")
    assert for_agents(named, docker_engine).image == "my-own:1"  # a sandbox_image the user chose stays
    default = SandboxSpec(backend="docker", image=DEFAULT_IMAGE)
    had = _tagged(docker_engine, AGENTS_IMAGE)
    if not had:  # a fresh engine: lend it the test's build under the real name for the test's length
        docker_engine.images.get(agents_image).tag(AGENTS_IMAGE)
    try:
        assert for_agents(default, docker_engine).image == AGENTS_IMAGE
        docker_engine.images.remove(AGENTS_IMAGE, noprune=True)
        assert for_agents(default, docker_engine).image == DEFAULT_IMAGE  # not built: the busybox image
    finally:
        if had:
            docker_engine.images.get(had).tag(AGENTS_IMAGE)


def _tagged(client, name: str) -> str | None:
    """The id the tag points to now, if any."""
    from docker.errors import DockerException

    try:
        return client.images.get(name).id
    except DockerException:
        return None
