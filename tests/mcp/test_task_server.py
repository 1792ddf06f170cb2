"""The task-scoped server a run's agent gets: its own task only, silent ("lease lost") once fenced; subtasks inside
the parent's locks with a decision record; messages stored, audited and read once."""

import os
import sys

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import Client
from mcp.client.stdio import StdioServerParameters


def _server(project, task_id, epoch, owner="w1"):
    return StdioServerParameters(
        command=sys.executable,
        cwd=str(project),
        args=["-m", "aictl", "mcp", "serve", "--task", str(task_id), "--epoch", str(epoch), "--owner", owner],
        env={k: v for k, v in os.environ.items() if k.startswith("AICTL_")},
    )


async def ok(client, name, args=None):
    r = await client.call_tool(name, args or {})
    assert not r.is_error, (name, r.content)
    sc = r.structured_content
    return sc["result"] if set(sc) == {"result"} else sc


async def err(client, name, args=None):
    r = await client.call_tool(name, args or {})
    assert r.is_error, (name, r.structured_content)
    return r.structured_content["error"]


def test_a_task_server_serves_its_task_until_the_lease_is_fenced(project, j, cli):
    a = j("task", "create", "Build the API", "--lock", "src/**")["id"]
    b = j("task", "create", "Write docs", "--lock", "docs/**")["id"]
    epoch = j("task", "claim", "--id", str(a), "--owner", "w1")["lease"]["lease_epoch"]
    j("task", "messages", str(a), "--send", "the schema changed: use users.v2")

    async def main():
        async with Client(_server(project, a, epoch)) as c:
            assert (await ok(c, "get_task"))["id"] == a
            other = await err(c, "get_task", {"task_id": b})
            assert (other["code"], other["exit_class"]) == ("policy_denied", "policy_denied")
            assert (await err(c, "read_messages", {"task_id": b}))["code"] == "policy_denied"

            await ok(c, "report_progress", {"text": "running   the tests"})
            assert j("task", "get", str(a))["activity"] == "running the tests"
            await ok(c, "heartbeat", {"ttl": 300})
            await ok(c, "attach_evidence", {"content": "ok\n", "name": "run.log"})
            await ok(c, "return_output", {"output": {"endpoints": 3, "breaking": False}})

            inbox = await ok(c, "read_messages")
            assert [m["body"] for m in inbox] == ["the schema changed: use users.v2"]
            assert inbox[0]["read_epoch"] == epoch and await ok(c, "read_messages") == []
            sent = await ok(c, "send_message", {"to_task": b, "body": "API is at /v2"})
            assert sent["from_task_id"] == a and sent["sender"] == "w1"
            shown = j("task", "get", str(b))["messages"]  # task get carries a task's messages, read or not
            assert [(m["body"], m["from_task_id"], m["read_at"]) for m in shown] == [("API is at /v2", a, None)]
            human = cli("task", "get", str(b))[1]
            assert "messages:     1" in human and f"from task {a} [unread]: API is at /v2" in human

            kids = await ok(
                c,
                "create_subtasks",
                {
                    "tasks": [
                        {"title": "Users endpoint", "locks": ["src/api/**"]},
                        {"title": "Tests", "locks": ["src/tests/x.py"]},
                    ]
                },
            )
            assert [k["status"] for k in kids] == ["queued", "queued"]
            assert all(f"parent:{a}" in k["labels"] for k in kids)
            outside = await err(c, "create_subtasks", {"tasks": [{"title": "Docs", "locks": ["docs/**"]}]})
            assert outside["code"] == "policy_denied" and "outside" in outside["message"]
            on_parent = await err(c, "create_subtasks", {"tasks": [{"title": "After", "depends_on": [a]}]})
            assert on_parent["code"] == "usage"

            # Fenced: the lease goes back and is claimed again at a new epoch; the server stops answering.
            j("task", "release", str(a), "--epoch", str(epoch), "--owner", "w1")
            j("task", "claim", "--id", str(a), "--owner", "w2")
            for name, args in (
                ("report_progress", {"text": "still here"}),
                ("get_task", {}),
                ("attach_evidence", {"content": "x", "name": "late.log"}),
                ("create_subtasks", {"tasks": [{"title": "late"}]}),
            ):
                lost = await err(c, name, args)
                assert (lost["code"], lost["exit_class"]) == ("lease_lost", "conflict")
            return kids

    kids = anyio.run(main)
    evidence = {e["name"]: e for e in j("task", "evidence", str(a))}
    assert set(evidence) == {"run.log", "output.json"} and evidence["output.json"]["kind"] == "output"
    decisions = j("audit", "decisions", "--task", str(a))
    assert any(d["action"] == "create" and d["effect"] == "allow" for d in decisions)
    assert [k["id"] for k in j("task", "list", "--label", f"parent:{a}")] == [k["id"] for k in kids]
    to_b = j("task", "messages", str(b))
    assert [(m["from_task_id"], m["body"], m["read_at"]) for m in to_b] == [(a, "API is at /v2", None)]
    assert any(e["action"] == "message" for e in j("audit", "log", "--task", str(b)))


def test_task_and_epoch_go_together(project, proc_cli):
    r = proc_cli("mcp", "serve", "--task", "1", cwd=project)
    assert r.returncode == 2 and "--task and --epoch" in r.stderr
