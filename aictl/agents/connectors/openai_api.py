"""The `openai` connector: an OpenAI (or OpenAI-compatible) model through the official SDK, in aictl's tool loop.

Config: ``api`` = ``chat`` (Chat Completions, the default; what most compatible
servers speak) or ``responses`` (the Responses API, stateless: ``store=false``
and the whole conversation is sent each turn); ``base_url`` (default
https://api.openai.com/v1; a URL with no path gets ``/v1``), ``api_key_env``
(default OPENAI_API_KEY; a server that needs no key still needs the variable
set, to anything), ``max_tokens``, ``temperature``, ``max_turns``, ``prices``.
Both APIs are streamed (SSE); chat asks for usage in the stream
(``stream_options.include_usage``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aictl.agents.connectors.apicommon import abort_response, http_error, sdk_errors
from aictl.agents.connectors.base import ConnectorResult, RunContext
from aictl.agents.connectors.probes import model_list
from aictl.agents.connectors.spec import ConnectorSpec
from aictl.agents.connectors.toolloop import LoopRun, ModelTurn, Setup, ToolCall, Usage, run_tool_loop
from aictl.agents.pricing import OPENAI_PRICES
from aictl.domain.errors import UsageError

APIS = ("chat", "responses")


def _parse_args(raw: str | None) -> tuple[Any, str | None]:
    try:
        value = json.loads(raw or "{}")
    except ValueError as e:
        return raw, f"the arguments are not valid JSON ({e}); send a JSON object"
    return value, None


class OpenAIConnector:
    name = "openai"

    def run(self, ctx: RunContext) -> ConnectorResult:
        api = SPEC.config(ctx.ai)["api"]
        if api not in APIS:
            raise UsageError(f"openai config 'api' must be chat or responses, not {api!r}")
        return run_tool_loop(ctx, SPEC, open_session=_ChatSession if api == "chat" else _ResponsesSession)


class _Base:
    def __init__(self, setup: Setup, run: LoopRun):
        try:
            import openai
        except ImportError as e:
            raise UsageError("the openai connector needs the openai package", hint="pip install openai") from e
        self.sdk, self.setup, self.url, self.env = openai, setup, run.base_url, run.key_env
        # Retries are the loop's (toolloop._Retry), so the SDK makes exactly one attempt per call.
        self.client = openai.OpenAI(api_key=run.key, base_url=self.url, max_retries=0)

    def _stream(self, run: LoopRun, open_stream: Callable[[], Any], on_event: Callable[[Any], None]) -> None:
        """Open a stream, feed its events to on_event; SDK errors become ProviderError."""
        with (
            sdk_errors(self.sdk, connector="openai", base_url=self.url, key_env=self.env, error_kind=SPEC.error_kind),
            open_stream() as stream,
            run.watch(lambda: abort_response(stream.response)),
        ):
            for event in stream:
                run.check()
                on_event(event)
            run.check()  # a stream the watcher cut short may end as a clean EOF

    def close(self) -> None:
        self.client.close()


class _ChatSession(_Base):
    def __init__(self, setup: Setup, run: LoopRun):
        super().__init__(setup, run)
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": setup.system}] if setup.system else []
        self.messages.append({"role": "user", "content": setup.prompt})
        self.tools = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in setup.tools
        ]
        self._assistant: dict[str, Any] = {}

    def request(self, run: LoopRun, timeout: float) -> ModelTurn:
        s = self.setup
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": self.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": timeout,
        }
        if self.tools:
            kwargs["tools"] = self.tools
        if s.max_tokens:
            kwargs["max_completion_tokens"] = s.max_tokens
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        turn = ModelTurn()
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}  # index → {id, name, arguments}
        state = {"text_done": False}

        def flush_text() -> None:  # the text is complete once tool calls or the finish reason arrive
            if not state["text_done"]:
                state["text_done"] = True
                run.message("".join(text))

        def on_chunk(chunk: Any) -> None:
            turn.model = chunk.model or turn.model
            if chunk.usage is not None:
                u = chunk.usage
                cached = getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", None) or 0
                turn.usage = Usage(
                    input_tokens=(u.prompt_tokens or 0) - cached,
                    output_tokens=u.completion_tokens or 0,
                    cache_read_tokens=cached,
                )
            for choice in chunk.choices or []:
                delta = choice.delta
                if delta is not None and delta.content:
                    text.append(delta.content)
                for tc in (delta.tool_calls or []) if delta is not None else []:
                    flush_text()
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
                if choice.finish_reason:
                    turn.stop_reason = choice.finish_reason
                    flush_text()
                    for index in sorted(calls):
                        self._complete(run, turn, index, calls[index])

        self._stream(run, lambda: self.client.chat.completions.create(**kwargs), on_chunk)
        flush_text()
        for index in sorted(calls):  # a server that never sent finish_reason
            self._complete(run, turn, index, calls[index])
        turn.text = "".join(text)
        self._assistant = {"role": "assistant", "content": turn.text or None}
        if turn.calls:
            self._assistant["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": calls[i]["arguments"]}}
                for i, c in zip(sorted(calls), turn.calls, strict=True)
            ]
        return turn

    @staticmethod
    def _complete(run: LoopRun, turn: ModelTurn, index: int, slot: dict[str, Any]) -> None:
        if slot.get("done"):
            return
        slot["done"] = True
        value, problem = _parse_args(slot["arguments"])
        call = ToolCall(id=slot["id"] or f"call_{index}", name=slot["name"], input=value, error=problem)
        turn.calls.append(call)
        run.tool_call(call)

    def add_results(self, turn: ModelTurn, results: list) -> None:
        self.messages.append(self._assistant)
        for call, outcome in results:
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.output or "(no output)"})


class _ResponsesSession(_Base):
    def __init__(self, setup: Setup, run: LoopRun):
        super().__init__(setup, run)
        self.input: list[dict[str, Any]] = [{"role": "user", "content": setup.prompt}]
        self.tools = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": False,
            }
            for t in setup.tools
        ]
        self._output: list[dict[str, Any]] = []

    def request(self, run: LoopRun, timeout: float) -> ModelTurn:
        s = self.setup
        kwargs: dict[str, Any] = {
            "model": s.model,
            "input": self.input,
            "stream": True,
            "store": False,
            "timeout": timeout,
        }
        if s.system:
            kwargs["instructions"] = s.system
        if self.tools:
            kwargs["tools"] = self.tools
        if s.max_tokens:
            kwargs["max_output_tokens"] = s.max_tokens
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        turn = ModelTurn()
        texts: list[str] = []
        self._output = []
        final: dict[str, Any] = {}

        def on_event(event: Any) -> None:
            if event.type == "response.output_item.done":
                item = event.item
                if item.type == "message":
                    text = "".join(getattr(p, "text", "") or "" for p in item.content or [])
                    texts.append(text)
                    run.message(text)
                    self._output.append({"role": "assistant", "content": text})
                elif item.type == "function_call":
                    value, problem = _parse_args(item.arguments)
                    call = ToolCall(id=item.call_id, name=item.name, input=value, error=problem)
                    turn.calls.append(call)
                    run.tool_call(call)
                    self._output.append(
                        {
                            "type": "function_call",
                            "call_id": item.call_id,
                            "name": item.name,
                            "arguments": item.arguments,
                        }
                    )
                elif item.type == "reasoning" and getattr(item, "encrypted_content", None):
                    self._output.append(item.model_dump(exclude_none=True))
            elif event.type in ("response.completed", "response.incomplete", "response.failed"):
                final["response"] = event.response
            elif event.type == "error":
                raise http_error(
                    None,
                    connector="openai",
                    base_url=self.url,
                    key_env=self.env,
                    message=getattr(event, "message", "") or "",
                    error_type=getattr(event, "code", None),
                )

        self._stream(run, lambda: self.client.responses.create(**kwargs), on_event)
        response = final.get("response")
        if response is not None:
            if response.status == "failed":
                err = response.error
                raise http_error(
                    None,
                    connector="openai",
                    base_url=self.url,
                    key_env=self.env,
                    message=getattr(err, "message", "") or "the response failed",
                    error_type=getattr(err, "code", None),
                )
            turn.model, turn.stop_reason = response.model, response.status
            u = response.usage
            if u is not None:
                cached = getattr(getattr(u, "input_tokens_details", None), "cached_tokens", None) or 0
                turn.usage = Usage(
                    input_tokens=(u.input_tokens or 0) - cached,
                    output_tokens=u.output_tokens or 0,
                    cache_read_tokens=cached,
                )
        turn.text = "\n".join(t for t in texts if t)
        return turn

    def add_results(self, turn: ModelTurn, results: list) -> None:
        self.input.extend(self._output)
        for call, outcome in results:
            self.input.append(
                {"type": "function_call_output", "call_id": call.id, "output": outcome.output or "(no output)"}
            )


SPEC = ConnectorSpec(
    name="openai",
    kind="sdk",
    factory=OpenAIConnector,
    sdk_module="openai",
    default_key_env="OPENAI_API_KEY",
    default_base_url="https://api.openai.com/v1",
    url_path="/v1",  # a bare host gets /v1; a URL with a path is the API root as given
    defaults={"api": "chat"},
    config_types={"temperature": (int, float)},
    config_choices={"api": APIS},
    probe=model_list("/models", lambda body: [m.get("id") for m in (body or {}).get("data") or []]),
    prices=OPENAI_PRICES,
)

__all__ = ["SPEC", "OpenAIConnector"]
