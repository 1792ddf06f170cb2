"""The `ollama` connector: a local (or hosted) Ollama model through the official SDK, in aictl's tool loop.

Config: ``base_url`` (default http://127.0.0.1:11434), ``api_key_env`` (none
by default; set it for a hosted Ollama that wants a bearer token),
``max_tokens`` (Ollama's ``num_predict``), ``temperature``, ``num_ctx``,
``keep_alive``, ``max_turns``, ``prices`` (local models cost nothing unless
prices say otherwise). ``/api/chat`` is streamed (NDJSON); Ollama sends each
tool call whole, so it becomes an event as soon as its line arrives.

The ollama SDK has no retries and its errors carry no headers, so the
session records each response's headers (an httpx event hook) to honour
``retry-after`` on a 429 or 503.
"""

from __future__ import annotations

from typing import Any

from aictl.agents.connectors.apicommon import abort_response, connection_error, http_error, transport_errors
from aictl.agents.connectors.base import ConnectorResult, RunContext
from aictl.agents.connectors.openai_compat import estimate_tokens
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
from aictl.domain.errors import UsageError


class OllamaConnector:
    name = "ollama"

    def run(self, ctx: RunContext) -> ConnectorResult:
        return run_tool_loop(ctx, SPEC, open_session=_ChatSession)


class _ChatSession:
    def __init__(self, setup: Setup, run: LoopRun):
        key = run.key
        try:
            import ollama
        except ImportError as e:
            raise UsageError("the ollama connector needs the ollama package", hint="pip install ollama") from e
        self.sdk, self.setup, self.url, self.env = ollama, setup, run.base_url, run.key_env
        self.last_headers: dict[str, str] = {}
        self.response: Any = None  # the response being read, for abort_response
        headers = {"Authorization": f"Bearer {key}"} if key else None
        self.request_timeout = float(setup.config.get("request_timeout_s", 600.0))
        # kwargs beyond host/headers/timeout go to the httpx client: the hook keeps the headers ResponseError drops.
        self.client = ollama.Client(
            host=self.url, headers=headers, timeout=self.request_timeout, event_hooks={"response": [self._keep_headers]}
        )
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": setup.system}] if setup.system else []
        self.messages.append({"role": "user", "content": setup.prompt})
        self.tools = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in setup.tools
        ]
        self._assistant: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if setup.max_tokens:
            options["num_predict"] = setup.max_tokens
        if setup.temperature is not None:
            options["temperature"] = setup.temperature
        if setup.config.get("num_ctx"):
            options["num_ctx"] = setup.config["num_ctx"]
        self.options = options or None

    def _keep_headers(self, response: Any) -> None:
        self.response = response
        self.last_headers = dict(response.headers)

    def request(self, run: LoopRun, timeout: float) -> ModelTurn:
        turn = ModelTurn()
        text: list[str] = []
        raw_calls: list[dict[str, Any]] = []
        counted = False
        kwargs: dict[str, Any] = {
            "model": self.setup.model,
            "messages": self.messages,
            "stream": True,
            "options": self.options,
        }
        if self.tools:
            kwargs["tools"] = self.tools
        if self.setup.config.get("keep_alive") is not None:
            kwargs["keep_alive"] = self.setup.config["keep_alive"]
        sdk = self.sdk
        self.last_headers, self.response = {}, None
        try:
            # The SDK's stream is a generator that hides its response; the event hook caught it.
            with run.watch(lambda: abort_response(self.response)):
                for part in self.client.chat(**kwargs):
                    run.check()
                    message = part.message
                    if message is not None and message.content:
                        text.append(message.content)
                        run.delta(message.content)
                    for tc in (message.tool_calls or []) if message is not None else []:
                        if not raw_calls:
                            run.message("".join(text))
                        call = ToolCall(
                            id=f"call_{len(raw_calls) + 1}",
                            name=tc.function.name,
                            input=dict(tc.function.arguments or {}),
                        )
                        raw_calls.append({"function": {"name": call.name, "arguments": call.input}})
                        turn.calls.append(call)
                        run.tool_call(call)
                    if part.done:
                        turn.stop_reason, turn.model = part.done_reason, part.model
                        turn.truncated = part.done_reason == "length"
                        if part.prompt_eval_count is not None or part.eval_count is not None:
                            turn.usage = Usage(
                                input_tokens=part.prompt_eval_count or 0, output_tokens=part.eval_count or 0
                            )
                            counted = True
                run.check()  # a stream the watcher cut short may end as a clean EOF
        except sdk.ResponseError as e:
            status = e.status_code if e.status_code and e.status_code > 0 else None
            if status is None:  # an error line in the middle of the stream
                raise connection_error(RuntimeError(e.error), connector="ollama", base_url=self.url) from None
            raise http_error(
                status,
                connector="ollama",
                base_url=self.url,
                key_env=self.env,
                message=str(e.error),
                headers=self.last_headers,
                error_kind=SPEC.error_kind,
            ) from None
        except ConnectionError as e:  # the SDK's "Failed to connect to Ollama"
            raise connection_error(e, connector="ollama", base_url=self.url) from None
        except transport_errors() as e:
            timed_out = "Timeout" in type(e).__name__
            raise connection_error(e, connector="ollama", base_url=self.url, timed_out=timed_out) from None
        if not raw_calls:
            run.message("".join(text))
        turn.text = "".join(text)
        if not counted:  # no eval counts (a cut stream, a proxy): counted from the text, marked estimated
            turn.usage = Usage(
                input_tokens=estimate_tokens(self.messages, self.tools),
                output_tokens=estimate_tokens(turn.text, *[(c.name, c.input) for c in turn.calls]),
                estimated=True,
            )
        self._assistant = {"role": "assistant", "content": turn.text}
        if raw_calls:
            self._assistant["tool_calls"] = raw_calls
        return turn

    def add_results(self, turn: ModelTurn, results: list) -> None:
        self.messages.append(self._assistant)
        for call, outcome in results:
            self.messages.append({"role": "tool", "content": outcome.output or "(no output)", "tool_name": call.name})

    def add_continue(self, turn: ModelTurn, text: str) -> None:
        self.messages.append(self._assistant)
        self.messages.append({"role": "user", "content": text})

    def close(self) -> None:
        self.client.close()


def model_names(body: Any) -> list[str]:
    """The models in an /api/tags answer."""
    return [m.get("name") or m.get("model") for m in (body or {}).get("models") or []]


SPEC = ConnectorSpec(
    name="ollama",
    kind="sdk",
    factory=OllamaConnector,
    sdk_module="ollama",
    default_key_env=None,  # a hosted Ollama that wants a token: config api_key_env
    default_base_url="http://127.0.0.1:11434",
    url_strip=("/api", "/v1"),  # the SDK adds /api itself
    config_choices={"truncated": TRUNCATED_MODES},
    config_types={"temperature": (int, float), "num_ctx": (int,), "request_timeout_s": (int, float)},
    probe=model_list("/api/tags", model_names),
    local=True,
)

__all__ = ["SPEC", "OllamaConnector", "model_names"]
