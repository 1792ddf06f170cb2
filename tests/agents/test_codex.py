"""The codex connector running the real Codex CLI (pinned, from npm) against the fake provider."""

from __future__ import annotations

import json
import threading
import tomllib

import pytest

from aictl.agents.connectors.codex import CodexConnector, build_argv, config_toml, sandbox_mode
from tests.agents.cli_fixtures import make_ai, make_ctx, processes_in
from tests.fakeprovider import error, reply, tool

KEY_ENV = "FAKE_OPENAI_KEY"
KEY = "sk-proj-fakeKEYforTESTS0123456789abcdefghijklmnopqrstuv"
MODEL = "gpt-5.5"  # a slug Codex knows: it offers apply_patch as a freeform tool
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def run(codex_bin, fake_provider, ws, tmp_path, **kw):
    ai = make_ai("codex", codex_bin, fake_provider, model=MODEL, key_env=KEY_ENV, **kw.pop("config", {}))
    kw.setdefault("prompt", "create hello.txt containing hi")
    kw.setdefault("state_dir", tmp_path / "state")
    return CodexConnector().run(make_ctx(ws, ai, **kw))


# -- argv and config (no CLI needed) -----------------------------------------------------------------------------


def test_sandbox_mode_follows_the_allowed_tools():
    assert sandbox_mode(None) == "workspace-write"
    assert sandbox_mode(["read", "list", "run"]) == "read-only"
    assert sandbox_mode(["write"]) == "workspace-write"
    assert sandbox_mode(None, "danger-full-access") == "danger-full-access"
    assert sandbox_mode(["read"], "danger-full-access") == "read-only"  # config never loosens the policy
    with pytest.raises(Exception, match="codex_sandbox"):
        sandbox_mode(None, "yolo")
    with pytest.raises(Exception, match="unknown tool"):
        sandbox_mode(["fly"])


def test_config_toml_names_the_provider_key_variable_and_instructions(tmp_path):
    from aictl.domain.models import AIRecord

    ai = AIRecord(
        id="x", connector="codex", model="gpt-5.5", config={"base_url": "http://127.0.0.1:9/v1/", "max_retries": 2}
    )
    ctx = make_ctx(
        tmp_path,
        ai,
        state_dir=None,
        prompt="p",
        system='say "hi"\n\tthen \x7f stop — ok',
        allowed_tools=["read", "write"],
    )
    config = tomllib.loads(config_toml(ctx, "MY_KEY"))
    assert config["model_provider"] == "aictl" and config["approval_policy"] == "never"
    assert config["model_providers"]["aictl"] == {
        "name": "aictl",
        "base_url": "http://127.0.0.1:9/v1",
        "env_key": "MY_KEY",
        "wire_api": "responses",
        "request_max_retries": 2,
        "stream_max_retries": 2,
    }
    assert config["developer_instructions"] == 'say "hi"\n\tthen \x7f stop — ok'
    # run not allowed: no shell tool; no run policy: no hooks at all
    assert config["features"] == {"plugins": False, "hooks": False, "shell_tool": False}
    assert config["web_search"] == "disabled"
    assert config["sandbox_workspace_write"] == {"network_access": False, "exclude_slash_tmp": True}
    argv = build_argv("codex", ctx)
    assert argv[:4] == ["codex", "exec", "--json", "--skip-git-repo-check"]
    assert argv[argv.index("--sandbox") + 1] == "workspace-write" and argv[-2:] == ["--", "p"]
    assert "--dangerously-bypass-hook-trust" not in argv and "hooks" not in config

    hooked = tomllib.loads(config_toml(ctx, "MY_KEY", hook_command="python3 -I -S 'hook file.py' /tmp/s"))
    assert hooked["features"]["hooks"] is True
    command = "python3 -I -S 'hook file.py' /tmp/s"
    assert hooked["hooks"]["PreToolUse"] == [
        {"matcher": "*", "hooks": [{"type": "command", "command": command, "timeout": 60}]}
    ]
    assert "--dangerously-bypass-hook-trust" in build_argv("codex", ctx, hooks=True)


