"""A provider that cannot be reached: its AI is marked unhealthy and skipped, the task runs on the next AI
without spending an attempt, `aictl route` says why, a passing probe lifts the mark, and `task execute`
sends the ai.unhealthy notification itself (the real anthropic SDK, the fake provider, a closed port)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.agents.cli_fixtures import cli, cli_json, execute
from tests.agents.test_sdk_connectors import KEYS
from tests.fakeprovider import reply, tool


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


def closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there, connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver():
    """A local webhook receiver: the JSON bodies POSTed to it."""
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.got = got  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def register(capsys, ai_id: str, url: str) -> None:
    cli_json(
        capsys,
        "ai",
        "register",
        ai_id,
        "--connector",
        "anthropic",
        "--model",
        "claude-haiku-4-5",
        "--base-url",
        url,
        "--api-key-env",
        "ANTHROPIC_API_KEY",
        "--config",
        "retry_backoff_s=0.01",
    )


def test_unreachable_ai_is_skipped_and_the_task_runs_on_the_healthy_one(fake_provider, git_project, capsys, receiver):
    config = git_project / ".ai" / "config.yaml"
    config.write_text(
        config.read_text() + "notifications:\n  - type: webhook\n"
        f"    url: http://127.0.0.1:{receiver.server_port}/\n    retries: 0\n"
    )
    register(capsys, "dead", f"http://127.0.0.1:{closed_port()}")
    register(capsys, "live", fake_provider.url)
    tid = cli_json(capsys, "task", "create", "add hello.txt", "--lock", "hello.txt", "--max-attempts", "1")["id"]
    assert cli_json(capsys, "route", str(tid))["candidates"][0]["ai"] == "dead"  # ranked first (by id) while healthy
    fake_provider.script(
        reply("Adding it.", [tool("write_file", {"path": "hello.txt", "content": "hi\n"})]), reply("Done.")
    )
    code, rep, err = execute(capsys, str(tid))
    assert code == 0 and rep["outcome"] == "done" and rep["ai"] == "live", (rep.get("reason"), err)
    releases = [e for e in cli_json(capsys, "audit", "log", "--task", str(tid)) if e["action"] == "release"]
    assert len(releases) == 1 and "dead is unhealthy" in json.dumps(releases[0])  # given back, no attempt spent
    assert cli_json(capsys, "task", "get", str(tid))["attempts"] == 0
    dead = cli_json(capsys, "ai", "get", "dead")
    assert dead["pause_reason"].startswith("unhealthy:") and "cannot reach" in dead["pause_reason"]
    route = cli_json(capsys, "route", str(tid))
    reasons = {c["ai"]: c["reasons"] for c in route["candidates"]}
    assert any(r.startswith("unhealthy: ") for r in reasons["dead"])
    assert [(e["type"], e["data"]["ai"]) for e in receiver.got if e["type"] == "ai.unhealthy"] == [
        ("ai.unhealthy", "dead")
    ]


def test_a_probe_marks_an_ai_unhealthy_and_a_passing_probe_lifts_it(fake_provider, git_project, capsys):
    register(capsys, "dead", f"http://127.0.0.1:{closed_port()}")
    register(capsys, "live", fake_provider.url)
    cli_json(capsys, "ai", "pause", "live", "--for", "1h", "--reason", "unhealthy: it was down an hour ago")
    cli_json(capsys, "ai", "pause", "dead", "--for", "1h", "--reason", "rate_limit: 429")  # kept: not a health mark
    assert cli(capsys, "ai", "status", "-o", "json")[0] == 1  # dead fails its probe
    assert cli_json(capsys, "ai", "get", "live")["paused_until"] is None  # its probe passed: back in the rotation
    assert cli_json(capsys, "ai", "get", "dead")["pause_reason"] == "rate_limit: 429"
    cli_json(capsys, "ai", "resume", "dead")
    assert cli(capsys, "ai", "status", "dead", "-o", "json")[0] == 1
    assert cli_json(capsys, "ai", "get", "dead")["pause_reason"].startswith("unhealthy: ")
