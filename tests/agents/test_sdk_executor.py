"""The API connectors through the whole CLI: `aictl ai register` + `aictl task execute --ai`, a real git project
and worktree, the real SDKs against the fake provider. What lands: the file on the task's branch, the diff,
the transcript, usage with cost, the run record; and a long rate limit pauses the AI until the provider's time.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.agents.sdk_variants import KEYS, VARIANTS, Variant
from tests.fakeprovider import error, reply, tool

# 2200 input and 25 output tokens, at the list prices of the models the variants use.
COST = {
    "anthropic": 2200 * 1.0e-6 + 25 * 5.0e-6,
    "openai-chat": 2200 * 0.4e-6 + 25 * 1.6e-6,
    "openai-responses": 2200 * 0.4e-6 + 25 * 1.6e-6,
    "ollama": 0.0,
}


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


def register(capsys, fp, v: Variant) -> None:
    from tests.agents.cli_fixtures import cli_json

    args = [
        "ai",
        "register",
        "api-1",
        "--connector",
        v.connector,
        "--model",
        v.model,
        "--base-url",
        fp.url,
        "--api-key-env",
        v.key_env,
        "--config",
        "retry_backoff_s=0.01",
    ]
    for key, value in v.config.items():
        if key != "api_key_env":
            args += ["--config", f"{key}={value}"]
    cli_json(capsys, *args)


@pytest.mark.parametrize("v", VARIANTS)
def test_task_execute_lands_the_file_diff_transcript_and_usage(fake_provider, git_project, capsys, v):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute
    from tests.execution.conftest import git

    register(capsys, fake_provider, v)
    tid = cli_json(capsys, "task", "create", "create hello.txt containing hi", "--lock", "hello.txt")["id"]
    fake_provider.script(
        reply("I'll add it.", [tool("write_file", {"path": "hello.txt", "content": "hi\n"})], usage=(1000, 20)),
        reply("Added hello.txt.", usage=(1200, 5)),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    assert rep["changed_paths"] == ["hello.txt"] and rep["ai"] == "api-1" and rep["connector"] == v.connector
    assert git(git_project, "show", f"aictl/task-{tid}:hello.txt") == "hi\n"
    found = evidence_of(capsys, tid)
    assert {"diff", "transcript", "usage", "run"} <= set(found)
    assert "+hi" in found["diff"]
    assert "→ write (write_file)" in found["transcript"] and "assistant: Added hello.txt." in found["transcript"]
    usage = json.loads(found["usage"])
    assert usage["tokens"] == {"input": 2200, "output": 25, "cache_read": 0, "total": 2225}
    assert usage["cost_usd"] == pytest.approx(COST[v.protocol]) and usage["turns"] == 2
    assert usage["model"] == v.model and usage["ai"] == "api-1"
    run = json.loads(found["run"])
    assert run["ok"] and run["connector"] == v.connector
    calls = fake_provider.calls(v.protocol)
    assert len(calls) == 2 and calls[0].tools[:4] == ["read_file", "write_file", "list_files", "run_command"]
    assert {"mcp__aictl__report_progress", "mcp__aictl__create_subtasks"} <= set(calls[0].tools)  # the task server
    assert "create hello.txt containing hi" in json.dumps(calls[0].body)  # the task became the prompt
    assert KEYS[v.key_env] not in "".join(found.values())


@pytest.mark.parametrize("v", VARIANTS)
def test_a_long_rate_limit_pauses_the_ai_until_the_provider_says(fake_provider, git_project, capsys, v):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute

    register(capsys, fake_provider, v)
    tid = cli_json(capsys, "task", "create", "anything", "--lock", "x.txt")["id"]
    fake_provider.script(error(429, retry_after=3600))
    _code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert rep["outcome"] == "retrying", (rep, err)  # a pinned AI: the attempt failed transient, the task waits
    assert len(fake_provider.calls()) == 1
    assert json.loads(evidence_of(capsys, tid)["run"])["error_kind"] == "rate_limit"
    paused = cli_json(capsys, "ai", "get", "api-1")["paused_until"]
    assert time.time() + 3500 < paused < time.time() + 3700
