"""The fake provider speaks each wire protocol well enough for the official SDKs to parse it.

These tests use the real anthropic, openai and ollama clients over real HTTP:
if the server drifts from the protocol, the SDK's own parser fails here.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.fakeprovider import FakeProvider, error, reply, tool

WRITE = {"path": "hello.txt", "content": "hi\n"}
FN_TOOL = {
    "name": "write_file",
    "description": "write a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
}


def _anthropic(fp: FakeProvider, **kw):
    import anthropic

    return anthropic.Anthropic(base_url=fp.url, api_key="sk-ant-test", max_retries=kw.pop("max_retries", 0), **kw)


def _openai(fp: FakeProvider, **kw):
    import openai

    return openai.OpenAI(base_url=fp.url + "/v1", api_key="sk-test", max_retries=kw.pop("max_retries", 0), **kw)


ANTHROPIC_TOOLS = [{"name": "write_file", "description": "write a file", "input_schema": FN_TOOL["parameters"]}]


def test_anthropic_stream_text_and_tool_use(fake_provider):
    fake_provider.script(reply("I will write it.", [tool("write_file", WRITE)], usage=(120, 30)))
    client = _anthropic(fake_provider)
    with client.messages.stream(
        model="claude-sonnet-5",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[{"role": "user", "content": "write hello"}],
    ) as stream:
        msg = stream.get_final_message()
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.content[0].text == "I will write it."
    assert msg.content[1].name == "write_file" and msg.content[1].input == WRITE
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (120, 30)
    rec = fake_provider.calls("anthropic")[0]
    assert (
        rec.stream
        and rec.tools == ["write_file"]
        and "sk-ant-test" in (rec.headers.get("x-api-key", "") + rec.headers.get("authorization", ""))
    )


def test_anthropic_non_stream_and_no_tool_requests_leave_the_script(fake_provider):
    fake_provider.script(reply("scripted"))
    client = _anthropic(fake_provider)
    title = client.messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "title?"}]
    )
    assert title.content[0].text == "Task" and fake_provider.pending == 1
    msg = client.messages.create(
        model="claude-sonnet-5", max_tokens=20, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": "go"}]
    )
    assert msg.content[0].text == "scripted" and msg.stop_reason == "end_turn" and fake_provider.pending == 0


@pytest.mark.parametrize(
    "status,exc,kind",
    [
        (429, "RateLimitError", "rate_limit_error"),
        (401, "AuthenticationError", "authentication_error"),
        (529, "InternalServerError", "overloaded_error"),
    ],
)
def test_anthropic_errors_are_the_sdks_own_exceptions(fake_provider, status, exc, kind):
    import anthropic

    fake_provider.script(error(status, retry_after=2, reset_at=time.time() + 30))
    with pytest.raises(getattr(anthropic, exc)) as info:
        _anthropic(fake_provider).messages.create(
            model="claude-sonnet-5", max_tokens=10, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == kind
    assert info.value.response.headers["retry-after"] == "2"


def test_anthropic_sdk_retries_a_429_after_retry_after(fake_provider):
    fake_provider.script(error(429, retry_after=0.1), reply("after retry"))
    msg = _anthropic(fake_provider, max_retries=2).messages.create(
        model="claude-sonnet-5", max_tokens=10, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": "x"}]
    )
    assert msg.content[0].text == "after retry" and len(fake_provider.calls()) == 2


def test_openai_chat_stream_with_tool_calls_and_usage(fake_provider):
    fake_provider.script(reply("writing", [tool("write_file", WRITE)], usage=(50, 9)))
    stream = _openai(fake_provider).chat.completions.create(
        model="gpt-4.1-mini",
        stream=True,
        stream_options={"include_usage": True},
        tools=[{"type": "function", "function": FN_TOOL}],
        messages=[{"role": "user", "content": "hi"}],
    )
    text, args, name, finish, usage = "", "", None, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                name = tc.function.name or name
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert text == "writing" and name == "write_file" and json.loads(args) == WRITE and finish == "tool_calls"
    assert (usage.prompt_tokens, usage.completion_tokens) == (50, 9)


def test_openai_chat_non_stream_and_errors(fake_provider):
    import openai

    fake_provider.script(reply("", [tool("write_file", WRITE)]), error(401))
    client = _openai(fake_provider)
    done = client.chat.completions.create(
        model="gpt-4.1-mini",
        tools=[{"type": "function", "function": FN_TOOL}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert json.loads(done.choices[0].message.tool_calls[0].function.arguments) == WRITE
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4.1-mini",
            tools=[{"type": "function", "function": FN_TOOL}],
            messages=[{"role": "user", "content": "hi"}],
        )


def test_openai_responses_stream_function_and_custom_tool(fake_provider):
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
    fake_provider.script(reply("ok", [tool("write_file", WRITE), tool("apply_patch", patch)], usage=(70, 20)))
    client = _openai(fake_provider)
    tools = [{"type": "function", **FN_TOOL}, {"type": "custom", "name": "apply_patch", "description": "patch"}]
    with client.responses.stream(model="gpt-5.5", input="hi", tools=tools) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "ok"
    kinds = [i.type for i in final.output]
    assert kinds == ["message", "function_call", "custom_tool_call"]
    assert json.loads(final.output[1].arguments) == WRITE and final.output[2].input == patch
    assert (final.usage.input_tokens, final.usage.output_tokens) == (70, 20)


def test_openai_responses_non_stream_and_rate_limit(fake_provider):
    import openai

    fake_provider.script(error(429, retry_after=1), reply("fine"))
    client = _openai(fake_provider)
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-5.5", input="hi", tools=[{"type": "function", **FN_TOOL}])
    assert info.value.response.headers["retry-after"] == "1"
    assert (
        client.responses.create(model="gpt-5.5", input="hi", tools=[{"type": "function", **FN_TOOL}]).output_text
        == "fine"
    )


def test_ollama_stream_tool_calls_tags_and_show(fake_provider):
    import ollama

    fake_provider.script(reply("let me", [tool("write_file", WRITE)], usage=(30, 7)))
    client = ollama.Client(host=fake_provider.url)
    parts = list(
        client.chat(
            model="llama3.2:3b",
            stream=True,
            tools=[{"type": "function", "function": FN_TOOL}],
            messages=[{"role": "user", "content": "hi"}],
        )
    )
    assert "".join(p.message.content or "" for p in parts) == "let me"
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert calls[0].function.name == "write_file" and dict(calls[0].function.arguments) == WRITE
    assert parts[-1].done and parts[-1].prompt_eval_count == 30 and parts[-1].eval_count == 7
    assert "llama3.2:3b" in [m.model for m in client.list().models]
    assert "tools" in client.show("llama3.2:3b").capabilities
    with pytest.raises(ollama.ResponseError):
        client.show("no-such-model")


def test_ollama_error_status(fake_provider):
    import ollama

    fake_provider.script(error(503))
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=fake_provider.url).chat(
            model="llama3.2:3b",
            stream=False,
            tools=[{"type": "function", "function": FN_TOOL}],
            messages=[{"role": "user", "content": "hi"}],
        )
    assert info.value.status_code == 503


def test_model_lists_in_both_dialects(fake_provider):
    assert "gpt-5.5" in [m.id for m in _openai(fake_provider).models.list()]
    assert "claude-sonnet-5" in [m.id for m in _anthropic(fake_provider).models.list()]


def test_slow_stream_can_be_abandoned(fake_provider):
    """A delayed turn streams slowly; a client that gives up does not wedge the server."""
    import httpx

    fake_provider.script(reply("x" * 200, delay_s=0.5))
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            fake_provider.url + "/v1/messages",
            timeout=0.3,
            json={"model": "m", "stream": True, "tools": ANTHROPIC_TOOLS, "messages": []},
        ) as r,
    ):
        for _ in r.iter_lines():
            pass
    fake_provider.script(reply("next"))
    msg = _anthropic(fake_provider).messages.create(
        model="m", max_tokens=5, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": "x"}]
    )
    assert msg.content[0].text == "next"
