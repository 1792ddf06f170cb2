"""The `anthropic` connector: a Claude model through the Messages API (official SDK), in aictl's tool loop.

Config (``aictl ai register … --connector anthropic``): ``base_url`` (default
https://api.anthropic.com; a trailing /v1 is dropped, the SDK adds it),
``api_key_env`` (default ANTHROPIC_API_KEY), ``max_tokens`` (default 8192),
``temperature``, ``max_turns``, ``prices`` and the loop's retry settings
(see toolloop.py). Responses are streamed (SSE); each text or tool_use block
becomes an event as soon as it is complete.
"""

from __future__ import annotations

from typing import Any

from aictl.agents.connectors.apicommon import abort_response, sdk_errors, shared_ssl_context
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
from aictl.agents.pricing import ANTHROPIC_PRICES
from aictl.domain.errors import UsageError

API_VERSION = "2023-06-01"


class AnthropicConnector:
    name = "anthropic"

    def run(self, ctx: RunContext) -> ConnectorResult:
        return run_tool_loop(ctx, SPEC, open_session=_MessagesSession)


class _MessagesSession:
    def __init__(self, setup: Setup, run: LoopRun):
        try:
            import anthropic
        except ImportError as e:
            raise UsageError("the anthropic connector needs the anthropic package", hint="pip install anthropic") from e
        self.sdk, self.setup, self.url, self.env = anthropic, setup, run.base_url, run.key_env
        # Retries are the loop's (toolloop._Retry), so the SDK makes exactly one attempt per call.
        http = anthropic.DefaultHttpxClient(verify=shared_ssl_context(anthropic.DefaultHttpxClient))
        self.client = anthropic.Anthropic(api_key=run.key, base_url=self.url, max_retries=0, http_client=http)
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": setup.prompt}]
        self.tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in setup.tools]
        self._content: list[dict[str, Any]] = []

    def request(self, run: LoopRun, timeout: float) -> ModelTurn:
        s = self.setup
        kwargs: dict[str, Any] = {
            "model": s.model,
            "max_tokens": s.max_tokens,
            "messages": self.messages,
            "timeout": timeout,
        }
        if s.system:
            kwargs["system"] = s.system
        if self.tools:
            kwargs["tools"] = self.tools
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        turn = ModelTurn()
        with (
            sdk_errors(
                self.sdk, connector="anthropic", base_url=self.url, key_env=self.env, error_kind=SPEC.error_kind
            ),
            self.client.messages.stream(**kwargs) as stream,
            run.watch(lambda: abort_response(stream.response)),
        ):
            for event in stream:
                run.check()
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    run.delta(event.delta.text)
                if event.type != "content_block_stop":
                    continue
                block = event.content_block
                if block.type == "text":
                    run.message(block.text)
                elif block.type == "tool_use":
                    call = ToolCall(id=block.id, name=block.name, input=block.input)
                    turn.calls.append(call)
                    run.tool_call(call)
            run.check()  # a stream the watcher cut short may end as a clean EOF
            message = stream.get_final_message()
        self._content = []
        texts = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
                self._content.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                self._content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
            elif block.type == "thinking":
                self._content.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
        u = message.usage
        turn.text = "\n".join(texts)
        turn.usage = Usage(
            input_tokens=u.input_tokens or 0,
            output_tokens=u.output_tokens or 0,
            cache_read_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
            cache_write_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
        )
        turn.stop_reason, turn.model = message.stop_reason, message.model
        turn.truncated = message.stop_reason == "max_tokens"
        return turn

    def add_results(self, turn: ModelTurn, results: list) -> None:
        self.messages.append({"role": "assistant", "content": self._content})
        self.messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": outcome.output or "(no output)",
                        **({} if outcome.ok else {"is_error": True}),
                    }
                    for call, outcome in results
                ],
            }
        )

    def add_continue(self, turn: ModelTurn, text: str) -> None:
        if self._content:
            self.messages.append({"role": "assistant", "content": self._content})
        self.messages.append({"role": "user", "content": text})

    def close(self) -> None:
        self.client.close()


SPEC = ConnectorSpec(
    name="anthropic",
    kind="sdk",
    factory=AnthropicConnector,
    sdk_module="anthropic",
    default_key_env="ANTHROPIC_API_KEY",
    default_base_url="https://api.anthropic.com",
    url_strip=("/v1",),  # the SDK adds /v1 itself
    defaults={"max_tokens": 8192},
    config_choices={"truncated": TRUNCATED_MODES},
    config_types={"temperature": (int, float)},
    probe=model_list(
        "/v1/models?limit=1000",
        lambda body: [m.get("id") for m in (body or {}).get("data") or []],
        lambda key: {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})},
    ),
    prices=ANTHROPIC_PRICES,
)

__all__ = ["SPEC", "AnthropicConnector"]