def test_cached_tokens_are_counted_apart_from_input():
    # The fake provider reports no cached tokens, so this checks the parser on the CLI's own turn.completed shape.
    from aictl.agents.connectors.codex import CodexStream
    from aictl.domain.models import AIRecord

    ai = AIRecord(
        id="c", connector="codex", model="gpt-5.5", config={"prices": {"input": 2.0, "output": 8.0, "cache_read": 0.5}}
    )
    parser = CodexStream(ai=ai)
    parser.feed(
        json.dumps(
            {
                "type": "turn.completed",
                "usage": {
                    "input_tokens": 14000,
                    "cached_input_tokens": 12000,
                    "cache_write_input_tokens": 0,
                    "output_tokens": 30,
                    "reasoning_output_tokens": 10,
                },
            }
        )
    )
    assert parser.usage == {"input_tokens": 2000, "output_tokens": 30, "cache_read_tokens": 12000}
    assert parser.cost_usd == pytest.approx((2000 * 2 + 30 * 8 + 12000 * 0.5) / 1e6)
    parser = CodexStream(ai=ai.model_copy(update={"model": "gpt-5", "config": {}}))  # the OpenAI table prices gpt-5
    parser.feed(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 1_000_000, "output_tokens": 0}}))
    assert parser.cost_usd == pytest.approx(1.25)


@pytest.mark.parametrize(
    "message, kind",
    [
        (
            "unexpected status 401 Unauthorized: boom, url: http://127.0.0.1:42957/v1/responses, request id: req_1",
            "auth",
        ),
        ("exceeded retry limit, last status: 429 Too Many Requests, request id: req_4290", "rate_limit"),
        ("unexpected status 529 <unknown status code>: boom, url: http://127.0.0.1:4291/v1/responses", "overloaded"),
        ("We’re currently experiencing high demand, which may cause temporary errors.", "overloaded"),
        ("API Error: Request rejected (429) · slow down", "rate_limit"),
        ("stream disconnected before completion: http://127.0.0.1:40429/v1", "other"),
    ],
)
def test_error_messages_are_classified_by_their_status_not_by_stray_digits(message, kind):
    # Messages as the CLIs print them; a port number once made a 401 look like a 429.
    from aictl.agents.connectors.cli_common import kind_from_text

    assert kind_from_text(message) == kind


# -- the real CLI ------------------------------------------------------------------------------------------------


