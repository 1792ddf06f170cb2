"""The API connectors against servers that are not OpenAI: the fake provider with the quirks of real
OpenAI-compatible servers (llama.cpp's set is LLAMA_CPP) and of Ollama, through the real SDKs.

Covers the openai connector's per-AI settings and server detection, usage when the server reports none,
the tolerant tool-call accumulator end to end, truncated turns, a stopped stream's partial text, and a 404
from a missing endpoint. The same against the real llama.cpp server: test_llama_server.py.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from aictl.agents.connectors import openai_compat
from aictl.agents.connectors.base import RunContext
from aictl.domain.errors import UsageError
from aictl.domain.models import AIRecord
from aictl.sandbox import SandboxSpec, get_sandbox
from tests.agents.sdk_variants import CHAT, KEYS, OLLAMA, VARIANTS, Variant
from tests.fakeprovider import LLAMA_CPP, FakeProvider, error, reply, tool

WRITE = tool("write_file", {"path": "hello.txt", "content": 'hi "there"\n\tüñí'})


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    openai_compat.forget_detected()
    yield
    openai_compat.forget_detected()


@pytest.fixture
def workdir(tmp_path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
def llama():
    """A fake server with llama.cpp's quirks that names itself as llama-cpp-python does (owned_by "me")."""
    with FakeProvider(quirks=LLAMA_CPP, owned_by="me") as fp:
        yield fp


def run(fp: FakeProvider, workdir: Path, v: Variant = CHAT, *, config: dict | None = None, **kw: Any):
    module = importlib.import_module(f"aictl.agents.connectors.{v.module}")
    cls = next(c for c in vars(module).values() if isinstance(c, type) and getattr(c, "name", None) == v.connector)
    ai = AIRecord(
        id="t",
        connector=v.connector,
        model=kw.pop("model", v.model),
        config={"base_url": fp.url, "retry_backoff_s": 0.01, **v.config, **(config or {})},
    )
    spec = kw.pop("spec", None) or SandboxSpec(timeout_s=60)
    kw.setdefault("task", None)
    ctx = RunContext(workdir=workdir, sandbox=get_sandbox(spec.backend), spec=spec, ai=ai, prompt="Write hello", **kw)
    return cls().run(ctx)


def bodies(fp: FakeProvider, protocol: str = "openai-chat") -> list[dict]:
    return [r.body for r in fp.calls(protocol)]


# -- settings and detection -------------------------------------------------------------------------


def test_a_llama_cpp_server_is_detected_and_gets_its_settings(llama, workdir):
    llama.script(reply(tools=[WRITE]), reply(text="done"))
    result = run(llama, workdir, config={"max_tokens": 300})
    assert result.ok, result.error
    assert (workdir / "hello.txt").read_text() == 'hi "there"\n\tüñí'
    first, second = bodies(llama)
    # unstreamed, tools offered with tool_choice auto, the limit as max_tokens
    assert not first.get("stream") and "stream_options" not in first
    assert first["tool_choice"] == "auto" and first["max_tokens"] == 300 and "max_completion_tokens" not in first
    assert second["tool_choice"] == "auto"
    assert "server llama.cpp (detected)" in result.transcript
    # the unstreamed answers carried usage: real counts, not an estimate
    assert "estimated" not in result.usage and result.usage["input_tokens"] > 0


def test_detection_probes_once_per_url_and_not_at_all_when_everything_is_set(llama, workdir):
    llama.script(reply(text="a"), reply(text="b"))
    run(llama, workdir, config={"stream": True})
    run(llama, workdir, config={"stream": True})
    assert sum(r.protocol == "models" for r in llama.requests) == 1
    openai_compat.forget_detected()
    llama.script(reply(text="c"))
    every = {"stream": True, "stream_usage": True, "tool_choice": "omit", "max_tokens_param": "max_tokens"}
    result = run(llama, workdir, config=every)
    assert result.ok and sum(r.protocol == "models" for r in llama.requests) == 1


