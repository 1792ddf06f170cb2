"""`aictl mcp serve` driven by the SDK's own client: every tool, the resources and the prompt, over stdio (a real
`python -m aictl mcp serve` subprocess) and over streamable HTTP (a real server on 127.0.0.1, bearer token)."""

import json
import os
import re
import subprocess
import sys

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import Client
from mcp.client.stdio import StdioServerParameters

TOOLS = {
    "task_create",
    "task_list",
    "task_ready",
    "task_get",
    "task_claim",
    "task_heartbeat",
    "task_start",
    "task_complete",
    "task_fail",
    "task_release",
    "task_attach",
    "task_evidence",
    "task_diff",
    "route",
    "policy_explain",
    "audit_log",
    "audit_verify",
    "merge_status",
    "workflow_list",
    "workflow_run",
    "workflow_status",
}


async def ok(client, name, args=None):
    r = await client.call_tool(name, args or {})
    assert not r.is_error, (name, r.content)
    sc = r.structured_content
    return sc["result"] if set(sc) == {"result"} else sc  # a list comes wrapped: structured content is an object


async def err(client, name, args):
    r = await client.call_tool(name, args)
    assert r.is_error, (name, r.structured_content)
    payload = r.structured_content["error"]
    assert payload == json.loads(r.content[0].text)["error"]  # the text says the same for clients that read text
    return payload


async def exercise(client, actor):
    """Every tool once, each checked by what it did to the store."""
    tools = await client.list_tools()
    assert {t.name for t in tools.tools} == TOOLS
    for t in tools.tools:
        assert t.description and t.input_schema["type"] == "object"
    claim_schema = next(t for t in tools.tools if t.name == "task_claim").input_schema
    assert "ctx" not in claim_schema["properties"] and "task_id" in claim_schema["properties"]

    a, b = await ok(
        client,
        "task_create",
        {
            "tasks": [
                {"key": "schema", "title": "Add users table", "locks": ["db/**"]},
                {"title": "Users API", "depends_on": ["schema"], "locks": ["src/api/**"]},
            ]
        },
    )
    assert (a["status"], b["status"], b["dependencies"]) == ("queued", "blocked", [a["id"]])
    assert [t["id"] for t in await ok(client, "task_list", {"status": ["blocked"]})] == [b["id"]]
    ready = {e["id"]: e for e in await ok(client, "task_ready")}
    assert ready[a["id"]]["ready"] and not ready[b["id"]]["ready"] and ready[b["id"]]["reasons"]
    assert (await ok(client, "task_get", {"task_id": b["id"]}))["title"] == "Users API"

    claimed = await ok(client, "task_claim", {"task_id": a["id"]})
    lease = claimed["lease"]
    assert lease["owner"] == actor and claimed["task"]["status"] == "claimed"
    epoch = lease["lease_epoch"]
    assert (await ok(client, "task_heartbeat", {"task_id": a["id"], "epoch": epoch, "ttl": 120}))[
        "lease_epoch"
    ] == epoch
    assert (await ok(client, "task_start", {"task_id": a["id"], "epoch": epoch}))["status"] == "running"
    ref = await ok(
        client, "task_attach", {"task_id": a["id"], "epoch": epoch, "content": "all green\n", "name": "run.log"}
    )
    assert [e["digest"] for e in await ok(client, "task_evidence", {"task_id": a["id"]})] == [ref["digest"]]
    stale = await err(client, "task_complete", {"task_id": a["id"], "epoch": epoch + 1})
    assert (stale["code"], stale["exit_code"], stale["exit_class"]) == ("lease_lost", 4, "conflict")
    assert stale["hint"]
    done = await ok(client, "task_complete", {"task_id": a["id"], "epoch": epoch, "result": {"rows": 3}})
    assert (done["status"], done["result"]) == ("done", {"rows": 3})
    assert (await ok(client, "task_get", {"task_id": b["id"]}))["status"] == "queued"

    second = (await ok(client, "task_claim", {}))["lease"]  # the next ready one: b
    assert second["task_id"] == b["id"]
    released = await ok(client, "task_release", {"task_id": b["id"], "epoch": second["lease_epoch"], "reason": "later"})
    assert released["status"] == "queued" and released["owner"] is None
    third = (await ok(client, "task_claim", {"task_id": b["id"]}))["lease"]
    failed = await ok(client, "task_fail", {"task_id": b["id"], "epoch": third["lease_epoch"], "reason": "broken"})
    assert failed["status"] == "failed"
    nothing = await err(client, "task_claim", {})
    assert (nothing["code"], nothing["exit_class"]) == ("not_found", "not_found")

    missing = await err(client, "task_get", {"task_id": 999})
    assert (missing["code"], missing["exit_code"]) == ("not_found", 3) and "task list" in missing["hint"]
    no_branch = await err(client, "task_diff", {"task_id": a["id"]})
    assert no_branch["code"] == "not_found" and f"aictl/task-{a['id']}" in no_branch["message"]
    assert (await ok(client, "route", {"task_id": a["id"]}))["task_id"] == a["id"]
    why = await ok(client, "policy_explain", {"action": "claim", "ai": "claude-1", "task_id": a["id"]})
    assert why["decision"]["effect"] in ("allow", "deny", "require_approval") and why["rules"]
    bad = await err(client, "policy_explain", {"action": "fly"})
    assert (bad["code"], bad["exit_class"]) == ("usage", "usage")

    events = await ok(client, "audit_log", {"task_id": a["id"]})
    assert {"create", "claim", "complete"} <= {e["action"] for e in events}
    assert {e["actor"] for e in events} == {actor}  # every change is recorded as the caller
    assert (await ok(client, "audit_verify"))["ok"] is True
    queue = await ok(client, "merge_status", {"into": "main"})
    assert queue["into"] == "main" and [i["task_id"] for i in queue["items"]] == [a["id"]], queue

    task_res = json.loads((await client.read_resource(f"aictl://task/{a['id']}")).contents[0].text)
    assert task_res["status"] == "done" and [e["name"] for e in task_res["evidence"]] == ["run.log"]
    policy = json.loads((await client.read_resource("aictl://policy")).contents[0].text)
    assert policy["sources"]
    tail = json.loads((await client.read_resource("aictl://audit/tail")).contents[0].text)
    assert tail[-1]["task_id"] == b["id"]
    prompt = await client.get_prompt("plan_spec", {"spec": "Add a users API"})
    assert "Add a users API" in prompt.messages[0].content.text and "task_create" in prompt.messages[0].content.text

    # Workflows: listed, started (its first step becomes a task at once), looked at.
    flows = await ok(client, "workflow_list")
    assert [w["name"] for w in flows] == ["hello"] and flows[0]["inputs"] == ["who"]
    missing_input = await err(client, "workflow_run", {"name": "hello"})
    assert missing_input["exit_class"] == "usage" and "who" in missing_input["message"]
    started = await ok(client, "workflow_run", {"name": "hello", "inputs": {"who": "mcp"}})
    assert started["status"] == "running" and started["steps"][0]["status"] in ("pending", "running")
    assert (await ok(client, "workflow_status", {"run_id": started["id"]}))["id"] == started["id"]
    assert (await err(client, "workflow_status", {"run_id": 999}))["exit_class"] == "not_found"