def test_apply_patch_creates_the_file_with_events_usage_and_cost(codex_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(
        reply("I'll add it.", [tool("apply_patch", PATCH)], usage=(1000, 20)),
        reply("Added hello.txt.", usage=(1200, 5)),
    )
    events: list[dict] = []
    output: list[tuple[str, str]] = []
    res = run(
        codex_bin,
        fake_provider,
        ws,
        tmp_path,
        events=events,
        system="SYSTEM-MARKER: stay in the workspace",
        config={"prices": {"input": 2.0, "output": 8.0}},
        on_output=lambda *line: output.append(line),
    )
    assert res.ok, res.error
    # JSON events go to on_event only; what else the CLI prints (its stderr log) is passed on as output
    assert ("stderr", "Reading additional input from stdin...") in output
    assert all(stream == "stderr" for stream, _ in output)
    assert (ws / "hello.txt").read_text() == "hi\n"
    assert res.summary == "Added hello.txt." and res.exit_code == 0 and res.session_id and res.model == MODEL
    assert res.usage == {"input_tokens": 2200, "output_tokens": 25, "cache_read_tokens": 0, "turns": 1}
    assert res.cost_usd == pytest.approx((2200 * 2 + 25 * 8) / 1e6)
    types = [e["type"] for e in res.events]
    assert types[0] == "init" and types[-1] == "result" and events == res.events
    call = next(e for e in res.events if e["type"] == "tool_call")
    assert (call["name"], call["raw_name"]) == ("write", "file_change")
    assert call["input"]["changes"][0]["path"].endswith("hello.txt")
    assert next(e for e in res.events if e["type"] == "tool_result")["ok"] is True
    assert "→ write (file_change)" in res.transcript and "assistant: Added hello.txt." in res.transcript
    calls = fake_provider.calls()
    assert len(calls) == 2 and {r.path for r in calls} == {"/v1/responses"}
    assert {r.headers.get("authorization") for r in calls} == {f"Bearer {KEY}"}
    assert "apply_patch" in calls[0].tools and "web_search" not in calls[0].tools
    assert "SYSTEM-MARKER" in json.dumps(calls[0].body["input"])  # developer_instructions reached the model
    assert {r.protocol for r in fake_provider.requests} <= {"openai-responses", "models"}
    assert KEY not in res.transcript + res.stdout + res.stderr


def test_shell_command_runs_in_the_workspace(codex_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(
        reply("", [tool("exec_command", {"cmd": "echo hi > hello.txt; cat README.md"})]), reply("done")
    )
    res = run(codex_bin, fake_provider, ws, tmp_path)
    assert res.ok, res.error
    assert (ws / "hello.txt").read_text() == "hi\n"
    call = next(e for e in res.events if e["type"] == "tool_call")
    assert (call["name"], call["raw_name"]) == ("run", "command_execution")
    result = next(e for e in res.events if e["type"] == "tool_result")
    assert result["ok"] and result["exit_code"] == 0 and "readme" in result["output"]


def test_without_write_codex_sandbox_is_read_only(codex_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(
        reply("", [tool("apply_patch", PATCH)]),
        reply("", [tool("exec_command", {"cmd": "echo hi > hello.txt"})]),
        reply("could not"),
    )
    res = run(codex_bin, fake_provider, ws, tmp_path, allowed_tools=["read", "list", "run"])
    assert res.ok, res.error
    assert not (ws / "hello.txt").exists()
    # Codex's own sandbox refused both; it tells the model, but its JSON stream shows neither (a quirk of 0.169):
    told = json.dumps(fake_provider.calls()[-1].body["input"])
    assert "patch rejected: writing is blocked by read-only sandbox" in told and "Read-only file system" in told
    assert "[refused] patch rejected" in res.transcript  # from Codex's log on stderr


def test_without_run_there_is_no_shell_tool(codex_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(reply("nothing to do"))
    res = run(codex_bin, fake_provider, ws, tmp_path, allowed_tools=["read", "write"])
    assert res.ok, res.error
    offered = fake_provider.calls()[0].tools
    assert "apply_patch" in offered and "exec_command" not in offered


@pytest.mark.parametrize(
    "status, kind, transient",
    [(401, "auth", False), (529, "overloaded", True), (500, "overloaded", True), (429, "rate_limit", True)],
)
def test_api_errors_are_classified(codex_bin, fake_provider, ws, tmp_path, key, status, kind, transient):
    fake_provider.script(error(status, "scripted failure", retry_after=1))
    res = run(codex_bin, fake_provider, ws, tmp_path)
    assert not res.ok and res.exit_code == 1
    assert (res.error_kind, res.transient) == (kind, transient), res.error
    assert res.retry_at is None  # Codex does not pass a retry-after on to its events
    assert any(e["type"] == "error" and e["kind"] == kind for e in res.events)
    assert len(fake_provider.calls()) == 1  # max_retries 0 reached Codex's provider config


def test_resume_continues_the_thread_from_another_workspace(codex_bin, fake_provider, tmp_path, key):
    first, second = tmp_path / "task-1-e1", tmp_path / "task-1-e2"
    first.mkdir()
    second.mkdir()
    fake_provider.script(reply("Noted: the magic word is XYZZY."))
    res1 = run(codex_bin, fake_provider, first, tmp_path, prompt="remember the magic word XYZZY")
    assert res1.ok and res1.session_id
    fake_provider.script(reply("It was XYZZY."))
    res2 = run(codex_bin, fake_provider, second, tmp_path, prompt="what was the magic word?", resume=res1.session_id)
    assert res2.ok, res2.error
    assert res2.session_id == res1.session_id
    history = json.dumps(fake_provider.calls()[-1].body["input"])
    assert "remember the magic word XYZZY" in history and "Noted: the magic word is XYZZY." in history


def test_timeout_kills_the_cli(codex_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(reply("x" * 200, delay_s=2.0))
    res = run(codex_bin, fake_provider, ws, tmp_path, timeout_s=3)
    assert res.timed_out and not res.ok
    assert (res.error_kind, res.transient) == ("timeout", True)
    assert processes_in(ws) == []


def test_cancel_stops_the_cli(codex_bin, fake_provider, ws, tmp_path, key):
    fake_provider.script(reply("y" * 200, delay_s=2.0))
    cancel = threading.Event()
    ai = make_ai("codex", codex_bin, fake_provider, model=MODEL, key_env=KEY_ENV)
    ctx = make_ctx(ws, ai, state_dir=tmp_path / "state", prompt="slow", cancel=cancel)
    ctx.on_event = lambda event: cancel.set() if event["type"] == "init" else None
    res = CodexConnector().run(ctx)
    assert res.cancelled and not res.ok and res.error == "cancelled"
    assert processes_in(ws) == []


def test_missing_key_is_an_auth_failure(codex_bin, fake_provider, ws, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    res = run(codex_bin, fake_provider, ws, tmp_path)
    assert not res.ok and res.error_kind == "auth" and KEY_ENV in res.error and not res.transient
    assert fake_provider.requests == []


# -- the whole CLI: aictl ai register + aictl task execute --ai -----------------------------------------------------


def test_task_execute_with_codex_lands_the_file_diff_transcript_and_usage(
    codex_bin, fake_provider, git_project, capsys, key
):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute
    from tests.execution.conftest import git

    cli_json(
        capsys,
        "ai",
        "register",
        "codex-1",
        "--connector",
        "codex",
        "--model",
        MODEL,
        "--base-url",
        fake_provider.url,
        "--binary",
        codex_bin,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=0",
        "--config",
        'prices={"input": 2, "output": 8}',
    )
    tid = cli_json(capsys, "task", "create", "create hello.txt containing hi", "--lock", "hello.txt")["id"]
    fake_provider.script(
        reply("I'll add it.", [tool("apply_patch", PATCH)], usage=(1000, 20)),
        reply("Added hello.txt.", usage=(1200, 5)),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "codex-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    assert rep["changed_paths"] == ["hello.txt"] and rep["ai"] == "codex-1"
    assert git(git_project, "show", f"aictl/task-{tid}:hello.txt") == "hi\n"
    found = evidence_of(capsys, tid)
    assert {"diff", "transcript", "usage", "run"} <= set(found)
    assert "+hi" in found["diff"] and "→ write (file_change)" in found["transcript"]
    usage = json.loads(found["usage"])
    assert usage["tokens"] == {"input": 2200, "output": 25, "cache_read": 0, "total": 2225}
    assert usage["cost_usd"] == pytest.approx((2200 * 2 + 25 * 8) / 1e6) and usage["model"] == MODEL
    assert json.loads(found["run"])["session_id"]
    assert f"aictl task {tid}" in json.dumps(fake_provider.calls()[0].body["input"])  # developer_instructions
    assert KEY not in "".join(found.values())


def test_task_execute_codex_auth_failure_fails_the_task_without_retry(
    codex_bin, fake_provider, git_project, capsys, key
):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute

    cli_json(
        capsys,
        "ai",
        "register",
        "codex-1",
        "--connector",
        "codex",
        "--model",
        MODEL,
        "--base-url",
        fake_provider.url,
        "--binary",
        codex_bin,
        "--api-key-env",
        KEY_ENV,
        "--config",
        "max_retries=0",
    )
    tid = cli_json(capsys, "task", "create", "anything", "--lock", "x.txt")["id"]
    fake_provider.script(error(401, "bad key"))
    code, rep, err = execute(capsys, str(tid), "--ai", "codex-1")
    assert code == 1 and rep["outcome"] == "failed" and rep["task"]["status"] == "failed", (rep, err)
    assert "401" in rep["reason"]
    assert json.loads(evidence_of(capsys, tid)["run"])["error_kind"] == "auth"
    assert cli_json(capsys, "ai", "get", "codex-1")["paused_until"] is None  # auth is not a rate limit