def test_the_official_api_and_the_openai_profile(fake_provider, workdir):
    fake_provider.script(reply(text="done", usage=(10, 2)))
    result = run(fake_provider, workdir, config={"max_tokens": 50})
    (body,) = bodies(fake_provider)
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 50 and "tool_choice" not in body
    assert result.usage["input_tokens"] == 10 and "estimated" not in result.usage
    assert openai_compat.detect_server("https://api.openai.com/v1", None) == "openai"  # known by its host


def test_config_overrides_the_profile(llama, workdir):
    llama.script(reply(text="done"))
    config = {"stream": True, "stream_usage": True, "max_tokens_param": "max_completion_tokens", "max_tokens": 9}
    run(llama, workdir, config={**config, "tool_choice": "none"})
    (body,) = bodies(llama)
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 9 and body["tool_choice"] == "none"


def test_the_server_setting_names_it_without_a_probe(llama, workdir):
    llama.script(reply(text="done"))
    run(llama, workdir, config={"server": "vllm"})
    (body,) = bodies(llama)
    assert body["stream"] and body["tool_choice"] == "auto"
    assert not any(r.protocol == "models" for r in llama.requests)


def test_a_forced_tool_applies_to_the_first_turn_only(llama, workdir):
    llama.script(reply(tools=[WRITE]), reply(text="done"))
    result = run(llama, workdir, config={"tool_choice": "write_file"})
    assert result.ok
    first, second = bodies(llama)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "write_file"}}
    assert second["tool_choice"] == "auto"


def test_a_tool_choice_per_turn(llama, workdir):
    llama.script(reply(tools=[WRITE]), reply(text="done"))
    result = run(llama, workdir, config={"tool_choice": ["write_file", "none"]})
    assert result.ok
    assert [b["tool_choice"] for b in bodies(llama)] == [
        {"type": "function", "function": {"name": "write_file"}},
        "none",
    ]


def test_a_forced_tool_that_is_not_offered_is_a_usage_error(llama, workdir):
    with pytest.raises(UsageError, match="'nope', which is not offered"):
        run(llama, workdir, config={"tool_choice": "nope"})
    with pytest.raises(UsageError, match="entries must be strings"):
        run(llama, workdir, config={"tool_choice": ["write_file", 3]})


def test_health_names_the_server(llama):
    from aictl.agents import health

    ai = AIRecord(id="l", connector="openai", model="gpt-5.5", config={"base_url": llama.url})
    check = health.check(ai)
    assert check["ok"] and check["server"] == "llama.cpp" and "server llama.cpp" in check["detail"]


# -- usage -----------------------------------------------------------------------------------------


def test_a_stream_without_usage_is_estimated_never_zero_and_priced(llama, workdir):
    llama.script(reply(text="x" * 400))
    prices = {"input": 1.0, "output": 2.0}
    result = run(llama, workdir, config={"stream": True, "prices": prices})
    assert result.ok
    assert result.usage["estimated"] is True
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] == 100
    assert result.cost_usd and result.cost_usd > 0
    usage_event = next(e for e in result.events if e["type"] == "usage")
    assert usage_event["estimated"] is True


def test_llama_cpp_timings_are_used_when_there_is_no_usage(workdir):
    with FakeProvider(quirks={"timings"}, owned_by="llamacpp") as fp:
        fp.script(reply(text="hello", usage=(25, 7)), reply(text="again", usage=(30, 4)))
        streamed = run(fp, workdir, config={"stream": True, "stream_usage": True})
        whole = run(fp, workdir, config={"stream": False})
    assert (streamed.usage["input_tokens"], streamed.usage["output_tokens"]) == (25, 7)
    assert (whole.usage["input_tokens"], whole.usage["output_tokens"]) == (30, 4)
    assert "estimated" not in streamed.usage and "estimated" not in whole.usage