@pytest.fixture
def repo(project):
    """The project as a git repository with one commit (task_diff reads task branches)."""
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "init"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True)
    flows = project / ".ai" / "workflows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "hello.yaml").write_text(
        "version: 1\nname: hello\ninputs:\n  who: {type: string, required: true}\nsteps:\n"
        "  - id: greet\n    command: echo hello ${{ inputs.who }} > hello.txt\n    locks: [hello.txt]\n"
    )
    return project


def test_every_tool_over_stdio(repo):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aictl", "mcp", "serve"],
        env={"AICTL_ACTOR": "agent-7", **{k: v for k, v in os.environ.items() if k.startswith("AICTL_")}},
        cwd=str(repo),
    )

    async def main():
        async with Client(params) as client:
            await exercise(client, "agent-7")

    anyio.run(main)


@pytest.fixture
def http_server(repo):
    """A real `aictl mcp serve --http 127.0.0.1:0` with two tokens; yields its URL."""
    env = {**os.environ, "AICTL_MCP_TOKEN": "alice:" + "a" * 32 + ",bob:" + "b" * 32, "AICTL_ACTOR": "server"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aictl", "mcp", "serve", "--http", "127.0.0.1:0", "--token-env", "AICTL_MCP_TOKEN"],
        cwd=repo,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://\S+)", line)
        assert m, line + proc.stderr.read()
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(url, secret):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"} if secret else {}, timeout=30)
    return http, streamable_http_client(url, http_client=http)


def test_every_tool_over_http_as_the_tokens_name(http_server):
    async def main():
        http, transport = _client(http_server, "a" * 32)
        async with http, Client(transport) as client:
            await exercise(client, "alice")

    anyio.run(main)


def test_http_refuses_a_request_without_the_right_token(http_server):
    import httpx2

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer " + "c" * 32}, {"Authorization": "Basic " + "a" * 32}):
        r = httpx2.post(http_server, json=body, headers={"Accept": "application/json, text/event-stream", **headers})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_a_non_loopback_bind_needs_a_token(project, proc_cli):
    r = proc_cli("mcp", "serve", "--http", "0.0.0.0:0", cwd=project)
    assert r.returncode == 2 and "needs a bearer token" in r.stderr and "--token-env" in r.stderr
    r = proc_cli("mcp", "serve", "--http", "127.0.0.1:0", "--token-env", "NOPE_UNSET", cwd=project)
    assert r.returncode == 2 and "NOPE_UNSET" in r.stderr


def test_the_http_token_is_checked_on_every_request_after_the_first(http_server):
    import httpx2

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    good = httpx2.post(
        http_server,
        json=body,
        headers={"Accept": "application/json, text/event-stream", "Authorization": "Bearer " + "b" * 32},
    )
    assert good.status_code != 401
    bad = httpx2.post(
        http_server,
        json=body,
        headers={
            "Accept": "application/json, text/event-stream",
            "mcp-session-id": good.headers.get("mcp-session-id", "x"),
        },
    )
    assert bad.status_code == 401
