"""The openai connector against a real OpenAI-compatible server: llama.cpp (llama-cpp-python 0.3.36 built from
PyPI, `--chat_format chatml-function-calling`) serving Gemma 3 270M from PyPI, on loopback (llama_fixtures.py).

Registered as a user would (`aictl ai register … --connector openai --base-url http://127.0.0.1:PORT/v1`):
health and model listing, a run with real usage, a forced tool call through the tool loop and the executor
landing in the task's branch, a `length` finish that fails the task, and the server killed mid-run.
A 270M model is weak: tool calls are forced with `tool_choice`, answers are kept short with `max_tokens`,
and nothing asserts what the model chose to say.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from aictl.agents.connectors import openai_compat
from aictl.agents.connectors.base import RunContext
from aictl.agents.connectors.openai_api import OpenAIConnector
from aictl.domain.models import AIRecord
from aictl.sandbox import SandboxSpec, get_sandbox
from tests.agents.llama_fixtures import MODEL

KEY_ENV = "LLAMA_TEST_KEY"  # the server takes no key; the variable must be set all the same


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "no-key-needed")
    openai_compat.forget_detected()


def run(server, workdir: Path, prompt: str, *, tools: list[str] | None = None, **config):
    ai = AIRecord(
        id="llama",
        connector="openai",
        model=MODEL,
        config={"base_url": server.url, "api_key_env": KEY_ENV, "temperature": 0, **config},
    )
    ctx = RunContext(
        task=None,
        workdir=workdir,
        sandbox=get_sandbox("local"),
        spec=SandboxSpec(timeout_s=300),
        ai=ai,
        prompt=prompt,
        allowed_tools=tools,
    )
    return OpenAIConnector().run(ctx)


def register(capsys, server, *config: str) -> None:
    from tests.agents.cli_fixtures import cli_json

    args = ["ai", "register", "llama", "--connector", "openai", "--model", MODEL, "--base-url", server.url]
    args += ["--api-key-env", KEY_ENV, "--config", "temperature=0"]
    for c in config:
        args += ["--config", c]
    cli_json(capsys, *args)


def test_health_model_listing_and_route(llama_server, git_project, capsys):
    from tests.agents.cli_fixtures import cli_json

    register(capsys, llama_server, "max_tokens=200")  # a max_tokens-style key is a setting, not a secret
    (status,) = cli_json(capsys, "ai", "status", "llama")
    assert status["health"]["ok"], status
    assert status["health"]["server"] == "llama.cpp" and status["health"]["models"] == [MODEL]
    tid = cli_json(capsys, "task", "create", "anything")["id"]
    route = cli_json(capsys, "route", str(tid))
    assert route["chosen"] == "llama" and route["candidates"][0]["eligible"], route


def test_a_run_records_the_servers_real_usage(llama_server, tmp_path):
    prices = {"input": 1.0, "output": 2.0}
    result = run(llama_server, tmp_path, "Say hello.", tools=[], max_tokens=64, prices=prices, truncated="continue")
    # unstreamed (the llama.cpp profile): the server's own counts
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
    assert "estimated" not in result.usage
    assert result.cost_usd == pytest.approx(
        (result.usage["input_tokens"] * 1.0 + result.usage["output_tokens"] * 2.0) / 1e6
    )
    assert "== server llama.cpp (detected)" in result.transcript
    # streamed, it sends no usage at all: counted from the text, marked as such, never zero
    streamed = run(llama_server, tmp_path, "Say hello.", tools=[], max_tokens=64, stream=True, truncated="continue")
    assert streamed.usage["estimated"] is True and streamed.usage["input_tokens"] > 0
    assert streamed.usage["output_tokens"] > 0


def test_a_forced_tool_call_lands_in_the_tasks_branch(llama_server, git_project, capsys):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute
    from tests.execution.conftest import git

    register(capsys, llama_server, 'tool_choice=["write_file", "none"]', "max_tokens=120")
    tid = cli_json(capsys, "task", "create", "Create the file hello.txt containing the word hi.", "--lock", "**")["id"]
    code, rep, err = execute(capsys, str(tid), "--ai", "llama")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    found = evidence_of(capsys, tid)
    wrote = [line for line in found["transcript"].splitlines() if line.startswith("→ write (write_file)")]
    assert len(wrote) == 1, found["transcript"]
    args = json.loads(wrote[0].split(" ", 3)[3])
    assert rep["changed_paths"] == [args["path"]]
    assert git(git_project, "show", f"aictl/task-{tid}:{args['path']}") == args["content"]
    usage = json.loads(found["usage"])
    assert usage["turns"] == 2 and usage["tokens"]["input"] > 0 and usage["tokens"]["output"] > 0


def test_a_length_finish_fails_the_task_not_done(llama_server, git_project, capsys):
    from tests.agents.cli_fixtures import cli_json, execute

    # tool_choice none: with tools and "auto", llama.cpp ignores max_tokens (its function-calling path drops it)
    register(capsys, llama_server, "max_tokens=8", "tool_choice=none")
    tid = cli_json(capsys, "task", "create", "Write a long story about the sea.", "--lock", "**")["id"]
    _code, rep, err = execute(capsys, str(tid), "--ai", "llama")
    assert rep["outcome"] in ("failed", "retrying"), (rep, err)
    assert "cut off at its token limit" in rep["reason"]
    assert cli_json(capsys, "task", "get", str(tid))["status"] != "done"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_server_killed_mid_run(own_llama_server, tmp_path):
    """Killed while it works on the request (a long prompt takes it seconds on one thread): the run ends at once,
    transient and `unreachable`, so the executor marks the AI unhealthy and routes the task elsewhere."""
    server = own_llama_server
    results = []
    prompt = "The sea is wide and deep. " * 80 + "Summarize the text above."
    runner = threading.Thread(
        target=lambda: results.append(run(server, tmp_path, prompt, tools=[], max_tokens=200, stream=True))
    )
    start = _cpu_s(server.proc.pid)
    runner.start()
    deadline = time.monotonic() + 120
    while _cpu_s(server.proc.pid) - start < 1.0 and time.monotonic() < deadline:  # it is busy with the request
        time.sleep(0.05)
    assert runner.is_alive(), results  # still waiting for its answer
    server.stop()  # SIGKILL
    runner.join(timeout=60)
    (result,) = results
    assert not result.ok and result.error_kind == "unreachable" and result.transient, result.error
    assert "cannot reach" in result.error and result.usage["requests"] >= 1
    assert result.events[-1]["type"] == "result" and not result.events[-1]["ok"]