def test_an_unpriced_model_has_a_null_cost_and_a_budget_is_refused(llama, workdir):
    llama.script(reply(text="done"))
    result = run(llama, workdir, model="gemma-3-270m", config={"stream": True})
    assert result.ok and result.cost_usd is None and result.usage["output_tokens"] > 0
    refused = run(llama, workdir, model="gemma-3-270m", budget_usd=0.01)
    assert not refused.ok and "cannot be enforced" in refused.error
    assert not any(r.protocol == "openai-chat" for r in llama.requests[2:])


def test_an_estimated_cost_still_stops_a_budget(llama, workdir):
    llama.respond = lambda rec: reply(text="x" * 4000, tools=[tool("list_files", {})])
    prices = {"input": 100_000.0, "output": 100_000.0}  # $0.1 a token: one turn spends the budget
    result = run(llama, workdir, config={"stream": True, "prices": prices}, budget_usd=1.0)
    assert not result.ok and "budget" in result.error and result.usage["turns"] == 1
    assert result.usage["estimated"] is True


# -- streamed tool calls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quirks",
    [LLAMA_CPP, {"repeat_id_name"}, {"split_args"}, {"interleave"}, {"interleave", "split_args", "repeat_id_name"}],
    ids=lambda q: "+".join(sorted(q)),
)
def test_streamed_tool_calls_survive_the_quirks(workdir, quirks):
    a = tool("write_file", {"path": "a.txt", "content": "A " * 40})
    b = tool("write_file", {"path": "dir/b.txt", "content": 'B "q" \\ ü'})
    with FakeProvider(quirks=quirks, owned_by="me") as fp:
        fp.script(reply(tools=[a, b]), reply(text="done"))
        result = run(fp, workdir, config={"stream": True})
    assert result.ok, result.error
    assert (workdir / "a.txt").read_text() == "A " * 40
    assert (workdir / "dir/b.txt").read_text() == 'B "q" \\ ü'
    calls = [e for e in result.events if e["type"] == "tool_call"]
    assert [c["raw_name"] for c in calls] == ["write_file", "write_file"]
    # what went back to the server is the arguments as sent, once each
    assistant = next(m for m in fp.calls()[1].body["messages"] if m.get("tool_calls"))
    assert [json.loads(c["function"]["arguments"])["path"] for c in assistant["tool_calls"]] == ["a.txt", "dir/b.txt"]


# -- truncation ------------------------------------------------------------------------------------

STOPS = {"anthropic": "max_tokens", "openai-chat": "length", "openai-responses": "length", "ollama": "length"}


@pytest.mark.parametrize("v", VARIANTS)
def test_a_truncated_answer_fails_the_run_never_done(fake_provider, v, workdir):
    fake_provider.script(reply(text="I will now wri", stop=STOPS[v.protocol]))
    result = run(fake_provider, workdir, v)
    assert not result.ok and result.error_kind == "truncated" and not result.transient
    assert "cut off at its token limit" in result.error
    assert result.events[-1] == {"type": "result", "ok": False, "turns": 1, "summary": "I will now wri"}


@pytest.mark.parametrize("v", VARIANTS)
def test_truncated_continue_asks_the_model_to_go_on(fake_provider, v, workdir):
    fake_provider.script(reply(text="part one", stop=STOPS[v.protocol]), reply(text="part two, done"))
    result = run(fake_provider, workdir, v, config={"truncated": "continue"})
    assert result.ok and result.summary == "part two, done" and result.usage["turns"] == 2
    last = json.dumps(fake_provider.calls()[-1].body)
    assert "cut off at the token limit" in last and "part one" in last


def test_truncated_continue_runs_the_calls_and_tells_the_model_about_a_cut_one(llama, workdir):
    cut = tool("write_file", '{"path": "a.txt", "content": "unfinish')
    llama.script(reply(tools=[tool("list_files", {}), cut], stop="length"), reply(text="done"))
    result = run(llama, workdir, config={"truncated": "continue", "stream": True})
    assert result.ok
    outputs = [e for e in result.events if e["type"] == "tool_result"]
    assert outputs[0]["ok"] and not outputs[1]["ok"] and "not valid JSON" in outputs[1]["output"]
    assert not (workdir / "a.txt").exists()


