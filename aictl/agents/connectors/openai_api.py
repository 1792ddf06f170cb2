"""The `openai` connector: an OpenAI (or OpenAI-compatible) model through the official SDK, in aictl's tool loop.

Config: ``api`` = ``chat`` (Chat Completions, the default; what most compatible
servers speak) or ``responses`` (the Responses API, stateless: ``store=false``
and the whole conversation is sent each turn); ``base_url`` (default
https://api.openai.com/v1; a URL with no path gets ``/v1``), ``api_key_env``
(default OPENAI_API_KEY; a server that needs no key still needs the variable
set, to anything), ``max_tokens``, ``temperature``, ``max_turns``, ``prices``.
Chat works with OpenAI-compatible servers too (llama.cpp, vLLM, Ollama, LM
Studio…): ``stream``, ``tool_choice``, ``max_tokens_param`` and
``stream_usage`` say how to talk to the server, ``server`` names it (``auto``:
detected by one ``GET /models``, see openai_compat.py, which holds the facts).
Streamed tool calls are put together by toolstream.py. When the server reports
no usage, it is counted from the text and marked ``estimated``; a
``finish_reason`` of ``length`` marks the turn truncated (toolloop.py decides).
The Responses API is always streamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aictl.agents.connectors import openai_compat
from aictl.agents.connectors.apicommon import abort_response, http_error, sdk_errors, shared_ssl_context
from aictl.agents.connectors.base import ConnectorResult, RunContext
from aictl.agents.connectors.probes import model_list
from aictl.agents.connectors.spec import ConnectorSpec
from aictl.agents.connectors.toolloop import (
    TRUNCATED_MODES,
    LoopRun,
    ModelTurn,
    Setup,
    ToolCall,
    Usage,
    run_tool_loop,
)
from aictl.agents.connectors.toolstream import ToolCallAccumulator, parse_arguments
from aictl.agents.pricing import OPENAI_PRICES
from aictl.domain.errors import UsageError

APIS = ("chat", "responses")


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
        http = openai.DefaultHttpxClient(verify=shared_ssl_context(openai.DefaultHttpxClient))
        self.client = openai.OpenAI(api_key=run.key, base_url=self.url, max_retries=0, http_client=http)

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
        self.settings = openai_compat.resolve(setup.config, run.base_url, run.key)
        run.note(
            f"== server {self.settings.server}{' (detected)' if self.settings.detected else ''}: "
            f"stream={self.settings.stream}, tool_choice={self.settings.tool_choice}, "
            f"{self.settings.max_tokens_param}, stream_usage={self.settings.stream_usage}"
        )
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": setup.system}] if setup.system else []
        self.messages.append({"role": "user", "content": setup.prompt})
        self.tools = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in setup.tools
        ]
        names = [t.name for t in setup.tools]
        problem = openai_compat.tool_choice_problem(self.settings.tool_choice, names)
        if problem:
            raise UsageError(
                f"openai config {problem}",
                hint=f"offered: {', '.join(names)}; or auto, none, required, omit (one, or a list, one per turn)",
            )
        self.turns = 0
        self._assistant: dict[str, Any] = {}

    def _kwargs(self, timeout: float) -> dict[str, Any]:
        s, cfg = self.setup, self.settings
        kwargs: dict[str, Any] = {"model": s.model, "messages": self.messages, "timeout": timeout}
        if cfg.stream:
            kwargs["stream"] = True
            if cfg.stream_usage:
                kwargs["stream_options"] = {"include_usage": True}
        if self.tools:
            kwargs["tools"] = self.tools
            choice = openai_compat.tool_choice_for(cfg.tool_choice, self.turns, [t.name for t in s.tools])
            if choice is not None:
                kwargs["tool_choice"] = choice
        if s.max_tokens:
            kwargs[cfg.max_tokens_param] = s.max_tokens
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        return kwargs

    def request(self, run: LoopRun, timeout: float) -> ModelTurn:
        self.turns += 1
        kwargs = self._kwargs(timeout)
        turn = ModelTurn()
        calls = ToolCallAccumulator()
        text: list[str] = []
        usage: list[Usage] = []
        if self.settings.stream:
            self._read_stream(run, kwargs, turn, calls, text, usage)
        else:
            self._read_whole(run, kwargs, turn, calls, text, usage)
        turn.text = "".join(text)
        run.message(turn.text)
        finished = calls.finish()
        for c in finished:
            call = ToolCall(id=c.id, name=c.name, input=c.input, error=c.error)
            turn.calls.append(call)
            run.tool_call(call)
        turn.truncated = turn.stop_reason == "length"
        # No usage from the server: count the text (marked estimated) rather than record a silent zero.
        turn.usage = usage[-1] if usage else self._estimate(turn, finished)
        # "" rather than null: llama-cpp-python refuses an assistant message whose content is null (HTTP 500).
        self._assistant = {"role": "assistant", "content": turn.text}
        if finished:
            self._assistant["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in finished
            ]
        return turn

    def _read_stream(
        self,
        run: LoopRun,
        kwargs: dict[str, Any],
        turn: ModelTurn,
        calls: ToolCallAccumulator,
        text: list[str],
        usage: list[Usage],
    ) -> None:
        def on_chunk(chunk: Any) -> None:
            turn.model = chunk.model or turn.model
            found = _usage(chunk.usage) or _timings(getattr(chunk, "model_extra", None))
            if found is not None:
                usage.append(found)
            for choice in chunk.choices or []:
                delta = choice.delta
                if delta is not None and delta.content:
                    text.append(delta.content)
                    run.delta(delta.content)
                for tc in (delta.tool_calls or []) if delta is not None else []:
                    fn = tc.function
                    calls.add(tc.index, tc.id, fn.name if fn else None, fn.arguments if fn else None)
                if choice.finish_reason:
                    turn.stop_reason = choice.finish_reason

        self._stream(run, lambda: self.client.chat.completions.create(**kwargs), on_chunk)

    def _read_whole(
        self,
        run: LoopRun,
        kwargs: dict[str, Any],
        turn: ModelTurn,
        calls: ToolCallAccumulator,
        text: list[str],
        usage: list[Usage],
    ) -> None:
        # One unstreamed request: the wait is bounded by its timeout (cut to the run's deadline) and a
        # server that goes away breaks the connection at once; cancel is seen when it returns.
        with sdk_errors(self.sdk, connector="openai", base_url=self.url, key_env=self.env, error_kind=SPEC.error_kind):
            response = self.client.chat.completions.create(**kwargs)
        run.check()
        turn.model = response.model or turn.model
        found = _usage(response.usage) or _timings(getattr(response, "model_extra", None))
        if found is not None:
            usage.append(found)
        for choice in (response.choices or [])[:1]:
            message = choice.message
            if message is not None and message.content:
                text.append(message.content)
            for n, tc in enumerate((message.tool_calls or []) if message is not None else []):
                fn = getattr(tc, "function", None)
                calls.add(n, tc.id, fn.name if fn else None, fn.arguments if fn else None)
            turn.stop_reason = choice.finish_reason

    def _estimate(self, turn: ModelTurn, finished: list[Any]) -> Usage:
        return Usage(
            input_tokens=openai_compat.estimate_tokens(self.messages, self.tools),
            output_tokens=openai_compat.estimate_tokens(turn.text, *[(c.name, c.arguments) for c in finished]),
            estimated=True,
        )

    def add_results(self, turn: ModelTurn, results: list) -> None:
        self.messages.append(self._assistant)
        for call, outcome in results:
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.output or "(no output)"})

    def add_continue(self, turn: ModelTurn, text: str) -> None:
        self.messages.append(self._assistant)
        self.messages.append({"role": "user", "content": text})


def _usage(u: Any) -> Usage | None:
    """Usage from an OpenAI usage object (prompt_tokens include the cached ones); None when absent."""
    if u is None or (u.prompt_tokens is None and u.completion_tokens is None):
        return None
    cached = getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", None) or 0
    return Usage(
        input_tokens=(u.prompt_tokens or 0) - cached, output_tokens=u.completion_tokens or 0, cache_read_tokens=cached
    )


def _timings(extra: Any) -> Usage | None:
    """llama.cpp's own counters (its server's `timings`: prompt_n, predicted_n) when it sends no usage."""
    timings = extra.get("timings") if isinstance(extra, dict) else None
    if not isinstance(timings, dict):
        return None
    prompt, predicted = timings.get("prompt_n"), timings.get("predicted_n")
    if not isinstance(prompt, int) or not isinstance(predicted, int):
        return None
    cached = timings.get("cache_n")
    cached = cached if isinstance(cached, int) else 0
    return Usage(input_tokens=prompt, output_tokens=predicted, cache_read_tokens=cached)


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
            if event.type == "response.output_text.delta":
                run.delta(event.delta or "")
            elif event.type == "response.output_item.done":
                item = event.item
                if item.type == "message":
                    text = "".join(getattr(p, "text", "") or "" for p in item.content or [])
                    texts.append(text)
                    run.message(text)
                    self._output.append({"role": "assistant", "content": text})
                elif item.type == "function_call":
                    value, problem = parse_arguments(item.arguments)
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
            reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
            turn.truncated = response.status == "incomplete" and reason == "max_output_tokens"
            u = response.usage
            if u is not None:
                cached = getattr(getattr(u, "input_tokens_details", None), "cached_tokens", None) or 0
                turn.usage = Usage(
                    input_tokens=(u.input_tokens or 0) - cached,
                    output_tokens=u.output_tokens or 0,
                    cache_read_tokens=cached,
                )
        turn.text = "\n".join(t for t in texts if t)
        if response is None or response.usage is None:  # a server that reports none: counted, marked estimated
            turn.usage = Usage(
                input_tokens=openai_compat.estimate_tokens(s.system, self.input, self.tools),
                output_tokens=openai_compat.estimate_tokens(turn.text, *[(c.name, c.input) for c in turn.calls]),
                estimated=True,
            )
        return turn

    def add_results(self, turn: ModelTurn, results: list) -> None:
        self.input.extend(self._output)
        for call, outcome in results:
            self.input.append(
                {"type": "function_call_output", "call_id": call.id, "output": outcome.output or "(no output)"}
            )

    def add_continue(self, turn: ModelTurn, text: str) -> None:
        self.input.extend(self._output)
        self.input.append({"role": "user", "content": text})


SPEC = ConnectorSpec(
    name="openai",
    kind="sdk",
    factory=OpenAIConnector,
    sdk_module="openai",
    default_key_env="OPENAI_API_KEY",
    default_base_url="https://api.openai.com/v1",
    url_path="/v1",  # a bare host gets /v1; a URL with a path is the API root as given
    defaults={"api": "chat", "server": "auto"},
    config_types={
        "temperature": (int, float),
        "stream": (bool,),
        "stream_usage": (bool,),
        "tool_choice": (str, list),  # auto | none | required | omit | a tool's name, or a list per turn
    },
    config_choices={
        "api": APIS,
        "server": openai_compat.SERVERS,
        "max_tokens_param": openai_compat.MAX_TOKENS_PARAMS,
        "truncated": TRUNCATED_MODES,
    },
    probe=model_list(
        "/models",
        lambda body: [m.get("id") for m in (body or {}).get("data") or []],
        describe=lambda body: {"server": openai_compat.server_from_models(body)},
    ),
    prices=OPENAI_PRICES,
)

__all__ = ["SPEC", "OpenAIConnector"]
