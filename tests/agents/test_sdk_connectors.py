"""The anthropic, openai (chat and responses) and ollama connectors: the real SDKs, over real HTTP, against the
fake provider (tests/fakeprovider), editing a real directory through aictl's tool loop.

RunContext is built directly here; the whole path through the CLI and the executor is in test_sdk_executor.py.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aictl.agents.connectors.base import RunContext
from aictl.domain.models import AIRecord
from aictl.sandbox import SandboxSpec, get_sandbox
from tests.agents.sdk_variants import ANTHROPIC, CHAT, KEYS, VARIANTS, Variant
from tests.fakeprovider import FakeProvider, error, reply, tool

# 250 input and 30 output tokens over the two turns of the edit script, at the built-in list prices.
EDIT_COST = {
    "anthropic": 250 * 1.0e-6 + 30 * 5.0e-6,
    "openai-chat": 250 * 0.4e-6 + 30 * 1.6e-6,
    "openai-responses": 250 * 0.4e-6 + 30 * 1.6e-6,
    "ollama": 0.0,
}


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def workdir(tmp_path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    (d / "README.md").write_text("# demo\n")
    return d


def connector(v: Variant) -> Any:
    module = importlib.import_module(f"aictl.agents.connectors.{v.module}")
    cls = next(c for c in vars(module).values() if isinstance(c, type) and getattr(c, "name", None) == v.connector)
    return cls()


def make_ctx(
    fp: FakeProvider,
    v: Variant,
    workdir: Path,
    *,
    config: dict | None = None,
    model: str | None = None,
    spec: SandboxSpec | None = None,
    **kw: Any,
) -> tuple[RunContext, list[dict]]:
    events: list[dict] = []
    ai = AIRecord(
        id=f"{v.connector}-test",
        connector=v.connector,
        model=model or v.model,
        config={"base_url": fp.url, "retry_backoff_s": 0.01, **v.config, **(config or {})},
    )
    spec = spec or SandboxSpec(timeout_s=120)
    kw.setdefault("on_event", events.append)
    ctx = RunContext(
        task=None,
        workdir=workdir,
        sandbox=get_sandbox(spec.backend),
        spec=spec,
        ai=ai,
        prompt="Write hello.txt",
        system="Task 7: greet the world.",
        **kw,
    )
    return ctx, events


def run(fp: FakeProvider, v: Variant, workdir: Path, **kw: Any):
    ctx, events = make_ctx(fp, v, workdir, **kw)
    return connector(v).run(ctx), events


# What the model was sent, per protocol.
def system_of(v: Variant, body: dict) -> str:
    if v.protocol == "anthropic":
        return body["system"]
    if v.protocol == "openai-responses":
        return body["instructions"]
    first = body["messages"][0]
    assert first["role"] == "system"
    return first["content"]


def tool_results_of(v: Variant, body: dict) -> list[str]:
    if v.protocol == "anthropic":
        return [
            b["content"]
            for m in body["messages"]
            if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "tool_result"
        ]
    if v.protocol == "openai-responses":
        return [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def key_header(v: Variant, rec: Any) -> str | None:
    if v.protocol == "anthropic" and "x-api-key" in rec.headers:  # older SDKs; 2.x sends a bearer token
        return rec.headers["x-api-key"]
    return (rec.headers.get("authorization") or "").removeprefix("Bearer ") or None


# -- the loop edits a file ---------------------------------------------------------------------


@pytest.mark.parametrize("v", VARIANTS)
def test_tool_loop_edits_a_file(fake_provider, v, workdir):
    fp = fake_provider
    fp.script(
        reply(
            text="I'll write it",
            tools=[tool("write_file", {"path": "hello.txt", "content": "hello\n"})],
            usage=(100, 20),
        ),
        reply(text="done", usage=(150, 10)),
    )
    result, streamed = run(fp, v, workdir)
    assert result.ok, result.error
    assert (workdir / "hello.txt").read_text() == "hello\n"
    assert result.summary == "done" and result.model == v.model and result.error_kind is None
    assert [e["type"] for e in result.events] == [
        "init",
        "message",
        "tool_call",
        "usage",
        "tool_result",
        "message",
        "usage",
        "result",
    ]
    assert streamed == result.events  # on_event saw every event, as it happened
    init, said, call, _, out, last, usage, end = result.events
    assert init["tools"] == ["read", "write", "list", "run"] and init["model"] == v.model
    assert said["text"] == "I'll write it" and last["text"] == "done"
    assert call["name"] == "write" and call["input"] == {"path": "hello.txt", "content": "hello\n"}
    assert out["id"] == call["id"] and out["ok"] and "wrote 6 bytes to hello.txt" in out["output"]
    assert end == {"type": "result", "ok": True, "turns": 2, "summary": "done"}
    assert result.usage["input_tokens"] == 250 and result.usage["output_tokens"] == 30
    assert result.usage["turns"] == 2 and result.usage["requests"] == 2
    assert usage["input_tokens"] == 250 and usage["cost_usd"] == pytest.approx(EDIT_COST[v.protocol])
    assert result.cost_usd == pytest.approx(EDIT_COST[v.protocol])
    for text in (
        "assistant: I'll write it",
        "→ write (write_file)",
        "wrote 6 bytes",
        "assistant: done",
        "Write hello.txt",
    ):
        assert text in result.transcript
    calls = fp.calls()
    assert [c.protocol for c in calls] == [v.protocol, v.protocol]
    for c in calls:
        assert c.stream and c.tools == ["read_file", "write_file", "list_files", "run_command"]
        assert "Task 7: greet the world." in system_of(v, c.body)
        assert key_header(v, c) == KEYS[v.key_env]
    assert tool_results_of(v, calls[0].body) == []
    assert tool_results_of(v, calls[1].body) == ["wrote 6 bytes to hello.txt"]


@pytest.mark.parametrize("v", VARIANTS)
def test_run_command_goes_through_the_local_sandbox(fake_provider, v, workdir):
    fake_provider.script(
        reply(tools=[tool("run_command", {"command": "echo made > out.txt && cat out.txt README.md"})]),
        reply(text="done"),
    )
    lines: list[str] = []
    result, _ = run(fake_provider, v, workdir, on_output=lambda stream, line: lines.append(line))
    assert result.ok, result.error
    assert (workdir / "out.txt").read_text() == "made\n"
    out = next(e for e in result.events if e["type"] == "tool_result")
    assert out["ok"] and out["output"].startswith("exit code: 0") and "made\n# demo" in out["output"]
    assert "made" in lines  # the command's output streamed live too
    assert result.sandbox["backend"] == "local"
    assert "exit code: 0" in tool_results_of(v, fake_provider.calls()[1].body)[0]


@pytest.mark.docker
@pytest.mark.parametrize("v", VARIANTS)
def test_run_command_goes_through_the_docker_sandbox(fake_provider, v, workdir, sandbox_image):
    fake_provider.script(
        reply(tools=[tool("run_command", {"command": "echo made > out.txt && pwd && cat README.md"})]),
        reply(text="done"),
    )
    spec = SandboxSpec(backend="docker", image=sandbox_image, timeout_s=120)
    result, _ = run(fake_provider, v, workdir, spec=spec)
    assert result.ok, result.error
    assert (workdir / "out.txt").read_text() == "made\n"  # written inside the container, seen on the host
    out = next(e for e in result.events if e["type"] == "tool_result")
    assert out["ok"] and "/workspace\n# demo" in out["output"]
    assert result.sandbox["backend"] == "docker"


@pytest.mark.parametrize("v", VARIANTS)
def test_paths_out_of_the_workspace_are_refused_to_the_model(fake_provider, v, workdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (workdir / "escape").symlink_to(outside)
    fake_provider.script(
        reply(
            tools=[
                tool("read_file", {"path": "../outside/secret.txt"}),
                tool("write_file", {"path": str(outside / "evil.txt"), "content": "x"}),
                tool("write_file", {"path": "escape/evil.txt", "content": "x"}),
                tool("read_file", {"path": "escape/secret.txt"}),
            ]
        ),
        reply(text="ok, I will stay inside"),
    )
    result, _ = run(fake_provider, v, workdir)
    assert result.ok, result.error  # refusals are tool errors the model reads, not a crash
    outs = [e for e in result.events if e["type"] == "tool_result"]
    assert len(outs) == 4 and not any(o["ok"] for o in outs)
    assert all("refused" in o["output"] for o in outs)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    sent = json.dumps([c.body for c in fake_provider.calls()])
    assert "top secret" not in sent
    assert len(tool_results_of(v, fake_provider.calls()[1].body)) == 4


@pytest.mark.parametrize("v", VARIANTS)
def test_only_allowed_tools_are_offered(fake_provider, v, workdir):
    fake_provider.script(reply(tools=[tool("write_file", {"path": "a.txt", "content": "x"})]), reply(text="done"))
    result, _ = run(fake_provider, v, workdir, allowed_tools=["read", "list"])
    assert result.ok
    assert fake_provider.calls()[0].tools == ["read_file", "list_files"]
    out = next(e for e in result.events if e["type"] == "tool_result")
    assert not out["ok"] and "not allowed" in out["output"] and not (workdir / "a.txt").exists()


# -- retries and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("v", VARIANTS)
def test_a_429_with_retry_after_is_retried(fake_provider, v, workdir):
    fake_provider.script(error(429, retry_after=0.05), reply(text="ok"))
    result, _ = run(fake_provider, v, workdir)
    assert result.ok, result.error
    assert len(fake_provider.calls()) == 2
    assert result.usage["retries"] == 1 and result.usage["requests"] == 2 and result.usage["turns"] == 1
    retrying = [e for e in result.events if e["type"] == "error"]
    assert len(retrying) == 1 and retrying[0]["kind"] == "rate_limit" and retrying[0]["retrying"]
    assert "in 0.05s" in retrying[0]["message"]  # the provider's retry-after, not our backoff


@pytest.mark.parametrize("v", VARIANTS)
def test_overloaded_and_server_errors_are_retried(fake_provider, v, workdir):
    fake_provider.script(error(529), error(500), error(503), reply(text="ok"))
    result, _ = run(fake_provider, v, workdir)
    assert result.ok, result.error
    assert len(fake_provider.calls()) == 4 and result.usage["retries"] == 3


@pytest.mark.parametrize("v", VARIANTS)
@pytest.mark.parametrize("status", [500, 502])
def test_a_persistent_5xx_ends_overloaded_and_transient(fake_provider, v, workdir, status):
    # The provider failed, not the request: the executor re-routes an overloaded run instead of costing an attempt.
    fake_provider.script(*[error(status)] * 2, reply(text="never reached"))
    result, _ = run(fake_provider, v, workdir, config={"max_retries": 1})
    assert not result.ok and result.error_kind == "overloaded" and result.transient, result.error
    assert len(fake_provider.calls()) == 2 and f"HTTP {status}" in result.error


@pytest.mark.parametrize("v", VARIANTS)
def test_a_401_fails_at_once_naming_the_variable_not_the_key(fake_provider, v, workdir):
    fake_provider.script(error(401), reply(text="never reached"))
    result, _ = run(fake_provider, v, workdir)
    assert not result.ok and result.error_kind == "auth" and not result.transient
    assert len(fake_provider.calls()) == 1  # no retry
    assert f"${v.key_env}" in result.error
    everything = result.error + result.transcript + json.dumps(result.events)
    assert KEYS[v.key_env] not in everything


@pytest.mark.parametrize("v", VARIANTS)
def test_a_missing_key_fails_before_any_request(fake_provider, v, workdir, monkeypatch):
    monkeypatch.delenv(v.key_env)
    result, _ = run(fake_provider, v, workdir)
    assert not result.ok and result.error_kind == "auth" and v.key_env in result.error
    assert fake_provider.calls() == []


@pytest.mark.parametrize("v", VARIANTS)
def test_a_persistent_429_ends_transient_with_retry_at(fake_provider, v, workdir):
    fake_provider.script(*[error(429, retry_after=0.05)] * 3, reply(text="never reached"))
    before = time.time()
    result, _ = run(fake_provider, v, workdir, config={"max_retries": 2})
    assert not result.ok and result.error_kind == "rate_limit" and result.transient
    assert len(fake_provider.calls()) == 3
    assert before < result.retry_at < time.time() + 1
    assert result.events[-2]["type"] == "error" and result.events[-2]["retry_at"] == result.retry_at


@pytest.mark.parametrize("v", VARIANTS)
def test_a_long_retry_after_hands_the_wait_to_the_router(fake_provider, v, workdir):
    fake_provider.script(error(429, retry_after=3600), reply(text="never reached"))
    result, _ = run(fake_provider, v, workdir)
    assert not result.ok and result.error_kind == "rate_limit" and result.transient
    assert len(fake_provider.calls()) == 1  # no hour-long sleep in a worker
    assert result.retry_at > time.time() + 3500


@pytest.mark.parametrize("v", VARIANTS)
def test_retry_at_from_reset_headers(fake_provider, v, workdir):
    reset = time.time() + 120
    fake_provider.script(error(429, reset_at=reset))
    result, _ = run(fake_provider, v, workdir, config={"max_retries": 0})
    assert not result.ok and result.error_kind == "rate_limit"
    assert result.retry_at == pytest.approx(reset, abs=2)


# -- limits and cancellation -------------------------------------------------------------------


@pytest.mark.parametrize("v", VARIANTS)
def test_max_turns_stops_the_loop(fake_provider, v, workdir):
    fake_provider.respond = lambda rec: reply(text="again", tools=[tool("list_files", {})])
    result, _ = run(fake_provider, v, workdir, max_turns=3)
    assert not result.ok and result.error == "stopped after 3 turns: the model still wanted to call tools"
    assert not result.transient and result.usage["turns"] == 3
    assert len(fake_provider.calls()) == 3
    assert len([e for e in result.events if e["type"] == "tool_result"]) == 2  # the last turn's calls never ran


@pytest.mark.parametrize("v", VARIANTS)
def test_max_turns_from_the_ai_config(fake_provider, v, workdir):
    fake_provider.respond = lambda rec: reply(tools=[tool("list_files", {})])
    result, _ = run(fake_provider, v, workdir, config={"max_turns": 2})
    assert not result.ok and "stopped after 2 turns" in result.error and len(fake_provider.calls()) == 2


@pytest.mark.parametrize("v", VARIANTS)
def test_the_budget_stops_the_loop(fake_provider, v, workdir):
    fake_provider.respond = lambda rec: reply(tools=[tool("list_files", {})], usage=(1_000_000, 1))
    result, _ = run(fake_provider, v, workdir, budget_usd=1.5, config={"prices": {"input": 1.0, "output": 0.0}})
    assert not result.ok and "budget of $1.5" in result.error
    assert len(fake_provider.calls()) == 2  # $1 after the first turn, $2 after the second: no third
    assert result.cost_usd == pytest.approx(2.0)


@pytest.mark.parametrize("v", [ANTHROPIC, CHAT], ids=["anthropic", "openai"])
def test_a_budget_for_a_model_without_a_price_is_refused(fake_provider, v, workdir):
    result, _ = run(fake_provider, v, workdir, model="mystery-model-9", budget_usd=1.0)
    assert not result.ok and "price of mystery-model-9 is unknown" in result.error
    assert fake_provider.calls() == []


@pytest.mark.parametrize("v", [ANTHROPIC, CHAT], ids=["anthropic", "openai"])
def test_an_unknown_model_has_no_cost(fake_provider, v, workdir):
    fake_provider.script(reply(text="done", usage=(10, 10)))
    result, _ = run(fake_provider, v, workdir, model="mystery-model-9")
    assert result.ok and result.cost_usd is None and result.usage["input_tokens"] == 10


def _cancel_when_asked(fp: FakeProvider, cancel: threading.Event) -> threading.Thread:
    def watch() -> None:
        for _ in range(1000):
            if fp.calls():
                cancel.set()
                return
            time.sleep(0.01)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.timeout(30)
@pytest.mark.parametrize("v", VARIANTS)
def test_cancel_aborts_a_stream_that_is_waiting(fake_provider, v, workdir):
    # Each streamed event comes a minute apart: only closing the stream can end this run within the test timeout.
    fake_provider.script(reply(text="a long answer " * 10, delay_s=60))
    cancel = threading.Event()
    _cancel_when_asked(fake_provider, cancel)
    result, _ = run(fake_provider, v, workdir, cancel=cancel)
    assert result.cancelled and not result.ok and result.error == "cancelled"
    assert not any(e["type"] == "message" for e in result.events)


@pytest.mark.parametrize("v", VARIANTS)
def test_cancel_between_turns(fake_provider, v, workdir):
    fake_provider.script(reply(tools=[tool("write_file", {"path": "a.txt", "content": "x"})]), reply(text="done"))
    cancel = threading.Event()
    events: list[dict] = []

    def on_event(e: dict) -> None:
        events.append(e)
        if e["type"] == "tool_result":
            cancel.set()

    result, _ = run(fake_provider, v, workdir, cancel=cancel, on_event=on_event)
    assert result.cancelled and len(fake_provider.calls()) == 1
    assert (workdir / "a.txt").read_text() == "x"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("v", VARIANTS)
def test_the_run_deadline_ends_a_stalled_stream(fake_provider, v, workdir):
    fake_provider.script(reply(text="slow " * 10, delay_s=60))
    result, _ = run(fake_provider, v, workdir, spec=SandboxSpec(timeout_s=1.0))
    assert not result.ok and result.timed_out and result.error_kind == "timeout" and result.transient, (
        result.error,
        result.error_kind,
        result.timed_out,
        result.duration_s,
    )


# -- registry and health -----------------------------------------------------------------------


@pytest.mark.parametrize("v", VARIANTS)
def test_registered_by_name(v):
    from aictl.agents.connectors import get_connector

    assert type(get_connector(v.connector)) is type(connector(v))


@pytest.mark.parametrize("v", VARIANTS)
def test_health(fake_provider, v):
    from aictl.agents.health import check

    ai = AIRecord(id="h", connector=v.connector, model=v.model, config={"base_url": fake_provider.url, **v.config})
    ok = check(ai)
    assert ok["ok"] and ok["model_listed"] and v.model in ok["models"], ok
    assert check(ai.model_copy(update={"model": "not-pulled-1"}))["model_listed"] is False
    asked = [r for r in fake_provider.requests if r.protocol == "models"]
    assert key_header(v, asked[0]) == KEYS[v.key_env]
    with FakeProvider() as gone:
        dead_url = gone.url
    down = check(ai.model_copy(update={"config": {**ai.config, "base_url": dead_url}}))
    assert not down["ok"] and dead_url in down["detail"]
