"""The real Claude Code CLI, against the fake provider, calling aictl's MCP tools through --mcp-config (what
`claude mcp add aictl -- aictl mcp serve` sets up), and the task-scoped server a run gets."""

from __future__ import annotations

import json
import os
import sys

import pytest

from aictl.agents.connectors.claude_code import ClaudeCodeConnector
from tests.agents.cli_fixtures import make_ai, make_ctx
from tests.fakeprovider import reply, tool

KEY_ENV = "FAKE_ANTHROPIC_KEY"
KEY = "sk-ant-api03-fakeKEYforTESTS0123456789abcdefghijklmnop"


def _run(claude_bin, fake_provider, project, servers, tmp_path):
    os.environ[KEY_ENV] = KEY
    ai = make_ai("claude-code", claude_bin, fake_provider, model="claude-sonnet-4-5", key_env=KEY_ENV)
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    ctx = make_ctx(ws, ai, state_dir=tmp_path / "state", prompt="use aictl", mcp_servers=servers)
    return ClaudeCodeConnector().run(ctx)


def _results(res):
    return [e for e in res.events if e["type"] == "tool_result"]


def test_claude_code_creates_claims_and_completes_a_task_over_mcp(
    claude_bin, fake_provider, project, tmp_path, j, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, KEY)
    server = {
        "command": sys.executable,
        "args": ["-m", "aictl", "mcp", "serve"],
        "env": {"AICTL_PROJECT": str(project), "AICTL_ACTOR": "claude-mcp"},
    }
    fake_provider.script(
        reply(
            "Creating it.", [tool("mcp__aictl__task_create", {"tasks": [{"title": "Ship it", "locks": ["src/**"]}]})]
        ),
        reply("Claiming it.", [tool("mcp__aictl__task_claim", {"task_id": 1})]),
        reply("Done.", [tool("mcp__aictl__task_complete", {"task_id": 1, "epoch": 1, "result": {"shipped": True}})]),
        reply("All finished."),
    )
    res = _run(claude_bin, fake_provider, project, {"aictl": server}, tmp_path)
    assert res.ok, res.error + res.stderr
    offered = fake_provider.calls("anthropic")[0].tools
    assert {"mcp__aictl__task_create", "mcp__aictl__task_claim", "mcp__aictl__task_complete"} <= set(offered)
    assert [r["ok"] for r in _results(res)] == [True, True, True], res.transcript
    task = j("task", "get", "1")
    assert (task["status"], task["result"], task["last_owner"]) == ("done", {"shipped": True}, "claude-mcp")
    mcp_json = json.loads((tmp_path / "state" / "mcp.json").read_text())
    assert mcp_json["mcpServers"]["aictl"]["args"][-2:] == ["mcp", "serve"]


def test_a_run_gets_its_task_server_and_it_refuses_other_tasks(
    claude_bin, fake_provider, project, tmp_path, j, monkeypatch
):
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.queries import TaskQueries

    monkeypatch.setenv(KEY_ENV, KEY)
    parent = j("task", "create", "Parent", "--lock", "src/**")["id"]
    other = j("task", "create", "Other")["id"]
    epoch = j("task", "claim", "--id", str(parent), "--owner", "runner")["lease"]["lease_epoch"]
    settings = load_settings(str(project))
    store = open_store(settings.resolved_database_url)
    task = TaskQueries(store).get(parent)
    store.close()
    fake_provider.script(
        reply(
            "Progress.",
            [
                tool("mcp__aictl__report_progress", {"text": "splitting the work"}),
                tool("mcp__aictl__create_subtasks", {"tasks": [{"title": "Child", "locks": ["src/a/**"]}]}),
                tool("mcp__aictl__get_task", {"task_id": other}),
            ],
        ),
        reply("Split."),
    )
    from aictl.mcp.inproc import InProcessTaskServers

    # As the executor serves it: in this process, over loopback HTTP, behind a per-run token.
    with InProcessTaskServers(settings, None).serve(task.id, task.lease_epoch, "runner") as (entry, env):
        os.environ[KEY_ENV] = KEY
        ai = make_ai("claude-code", claude_bin, fake_provider, model="claude-sonnet-4-5", key_env=KEY_ENV)
        (tmp_path / "ws").mkdir(exist_ok=True)
        ctx = make_ctx(
            tmp_path / "ws", ai, state_dir=tmp_path / "state", prompt="use aictl", mcp_servers={"aictl": entry}
        )
        ctx.spec = ctx.spec.model_copy(update={"env": {**ctx.spec.env, **env}})
        res = ClaudeCodeConnector().run(ctx)
    assert res.ok, res.error + res.stderr
    config = (tmp_path / "state" / "mcp.json").read_text()
    assert entry["url"].startswith("http://127.0.0.1:") and entry["url"] in config
    # What the agent can read names no store and holds no token (Claude expands ${AICTL_TASK_TOKEN} itself):
    assert settings.resolved_database_url not in config and env["AICTL_TASK_TOKEN"] not in config
    assert env["AICTL_TASK_TOKEN"] not in res.transcript
    assert [r["ok"] for r in _results(res)] == [True, True, False], res.transcript
    assert "bound to task" in json.dumps(_results(res)[2])
    assert j("task", "get", str(parent))["activity"] == "splitting the work"
    child = j("task", "list", "--label", f"parent:{parent}")
    assert [c["title"] for c in child] == ["Child"] and epoch == task.lease_epoch


@pytest.fixture(autouse=True)
def _no_key_leak(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
