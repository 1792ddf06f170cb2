"""The claude-code connector running the real Claude Code CLI (pinned, from npm) against the fake provider."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path

import pytest

from aictl.agents.connectors.claude_code import (
    ClaudeCodeConnector,
    ClaudeStream,
    build_argv,
    permission_args,
    project_slug,
)
from aictl.agents.connectors.cli_common import find_binary
from tests.agents.cli_fixtures import PREFIX, make_ai, make_ctx, processes_in
from tests.fakeprovider import error, reply, tool

KEY_ENV = "FAKE_ANTHROPIC_KEY"
KEY = "sk-ant-api03-fakeKEYforTESTS0123456789abcdefghijklmnop"
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def run(claude_bin, fake_provider, ws, tmp_path, **kw):
    ai = make_ai("claude-code", claude_bin, fake_provider, model=MODEL, key_env=KEY_ENV, **kw.pop("config", {}))
    kw.setdefault("prompt", "create hello.txt containing hi")
    kw.setdefault("state_dir", tmp_path / "state")
    return ClaudeCodeConnector().run(make_ctx(ws, ai, **kw))


# -- argv and permissions (no CLI needed) ---------------------------------------------------------------------


def test_permissions_scope_allowed_tools_to_the_workspace_and_remove_the_rest():
    everything = permission_args(None, network=False)
    assert everything[:2] == ["--permission-mode", "acceptEdits"]
    assert "--dangerously-skip-permissions" not in everything
    allow = everything[everything.index("--allowedTools") + 1].split(",")
    assert set(allow) == {
        "Read(./**)",
        "Grep(./**)",
        "Glob(./**)",
        "Edit(./**)",
        "Write(./**)",
        "NotebookEdit(./**)",
        "Bash",
    }
    deny = everything[everything.index("--disallowedTools") + 1].split(",")
    assert {"WebFetch", "WebSearch", "EnterWorktree"} <= set(deny) and "Bash" not in deny

    read_only = permission_args(["read", "list"], network=True)
    deny = read_only[read_only.index("--disallowedTools") + 1].split(",")
    assert {"Edit", "Write", "NotebookEdit", "Bash"} <= set(deny)
    assert "Read" not in deny and "Glob" not in deny and "WebFetch" not in deny

    list_only = permission_args(["list"], network=False)
    assert list_only[list_only.index("--allowedTools") + 1] == "Glob(./**)"
    assert {"Read", "Grep"} <= set(list_only[list_only.index("--disallowedTools") + 1].split(","))
    with pytest.raises(Exception, match="unknown tool"):
        permission_args(["fly"], network=False)


def test_argv_ends_options_before_the_prompt(tmp_path):
    from aictl.domain.models import AIRecord

    ai = AIRecord(id="c", connector="claude-code", model="opus", config={"max_turns": 7, "args": ["--effort", "low"]})
    ctx = make_ctx(tmp_path, ai, state_dir=None, prompt="-rf is not a flag", system="be careful", resume="abc-123")
    argv = build_argv("claude", ctx)
    assert argv[:5] == ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert argv[-2:] == ["--", "-rf is not a flag"]
    pairs = dict(itertools.pairwise(argv))
    assert pairs["--model"] == "opus" and pairs["--max-turns"] == "7" and pairs["--resume"] == "abc-123"
    assert pairs["--append-system-prompt"] == "be careful" and pairs["--effort"] == "low"


def test_rate_limit_event_gives_the_reset_time():
    # The shape is the CLI's own schema (rate_limit_event, emitted for claude.ai subscription limits; an API key
    # never triggers it, so no fake-provider run can): a parser test with that line.
    parser = ClaudeStream()
    parser.feed(
        json.dumps(
            {
                "type": "rate_limit_event",
                "rate_limit_info": {"status": "rejected", "resetsAt": 1_900_000_000, "rateLimitType": "five_hour"},
                "uuid": "u",
                "session_id": "s",
            }
        )
    )
    parser.feed(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": 429,
                "num_turns": 1,
                "result": "Claude usage limit reached",
                "session_id": "s",
                "total_cost_usd": 0,
                "usage": {},
            }
        )
    )
    assert (parser.error_kind, parser.retry_at) == ("rate_limit", 1_900_000_000.0)


def test_binary_is_found_in_the_agent_clis_prefix(monkeypatch, tmp_path):
    fake = tmp_path / "prefix" / "node_modules" / ".bin" / "claude"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("AICTL_AGENT_CLIS", str(tmp_path / "prefix"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_binary(None, "claude") == str(fake)
    assert find_binary(str(tmp_path / "nope"), "claude") is None  # a configured path is not second-guessed


def test_missing_binary_or_key_is_a_clear_failure(fake_provider, ws, tmp_path, monkeypatch, claude_bin):
    monkeypatch.delenv(KEY_ENV, raising=False)
    res = run(claude_bin, fake_provider, ws, tmp_path)
    assert not res.ok and res.error_kind == "auth" and KEY_ENV in res.error and not res.transient
    monkeypatch.setenv(KEY_ENV, KEY)
    res = run(str(tmp_path / "no-such-claude"), fake_provider, ws, tmp_path)
    assert not res.ok and "cannot find its CLI" in res.error and "install-agent-clis" in res.error
    assert fake_provider.requests == []


# -- the real CLI ------------------------------------------------------------------------------------------------


def test_write_tool_creates_the_file_with_events_usage_and_transcript(claude_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(
        reply(
            "I'll create it.", [tool("Write", {"file_path": str(ws / "hello.txt"), "content": "hi\n"})], usage=(100, 20)
        ),
        reply("Created hello.txt.", usage=(50, 5)),
    )
    events: list[dict] = []
    res = run(claude_bin, fake_provider, ws, tmp_path, events=events, system="SYSTEM-MARKER: stay in the workspace")
    assert res.ok, res.error
    assert (ws / "hello.txt").read_text() == "hi\n"
    assert res.summary == "Created hello.txt." and res.exit_code == 0 and res.error_kind is None
    assert res.model == MODEL and res.session_id
    assert res.usage == {
        "input_tokens": 150,
        "output_tokens": 25,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "turns": 2,
    }
    assert res.cost_usd == pytest.approx((150 * 3 + 25 * 15) / 1e6)  # Claude Code's own price for sonnet 4.5
    types = [e["type"] for e in res.events]
    assert types[0] == "init" and types[-1] == "result" and events == res.events
    call = next(e for e in res.events if e["type"] == "tool_call")
    assert (call["name"], call["raw_name"], call["input"]["content"]) == ("write", "Write", "hi\n")
    assert next(e for e in res.events if e["type"] == "tool_result")["ok"] is True
    assert "→ write (Write)" in res.transcript and "assistant: Created hello.txt." in res.transcript
    assert "[usage] input 150, output 25" in res.transcript
    calls = fake_provider.calls("anthropic")
    assert len(calls) == 2 and all(r.path == "/v1/messages" for r in calls)
    assert {r.headers.get("x-api-key") for r in calls} == {KEY}  # the key reached the CLI through spec.env
    assert "SYSTEM-MARKER" in json.dumps(calls[0].body["system"])
    assert "WebFetch" not in calls[0].tools and "Write" in calls[0].tools  # network off: no web tools
    assert {r.protocol for r in fake_provider.requests} <= {"anthropic", "models"}  # nothing else was called
    assert KEY not in res.transcript + res.stdout + res.stderr
    assert (tmp_path / "state" / "claude-config" / "projects").is_dir()  # sessions kept for --resume


def test_edits_and_reads_outside_the_workspace_are_refused(claude_bin, fake_provider, ws, tmp_path, key):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s3cret\n")
    fake_provider.script(
        reply(
            "trying",
            [
                tool("Write", {"file_path": str(outside / "x.txt"), "content": "x"}),
                tool("Read", {"file_path": str(outside / "secret.txt")}),
                tool("Bash", {"command": "echo ran > ran.txt"}),
            ],
        ),
        reply("done"),
    )
    res = run(claude_bin, fake_provider, ws, tmp_path)
    assert res.ok, res.error
    results = [e for e in res.events if e["type"] == "tool_result"]
    assert [r["ok"] for r in results] == [False, False, True]
    assert not (outside / "x.txt").exists() and "s3cret" not in res.transcript
    assert (ws / "ran.txt").read_text() == "ran\n"  # run is allowed: Bash works in the workspace


def test_read_only_tools_take_write_and_bash_away(claude_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(
        reply(
            "trying",
            [
                tool("Write", {"file_path": "hello.txt", "content": "hi"}),
                tool("Bash", {"command": "echo hi > hello.txt"}),
            ],
        ),
        reply("could not"),
    )
    res = run(claude_bin, fake_provider, ws, tmp_path, allowed_tools=["read", "list"])
    assert res.ok, res.error
    offered = fake_provider.calls("anthropic")[0].tools
    assert {"Read", "Glob", "Grep"} <= set(offered) and not {"Write", "Edit", "Bash"} & set(offered)
    assert not (ws / "hello.txt").exists()
    assert [e["ok"] for e in res.events if e["type"] == "tool_result"] == [False, False]


@pytest.mark.parametrize(
    "status, kind, transient",
    [(401, "auth", False), (529, "overloaded", True), (500, "overloaded", True), (429, "rate_limit", True)],
)
def test_api_errors_are_classified(claude_bin, fake_provider, ws, tmp_path, key, status, kind, transient):
    fake_provider.script(error(status, "scripted failure"))
    res = run(claude_bin, fake_provider, ws, tmp_path)
    assert not res.ok and res.exit_code == 1
    assert (res.error_kind, res.transient) == (kind, transient), res.error
    assert "scripted failure" in res.error or str(status) in res.error
    assert res.retry_at is None  # with no retries the CLI reports no retry-after
    assert any(e["type"] == "error" and e["kind"] == kind for e in res.events)


def test_rate_limit_reset_comes_from_the_retry_after_the_cli_honoured(claude_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(error(429, "slow down", retry_after=1), error(429, "slow down", retry_after=1))
    before = time.time()
    res = run(claude_bin, fake_provider, ws, tmp_path, config={"max_retries": 1})
    assert (res.error_kind, res.transient) == ("rate_limit", True)
    assert len(fake_provider.calls("anthropic")) == 2  # CLAUDE_CODE_MAX_RETRIES=1 reached the CLI
    assert res.retry_at is not None and before + 1 <= res.retry_at <= time.time() + 1
    assert "[retry] attempt 1/1 after HTTP 429" in res.transcript


def test_resume_continues_the_session_from_another_workspace(claude_bin, fake_provider, tmp_path, key):
    # A follow-up run gets a new worktree (new lease epoch, new path); Claude Code files sessions per directory.
    first, second = tmp_path / "task-1-e1", tmp_path / "task-1-e2"
    first.mkdir()
    second.mkdir()
    fake_provider.script(reply("Noted: the magic word is PLUGH."))
    res1 = run(claude_bin, fake_provider, first, tmp_path, prompt="remember the magic word PLUGH")
    assert res1.ok and res1.session_id
    fake_provider.script(reply("The magic word was PLUGH."))
    res2 = run(claude_bin, fake_provider, second, tmp_path, prompt="what was the magic word?", resume=res1.session_id)
    assert res2.ok, res2.error
    assert res2.session_id == res1.session_id
    history = json.dumps(fake_provider.calls("anthropic")[-1].body["messages"])
    assert "remember the magic word PLUGH" in history and "Noted: the magic word is PLUGH." in history
    assert (tmp_path / "state" / "claude-config" / "projects" / project_slug(os.path.realpath(second))).is_dir()


def test_timeout_kills_the_cli(claude_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(reply("x" * 200, delay_s=2.0))  # ~10 streamed events, 2 s apart
    res = run(claude_bin, fake_provider, ws, tmp_path, timeout_s=3)
    assert res.timed_out and not res.ok
    assert (res.error_kind, res.transient) == ("timeout", True)
    assert "timed out after 3s" in res.error
    assert processes_in(ws) == []


def test_cancel_stops_the_cli(claude_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(reply("y" * 200, delay_s=2.0))
    cancel = threading.Event()
    events: list[dict] = []

    def on_event(event):
        events.append(event)
        if event["type"] == "init":
            cancel.set()

    ai = make_ai("claude-code", claude_bin, fake_provider, model=MODEL, key_env=KEY_ENV)
    ctx = make_ctx(ws, ai, state_dir=tmp_path / "state", prompt="slow", cancel=cancel)
    ctx.on_event = on_event
    res = ClaudeCodeConnector().run(ctx)
    assert res.cancelled and not res.ok and res.error == "cancelled" and not res.transient
    assert events and events[0]["type"] == "init"
    assert processes_in(ws) == []


def test_state_dir_is_optional(claude_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(reply("hello"))
    res = run(claude_bin, fake_provider, ws, tmp_path, state_dir=None)
    assert res.ok and res.summary == "hello"


def test_prefix_is_where_the_fixture_found_the_cli(claude_bin):
    assert Path(claude_bin).parent == PREFIX / "node_modules" / ".bin"


# -- the whole CLI: aictl ai register + aictl task execute --ai -----------------------------------------------------


def test_task_execute_with_claude_code_lands_the_file_diff_transcript_and_usage(
    claude_bin, fake_provider, git_project, capsys, key
):
    from aictl.config import load_settings
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute
    from tests.execution.conftest import git

    cli_json(
        capsys,
        "ai",
        "register",
        "claude-1",
        "--connector",
        "claude-code",
        "--model",
        MODEL,
        "--base-url",
        fake_provider.url,
        "--binary",
        claude_bin,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=0",
    )
    tid = cli_json(capsys, "task", "create", "create hello.txt containing hi", "--lock", "hello.txt")["id"]
    workspace = Path(load_settings(git_project).home) / "workspaces" / f"task-{tid}-e1"
    fake_provider.script(
        reply(
            "I'll create it.",
            [tool("Write", {"file_path": str(workspace / "hello.txt"), "content": "hi\n"})],
            usage=(100, 20),
        ),
        reply("Created hello.txt.", usage=(50, 5)),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "claude-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    assert rep["changed_paths"] == ["hello.txt"] and rep["ai"] == "claude-1"
    assert git(git_project, "show", f"aictl/task-{tid}:hello.txt") == "hi\n"
    found = evidence_of(capsys, tid)
    assert {"diff", "transcript", "usage", "run", "log"} <= set(found)
    assert "+hi" in found["diff"] and "hello.txt" in found["diff"]
    assert "→ write (Write)" in found["transcript"] and "assistant: Created hello.txt." in found["transcript"]
    usage = json.loads(found["usage"])
    assert usage["tokens"] == {"input": 150, "output": 25, "cache_read": 0, "total": 175}
    assert usage["model"] == MODEL and usage["turns"] == 2 and usage["cost_usd"] > 0
    run_rec = json.loads(found["run"])
    assert run_rec["ok"] and run_rec["session_id"] and run_rec["connector"] == "claude-code"
    first = fake_provider.calls("anthropic")[0]
    assert "create hello.txt containing hi" in json.dumps(first.body["messages"])
    assert f"aictl task {tid}" in json.dumps(first.body["system"])  # the executor's system text was appended
    assert KEY not in "".join(found.values())


def test_task_execute_rate_limited_claude_code_pauses_the_ai_until_the_reset(
    claude_bin, fake_provider, git_project, capsys, key
):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute

    cli_json(
        capsys,
        "ai",
        "register",
        "claude-1",
        "--connector",
        "claude-code",
        "--model",
        MODEL,
        "--base-url",
        fake_provider.url,
        "--binary",
        claude_bin,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=1",
    )
    tid = cli_json(capsys, "task", "create", "anything", "--lock", "x.txt")["id"]
    fake_provider.script(error(429, "slow down", retry_after=3), error(429, "slow down", retry_after=3))
    before = time.time()
    _code, rep, err = execute(capsys, str(tid), "--ai", "claude-1", "--timeout", "120")
    assert rep["outcome"] == "retrying" and "rate-limited" in rep["reason"], (rep, err)
    run_rec = json.loads(evidence_of(capsys, tid)["run"])
    assert run_rec["error_kind"] == "rate_limit" and run_rec["retry_at"] >= before + 3
    paused = cli_json(capsys, "ai", "get", "claude-1")["paused_until"]
    assert paused == pytest.approx(run_rec["retry_at"])


def test_follow_up_message_resumes_the_session_in_the_new_worktree(claude_bin, fake_provider, git_project, capsys, key):
    from tests.agents.cli_fixtures import cli_json, execute
    from tests.execution.conftest import git

    cli_json(
        capsys,
        "ai",
        "register",
        "claude-1",
        "--connector",
        "claude-code",
        "--model",
        MODEL,
        "--base-url",
        fake_provider.url,
        "--binary",
        claude_bin,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=0",
    )
    tid = cli_json(
        capsys,
        "task",
        "create",
        "create hello.txt containing hi",
        "--lock",
        "hello.txt",
        "--verify",
        "grep -qx hi hello.txt",
    )["id"]
    fake_provider.script(
        reply("writing", [tool("Write", {"file_path": "hello.txt", "content": "ho\n"})]), reply("done")
    )
    code, rep, _ = execute(capsys, str(tid), "--ai", "claude-1")
    assert rep["outcome"] == "failed" and "verification failed" in rep["reason"]
    cli_json(capsys, "task", "retry", str(tid))
    fake_provider.script(
        reply("fixing", [tool("Write", {"file_path": "hello.txt", "content": "hi\n"})]), reply("fixed")
    )
    code, rep, err = execute(capsys, str(tid), "--message", "it must say hi, not ho")
    assert code == 0 and rep["outcome"] == "done" and rep["lease_epoch"] == 2, (rep.get("reason"), err)
    history = json.dumps(fake_provider.calls("anthropic")[-1].body["messages"])
    assert "create hello.txt containing hi" in history and "it must say hi, not ho" in history
    assert git(git_project, "show", f"aictl/task-{tid}:hello.txt") == "hi\n"
