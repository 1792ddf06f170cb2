"""The PreToolUse hook: tool calls as policy actions, and the client process asking the run's decision socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aictl.agents.connectors import pretooluse
from aictl.agents.connectors.hookactions import actions_for
from aictl.agents.connectors.hookserver import HookServer, judge
from tests.agents.canary import SECRET, Pinned, seed_workspace


@pytest.fixture
def ws(tmp_path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    seed_workspace(path)
    (path / "src" / "app.py").write_text("print('hi')\n")
    return path


@pytest.fixture
def pinned(tmp_path, ws):
    p = Pinned(tmp_path, ws)
    yield p
    p.close()


def asked(tool: str, tool_input, ws: Path) -> list[tuple[str, object]]:
    return [(a.action, next(iter(a.resource.values()), None)) for a in actions_for(tool, tool_input, ws)]


def test_claude_tools_become_path_network_and_tool_actions(ws):
    assert asked("Read", {"file_path": str(ws / "secrets" / "token.txt")}, ws) == [("read_path", "secrets/token.txt")]
    assert asked("Write", {"file_path": "src/new.py", "content": "x"}, ws) == [("write_path", "src/new.py")]
    assert asked("Edit", {"file_path": str(ws / "README.md")}, ws) == [("write_path", "README.md")]
    assert asked("NotebookEdit", {"notebook_path": "nb.ipynb"}, ws) == [("write_path", "nb.ipynb")]
    assert asked("Grep", {"pattern": "x", "path": str(ws / "secrets")}, ws) == [("read_path", "secrets")]
    assert asked("Glob", {"pattern": "**/*.py"}, ws) == [("read_path", ".")]
    fetch = actions_for("WebFetch", {"url": "http://Example.COM:8080/x"}, ws)
    assert [(a.action, a.resource) for a in fetch] == [("network", {"host": "example.com", "port": 8080})]
    assert asked("WebFetch", {"url": "https://pypi.org/simple"}, ws) == [("network", "pypi.org")]
    assert asked("TodoWrite", {"todos": []}, ws) == []
    assert asked("mcp__aictl__cancel_task", {}, ws) == [("use_tool", "mcp__aictl__cancel_task")]
    assert asked("Read", {"file_path": "/etc/passwd"}, ws)[0][1].startswith("..")  # outside: RunPolicy refuses it


def test_a_symlink_is_judged_by_what_it_points_at(ws):
    (ws / "src" / "innocent.txt").symlink_to(ws / "secrets" / "token.txt")
    assert asked("Read", {"file_path": str(ws / "src" / "innocent.txt")}, ws) == [("read_path", "secrets/token.txt")]


def test_a_command_line_names_what_it_reads_writes_and_deletes(ws):
    cases = {
        "cat secrets/token.txt > src/out.txt 2>/dev/null": [
            ("write_path", "src/out.txt"),
            ("read_path", "secrets/token.txt"),
        ],
        "rm -f ../../policy.yaml .ai/policy.yaml": [
            ("delete_path", "../../policy.yaml"),
            ("delete_path", ".ai/policy.yaml"),
        ],
        "mv secrets/token.txt src/t.txt": [("delete_path", "secrets/token.txt"), ("write_path", "src/t.txt")],
        "cp src/app.py README.copy": [("read_path", "src/app.py"), ("write_path", "README.copy")],
        "cat secr*/* | base64": [("read_path", "secrets/token.txt")],
        'FOO=1 sh -c "head -c 5 secrets/token.txt"': [("read_path", "secrets/token.txt")],
        "echo $(cat secrets/token.txt)": [("read_path", "secrets/token.txt")],
        "/usr/bin/env python3 src/app.py 2>&1": [("read_path", "src/app.py")],  # /usr/bin/env: no repo path
        "echo hi >> notes.md": [("write_path", "notes.md")],
        "ls": [],
    }
    for line, expected in cases.items():
        got = asked("Bash", {"command": line}, ws)
        assert got[0] == ("run_command", line) and got[1:] == expected, line


def test_codex_tools_shell_patch_and_mcp(ws):
    patch = (
        "*** Begin Patch\n*** Add File: src/new.py\n+x\n*** Update File: README.md\n@@\n-a\n+b\n"
        "*** Delete File: .ai/policy.yaml\n*** Update File: src/app.py\n*** Move to: docs/app.py\n*** End Patch\n"
    )
    assert asked("apply_patch", {"command": patch}, ws) == [
        ("write_path", "src/new.py"),
        ("write_path", "README.md"),
        ("delete_path", ".ai/policy.yaml"),
        ("write_path", "src/app.py"),
        ("write_path", "docs/app.py"),
    ]
    assert asked("Bash", {"command": "git status"}, ws) == [("run_command", "git status")]
    assert asked("exec_command", {"cmd": "cat secrets/token.txt"}, ws)[1] == ("read_path", "secrets/token.txt")


def test_judge_stops_at_the_first_refusal_and_records_each_question(pinned, ws):
    decision, reason = judge(pinned.run.decide, {"tool_name": "Bash", "tool_input": {"command": "cat src/app.py"}}, ws)
    assert decision == "allow" and reason == ""
    decision, reason = judge(
        pinned.run.decide, {"tool_name": "Bash", "tool_input": {"command": "cat secrets/token.txt"}}, ws
    )
    assert decision == "deny" and "no-secret-reads" in reason and "aictl decision" in reason
    assert [(d["action"], d["effect"]) for d in pinned.decisions()] == [
        ("run_command", "allow"),
        ("read_path", "allow"),  # each file a command names: a record of its own
        ("run_command", "deny"),  # RunPolicy's scan of the line refuses the secret; nothing more is asked
    ]
    for bad in (None, [], {"tool_input": {}}, {"tool_name": 7}):
        assert judge(pinned.run.decide, bad, ws)[0] == "deny"


def hook(path: str, payload: bytes) -> dict:
    """The real hook client, as Claude Code and Codex start it: a process with the call on stdin."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", pretooluse.__file__, path],
        input=payload,
        capture_output=True,
        timeout=30,
        env={},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def call(tool: str, tool_input: dict, ws: Path) -> bytes:
    return json.dumps(
        {"hook_event_name": "PreToolUse", "cwd": "/elsewhere", "tool_name": tool, "tool_input": tool_input}
    ).encode()


