"""The API connectors' tool loop with MCP tools, through the whole CLI (`aictl task execute`, the real Anthropic SDK
against the fake provider): the run's own task server and a server from the AI's config join the tools, each call
is decided by the policy as `use_tool` with the server and tool name and recorded, and a message sent to the task
before it ran is part of its prompt."""

from __future__ import annotations

import json
import sys

import pytest

from tests.agents.cli_fixtures import cli_json, execute
from tests.fakeprovider import reply, tool

KEY = "sk-ant-api03-fakeKEYforTESTS0123456789abcdefghijklmnop"
DENY_MCP_CREATE = """
  - id: no-task-create-over-mcp
    effect: deny
    match:
      actions: [use_tool]
    when: 'has(context.mcp_tool) && context.mcp_tool == "task_create"'
    reason: agents do not add to the queue through the queue server
"""


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def test_the_tool_loop_calls_mcp_tools_under_the_policy(fake_provider, git_project, capsys):
    policy = git_project / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text().replace("rules:\n", "rules:" + DENY_MCP_CREATE, 1))
    queue = {
        "queue": {
            "command": sys.executable,
            "args": ["-m", "aictl", "mcp", "serve"],
            "env": {"AICTL_PROJECT": str(git_project), "AICTL_ACTOR": "queue-reader"},
        }
    }
    cli_json(
        capsys,
        "ai",
        "register",
        "api-1",
        "--connector",
        "anthropic",
        "--model",
        "claude-haiku-4-5",
        "--base-url",
        fake_provider.url,
        "--api-key-env",
        "ANTHROPIC_API_KEY",
        "--config",
        "retry_backoff_s=0.01",
        "--config",
        "mcp_servers=" + json.dumps(queue),
    )
    tid = cli_json(capsys, "task", "create", "Look around", "--lock", "src/**")["id"]
    other = cli_json(capsys, "task", "create", "Another task")["id"]
    cli_json(capsys, "task", "messages", str(tid), "--send", "REMEMBER-PLUGH before you start")
    fake_provider.script(
        reply(
            "Working.",
            [
                tool("mcp__aictl__report_progress", {"text": "looking around"}),
                tool("mcp__queue__task_list", {}),
                tool("mcp__queue__task_create", {"tasks": [{"title": "sneaky"}]}),
                tool("mcp__aictl__send_message", {"to_task": other, "body": "hello from the run"}),
            ],
        ),
        reply("Looked around."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)

    first, second = fake_provider.calls("anthropic")
    assert "REMEMBER-PLUGH" in json.dumps(first.body["messages"])  # the waiting message is in the prompt
    assert {"mcp__aictl__report_progress", "mcp__queue__task_list", "mcp__queue__task_create"} <= set(first.tools)
    results = [
        b
        for m in second.body["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert [bool(r.get("is_error")) for r in results] == [False, False, True, False]
    assert "Look around" in json.dumps(results[1]["content"])  # the queue server listed the tasks
    assert "mcp__queue__task_create is denied by rule no-task-create-over-mcp" in json.dumps(results[2]["content"])
    assert [t["title"] for t in cli_json(capsys, "task", "list")] == ["Look around", "Another task"]
    to_other = cli_json(capsys, "task", "messages", str(other))
    assert [(m["from_task_id"], m["body"]) for m in to_other] == [(tid, "hello from the run")]
    assert cli_json(capsys, "task", "messages", str(tid))[0]["read_epoch"] == rep["task"]["lease_epoch"]

    decisions = [d for d in cli_json(capsys, "audit", "decisions", "--task", str(tid)) if d["action"] == "use_tool"]
    mcp_calls = [
        (d["input"]["context"]["mcp_server"], d["input"]["context"]["mcp_tool"], d["effect"])
        for d in decisions
        if "mcp_server" in d["input"]["context"]
    ]
    assert sorted(mcp_calls) == sorted(
        [
            ("aictl", "report_progress", "allow"),
            ("queue", "task_list", "allow"),
            ("queue", "task_create", "deny"),
            ("aictl", "send_message", "allow"),
        ]
    )


def test_an_agent_asks_for_approval_the_task_waits_and_the_next_attempt_may(fake_provider, git_project, capsys):
    """request_approval on the run's task server: the run ends, the task waits naming the action; `task approve`
    grants exactly that action to the next attempt. A denied action cannot be asked for: a deny is final."""
    cli_json(capsys, "ai", "register", "api-1", "--connector", "anthropic", "--model", "claude-haiku-4-5",
             "--base-url", fake_provider.url, "--api-key-env", "ANTHROPIC_API_KEY",
             "--config", "retry_backoff_s=0.01")  # fmt: skip
    tid = cli_json(capsys, "task", "create", "Fix CI", "--lock", ".github/**")["id"]
    ci = ".github/workflows/ci.yml"  # aictl init's policy: CI changes need a person (protect-ci)
    ask = {"action": "write_path", "path": ci, "reason": "the CI job needs a new step"}
    fake_provider.script(
        reply(
            "I need two things.",
            [
                tool("mcp__aictl__request_approval", {"action": "run_command", "command": "git push", "reason": "x"}),
                tool("mcp__aictl__request_approval", ask),
            ],
        ),
        reply("Waiting for a person."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert rep["outcome"] == "awaiting_approval", (rep.get("reason"), err)
    assert f"write_path {ci}" in rep["reason"]
    first = fake_provider.calls("anthropic")[1].body["messages"]
    assert "no approval can allow it" in json.dumps(first)  # the push: denied outright, not parked

    cli_json(capsys, "task", "approve", str(tid), "--comment", "go ahead")
    fake_provider.script(
        reply("", [tool("write_file", {"path": ci, "content": "on: push\n"})]),
        reply("Done."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    writes = [
        d
        for d in cli_json(capsys, "audit", "decisions", "--task", str(tid))
        if d["action"] == "write_path" and d["lease_epoch"] == rep["lease_epoch"] and d["resource"]["path"] == ci
    ]
    assert writes and writes[0]["effect"] == "allow", writes