def test_a_server_that_ignores_max_completion_tokens_is_limited_by_max_tokens(llama, workdir):
    llama.script(reply(text="word " * 200), reply(text="word " * 200))
    unlimited = run(llama, workdir, config={"max_tokens": 20, "max_tokens_param": "max_completion_tokens"})
    assert unlimited.ok  # the quirk: the limit was not honoured, so nothing was cut
    limited = run(llama, workdir, config={"max_tokens": 20})  # the llama.cpp profile sends max_tokens
    assert not limited.ok and limited.error_kind == "truncated"


def test_ollama_length_and_missing_counts(workdir):
    with FakeProvider(quirks={"no_eval_count"}) as fp:
        fp.script(reply(text="four score and seven"))
        result = run(fp, workdir, OLLAMA)
        fp.script(reply(text="cut", stop="length"))
        cut = run(fp, workdir, OLLAMA)
    assert result.ok and result.usage["estimated"] is True and result.usage["output_tokens"] == 5
    assert not cut.ok and cut.error_kind == "truncated"


# -- stopped streams and errors --------------------------------------------------------------------


@pytest.mark.parametrize("v", VARIANTS)
def test_the_text_of_a_timed_out_turn_stays_in_the_transcript(fake_provider, v, workdir):
    importlib.import_module(v.connector)  # the SDK's first import (up to 2 s) must not eat the run's 0.6 s
    fake_provider.script(reply(text="Partial thoughts before the deadline " * 40, delay_s=0.02))
    result = run(fake_provider, workdir, v, config={"timeout_s": 0.6, "stream": True})
    assert result.timed_out and not result.ok
    partial = [e for e in result.events if e["type"] == "message" and e.get("partial")]
    assert partial and partial[0]["text"].startswith("Partial thoughts")
    assert "assistant (cut off): Partial thoughts" in result.transcript


def test_a_404_from_a_missing_endpoint_is_reported_as_such(fake_provider, workdir):
    result = run(fake_provider, workdir, config={"api": "responses", "base_url": fake_provider.url + "/none/v1"})
    assert not result.ok and "has no endpoint /none/v1/responses (HTTP 404)" in result.error
    assert "api=chat" in result.error and "model name" not in result.error
    gone = "The model `gpt-9` does not exist or you do not have access to it."
    fake_provider.script(error(404, gone, kind="invalid_request_error"))
    wrong = run(fake_provider, workdir)
    assert "is the model name right?" in wrong.error


# -- a task that locks paths and changes nothing ---------------------------------------------------


def test_a_task_with_lock_paths_that_changes_nothing_says_so(fake_provider, workdir):
    import subprocess
    from types import SimpleNamespace

    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    (workdir / "README.md").write_text("x\n")
    git = ["git", "-C", str(workdir), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    task = SimpleNamespace(lock_paths=["src/**"], title="t", description="")
    fake_provider.script(reply(text="I looked around."))
    idle = run(fake_provider, workdir, task=task)
    assert idle.ok and "no change: the task locks src/**" in idle.summary
    fake_provider.script(reply(tools=[tool("write_file", {"path": "src/a.py", "content": "x"})]), reply(text="done"))
    busy = run(fake_provider, workdir, task=task)
    assert busy.ok and busy.summary == "done"


def test_usage_json_says_when_the_tokens_were_estimated():
    from types import SimpleNamespace

    from aictl.execution.agent import usage_record

    usage = {"input_tokens": 10, "output_tokens": 5, "estimated": True}
    run_ = SimpleNamespace(usage=usage, cost_usd=None, duration_s=1)
    assert usage_record(run_, "openai", "l", "m")["estimated"] is True
    run_.usage = {"input_tokens": 10, "output_tokens": 5}
    assert usage_record(run_, "openai", "l", "m")["estimated"] is False