def test_the_client_prints_a_deny_with_the_rule_and_nothing_for_an_allow(pinned, ws):
    with HookServer(pinned.run.decide, ws) as server:
        denied = hook(server.path, call("Read", {"file_path": str(ws / "secrets" / "token.txt")}, ws))
        allowed = hook(server.path, call("Write", {"file_path": str(ws / "src" / "a.py"), "content": "x"}, ws))
        pushed = hook(server.path, call("Bash", {"command": "git push origin HEAD"}, ws))
        assert oct(os.stat(server.path).st_mode & 0o777) == "0o600"
    out = denied["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse" and out["permissionDecision"] == "deny"
    assert "no-secret-reads" in out["permissionDecisionReason"] and SECRET not in json.dumps(denied)
    assert allowed == {}  # no decision: the CLI's own permission rules still apply after ours
    assert "dangerous-commands" in pushed["hookSpecificOutput"]["permissionDecisionReason"]
    assert pinned.denied() == [("read_path", "secrets/token.txt"), ("run_command", "git push origin HEAD")]
    assert not os.path.exists(server.path)  # closed: socket and its directory gone


def test_the_client_fails_closed(pinned, ws, tmp_path):
    gone = hook(str(tmp_path / "no-such.sock"), call("Write", {"file_path": "src/a.py"}, ws))
    assert gone["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "could not be made" in gone["hookSpecificOutput"]["permissionDecisionReason"]

    # A server that answers nonsense, or hangs up without answering: denied as well.
    for answer in (b"not json", b'{"decision": "maybe", "reason": ""}', b""):
        path = str(tmp_path / f"s{len(answer)}.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)

        def serve(srv=srv, answer=answer):
            conn, _ = srv.accept()
            conn.recv(65536)
            conn.sendall(answer)
            conn.close()

        t = threading.Thread(target=serve)
        t.start()
        got = hook(path, call("Write", {"file_path": "src/a.py"}, ws))
        t.join(10)
        srv.close()
        assert got["hookSpecificOutput"]["permissionDecision"] == "deny", answer

    with HookServer(pinned.run.decide, ws) as server:
        assert hook(server.path, b"{not json")["hookSpecificOutput"]["permissionDecision"] == "deny"
        huge = b" " * (pretooluse.MAX_INPUT_BYTES + 1)
        assert "refused unchecked" in hook(server.path, huge)["hookSpecificOutput"]["permissionDecisionReason"]


def test_the_hand_written_json_is_json():
    for text in ("plain", 'q"uote\\back', "new\nline\ttab\x00\x1f\x7f", "ünïcødé ✓ path/é.txt", ""):
        assert json.loads(pretooluse._json_str(text)) == text
        out = json.loads(pretooluse.answer("deny", text))["hookSpecificOutput"]
        assert out == {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": text}
    assert pretooluse.answer("allow", "whatever") == "{}"


def test_concurrent_hook_calls_are_each_decided_and_recorded(pinned, ws):
    with HookServer(pinned.run.decide, ws) as server:
        procs = [
            subprocess.Popen(
                [sys.executable, "-I", "-S", pretooluse.__file__, server.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for _ in range(6)
        ]
        outs = [p.communicate(call("Read", {"file_path": "secrets/token.txt"}, ws), timeout=30)[0] for p in procs]
    assert all(json.loads(o)["hookSpecificOutput"]["permissionDecision"] == "deny" for o in outs)
    assert pinned.denied() == [("read_path", "secrets/token.txt")] * 6


def test_a_stalled_client_holds_the_line_only_until_its_deadline(pinned, ws, monkeypatch):
    from aictl.agents.connectors import hookserver

    monkeypatch.setattr(hookserver, "READ_TIMEOUT_S", 0.3)
    with HookServer(pinned.run.decide, ws) as server:
        staller = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staller.connect(server.path)
        staller.sendall(b'{"tool_name": ')  # and never more: a hostile process next to the agent
        try:
            out = hook(server.path, call("Read", {"file_path": "secrets/token.txt"}, ws))
        finally:
            staller.close()
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert pinned.denied() == [("read_path", "secrets/token.txt")]  # the stalled request decided nothing
