"""A scripted model provider that speaks the real wire protocols, for tests.

One HTTP server answers as Anthropic (Messages, SSE or JSON), OpenAI (Chat
Completions and Responses, SSE or JSON) and Ollama (/api/chat NDJSON or JSON,
/api/tags, /api/show, /api/version), so the real SDKs and the real agent CLIs
can be pointed at it by base URL:

    with FakeProvider() as fp:
        fp.script(reply(text="writing", tools=[tool("write_file", {"path": "a.txt", "content": "hi"})]),
                  reply(text="done"))
        ...  # point a client at fp.url
        assert fp.requests[-1].protocol == "anthropic"

A script is protocol-neutral: each model request that offers tools takes the
next turn and the server renders it in the protocol the request arrived on.
Requests that offer no tools (Claude Code's title generation, quota probes)
get a short text answer and leave the script alone. When the script is empty,
`respond(recorded)` decides, else a plain "done." is returned.

`quirks` make the Chat Completions side (and Ollama's) behave like the
OpenAI-compatible servers that differ from OpenAI (see QUIRKS; LLAMA_CPP is
the set llama-cpp-python 0.3.36 shows), and `owned_by` is what GET /v1/models
says owns the models (how aictl tells the servers apart).

Nothing here is a mock of aictl: it is the other side of the wire.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Server quirks, by name:
QUIRKS = frozenset(
    {
        "no_stream_usage",  # ignores stream_options.include_usage: no usage while streaming
        "no_usage",  # reports no usage at all, streamed or not
        "timings",  # llama.cpp's own server: `timings` (prompt_n, predicted_n) in the last chunk, no usage
        "repeat_id_name",  # id and function.name again in every chunk of a streamed tool call
        "split_args",  # arguments streamed in 1-5 character pieces, split anywhere
        "interleave",  # the chunks of several tool calls interleaved by index
        "ignore_max_completion_tokens",  # only max_tokens limits the answer
        "no_eval_count",  # Ollama: the final line carries no prompt_eval_count / eval_count
    }
)
LLAMA_CPP = frozenset({"no_stream_usage", "repeat_id_name", "split_args", "ignore_max_completion_tokens"})

DEFAULT_MODELS = ["claude-sonnet-5", "claude-haiku-4-5", "gpt-5.5", "gpt-4.1-mini", "llama3.2:3b", "qwen2.5-coder:7b"]


# -- the script ---------------------------------------------------------------------------------


@dataclass
class ToolCall:
    name: str
    input: Any  # dict for function tools; str for a custom (freeform) tool such as Codex's apply_patch
    id: str | None = None


@dataclass
class Reply:
    text: str = ""
    tools: list[ToolCall] = field(default_factory=list)
    usage: tuple[int, int] | None = None  # (input_tokens, output_tokens); estimated when None
    delay_s: float = 0.0  # pause between streamed events (timeouts, cancellation, live progress)
    stop: str | None = None  # override the stop reason (e.g. "max_tokens")


@dataclass
class Error:
    status: int
    message: str = ""
    retry_after: float | None = None
    kind: str | None = None  # protocol error type; derived from status when None
    reset_at: float | None = None  # unix time a rate limit resets (sent as provider headers)


Turn = Reply | Error


def reply(
    text: str = "",
    tools: list[ToolCall] | None = None,
    *,
    usage: tuple[int, int] | None = None,
    delay_s: float = 0.0,
    stop: str | None = None,
) -> Reply:
    return Reply(text=text, tools=list(tools or []), usage=usage, delay_s=delay_s, stop=stop)


def tool(name: str, input: Any = None, *, id: str | None = None) -> ToolCall:
    return ToolCall(name=name, input={} if input is None else input, id=id)


def error(
    status: int,
    message: str = "",
    *,
    retry_after: float | None = None,
    kind: str | None = None,
    reset_at: float | None = None,
) -> Error:
    return Error(status=status, message=message, retry_after=retry_after, kind=kind, reset_at=reset_at)


@dataclass
class Recorded:
    """One request as the server saw it."""

    protocol: str  # anthropic | openai-chat | openai-responses | ollama | models | other
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON (None when not JSON)
    tools: list[str]  # names of the tools the request offered
    stream: bool
    turn: Turn | None = None  # what it was answered with
    ts: float = 0.0

    @property
    def messages(self) -> list[Any]:
        if not isinstance(self.body, dict):
            return []
        return self.body.get("messages") or self.body.get("input") or []


# -- the server ---------------------------------------------------------------------------------


class FakeProvider:
    def __init__(
        self,
        *,
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        consume: Callable[[Recorded], bool] | None = None,
        model_sizes: dict[str, int] | None = None,
        quirks: frozenset[str] | set[str] = frozenset(),
        owned_by: str = "openai",
    ):
        unknown = set(quirks) - QUIRKS
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
        self.quirks = frozenset(quirks)
        self.owned_by = owned_by
        self.models = list(models or DEFAULT_MODELS)
        self.model_sizes = dict(model_sizes or {})  # ollama model name -> bytes (for /api/tags and GPU fit)
        self.requests: list[Recorded] = []
        self.respond: Callable[[Recorded], Turn] | None = None
        self.consume = consume or (lambda rec: bool(rec.tools))
        self._script: list[Turn] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = _Server((host, port), _Handler)
        self._server.provider = self
        self._thread: threading.Thread | None = None

    # lifecycle
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProvider:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # scripting
    def script(self, *turns: Turn) -> FakeProvider:
        with self._lock:
            self._script.extend(turns)
        return self

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def calls(self, protocol: str | None = None) -> list[Recorded]:
        """Model requests (not model lists or probes), optionally of one protocol."""
        return [
            r
            for r in list(self.requests)
            if r.protocol in ("anthropic", "openai-chat", "openai-responses", "ollama")
            and (protocol is None or r.protocol == protocol)
        ]

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{uuid.uuid4().hex[:12]}"

    def _turn_for(self, rec: Recorded) -> Turn:
        with self._lock:
            if self.consume(rec) and self._script:
                return self._script.pop(0)
        if self.respond is not None and rec.tools:
            return self.respond(rec)
        return reply(text="done." if rec.tools else "Task")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    provider: FakeProvider


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).isoformat().replace("+00:00", "Z")


def _estimate_tokens(obj: Any) -> int:
    return max(1, len(json.dumps(obj, default=str)) // 4) if obj else 1


def _tool_names(protocol: str, body: dict[str, Any]) -> list[str]:
    names = []
    for t in body.get("tools") or []:
        if not isinstance(t, dict):
            continue
        if "function" in t and isinstance(t["function"], dict):  # chat / ollama
            names.append(t["function"].get("name", ""))
        elif "name" in t:  # anthropic, responses function/custom tools
            names.append(t["name"])
        elif t.get("type"):  # responses built-ins (web_search, local_shell…)
            names.append(t["type"])
    return names


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Without this every streamed event waits on Nagle + delayed ACK (~40 ms per call).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # routing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._send_json(200, {})

    def _dispatch(self, method: str) -> None:
        fp = self.server.provider
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        protocol = {
            "/v1/messages": "anthropic",
            "/v1/chat/completions": "openai-chat",
            "/chat/completions": "openai-chat",
            "/v1/responses": "openai-responses",
            "/responses": "openai-responses",
            "/api/chat": "ollama",
        }.get(
            path,
            "models"
            if path in ("/v1/models", "/models", "/api/tags", "/api/show", "/api/version", "/v1/messages/count_tokens")
            else "other",
        )
        bd = body if isinstance(body, dict) else {}
        stream = bool(bd.get("stream", protocol == "ollama"))  # ollama streams unless told not to
        rec = Recorded(
            protocol=protocol,
            method=method,
            path=path,
            query=parse_qs(parts.query),
            headers=headers,
            body=body,
            tools=_tool_names(protocol, bd),
            stream=stream,
            ts=time.time(),
        )
        fp.requests.append(rec)
        try:
            if protocol == "models":
                return self._models(path, headers, bd)
            if protocol == "other":
                return self._send_json(404, {"error": {"message": f"fake provider: no route {method} {path}"}})
            turn = fp._turn_for(rec)
            rec.turn = turn
            if isinstance(turn, Error):
                return self._error(protocol, turn)
            model = bd.get("model") or fp.models[0]
            render = {
                "anthropic": self._anthropic,
                "openai-chat": self._chat,
                "openai-responses": self._responses,
                "ollama": self._ollama,
            }[protocol]
            render(turn, model, bd, stream)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (cancel, timeout): nothing to answer

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    # plumbing
    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:20])
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex[:20])
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:20])
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _sse(self, events: list[tuple[str | None, Any]], delay_s: float) -> None:
        self._start_stream("text/event-stream; charset=utf-8")
        for name, data in events:
            if delay_s:
                time.sleep(delay_s)
            payload = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
            self._chunk(frame.encode())
        self._end_stream()

    # errors
    def _error(self, protocol: str, e: Error) -> None:
        headers: dict[str, str] = {}
        if e.retry_after is not None:
            headers["retry-after"] = f"{e.retry_after:g}"
            headers["retry-after-ms"] = str(int(e.retry_after * 1000))
        if e.reset_at is not None:
            if protocol == "anthropic":
                iso = _now_iso(e.reset_at)
                headers["anthropic-ratelimit-requests-reset"] = iso
                headers["anthropic-ratelimit-tokens-reset"] = iso
                headers["anthropic-ratelimit-unified-reset"] = str(int(e.reset_at))
            else:
                headers["x-ratelimit-reset-requests"] = f"{max(0.0, e.reset_at - time.time()):.0f}s"
        headers["x-should-retry"] = "false" if e.status in (400, 401, 403, 404) else "true"
        if protocol == "anthropic":
            kind = e.kind or {
                400: "invalid_request_error",
                401: "authentication_error",
                403: "permission_error",
                404: "not_found_error",
                413: "request_too_large",
                429: "rate_limit_error",
                529: "overloaded_error",
            }.get(e.status, "api_error")
            msg = e.message or {
                "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
                "authentication_error": "invalid x-api-key",
                "overloaded_error": "Overloaded",
            }.get(kind, "Internal server error")
            body: Any = {
                "type": "error",
                "error": {"type": kind, "message": msg},
                "request_id": "req_" + uuid.uuid4().hex[:20],
            }
        elif protocol == "ollama":
            body = {
                "error": e.message
                or {
                    401: "unauthorized",
                    404: "model not found",
                    429: "too many requests",
                    503: "server busy, please try again",
                }.get(e.status, "internal error")
            }
        else:
            code, kind = {
                401: ("invalid_api_key", "invalid_request_error"),
                429: ("rate_limit_exceeded", "requests"),
                500: ("server_error", "server_error"),
                503: ("overloaded", "server_error"),
            }.get(e.status, (None, "server_error"))
            kind = e.kind or kind
            msg = e.message or {
                401: "Incorrect API key provided.",
                429: "Rate limit reached for requests. Please try again later.",
            }.get(e.status, "The server had an error while processing your request.")
            body = {"error": {"message": msg, "type": kind, "param": None, "code": code}}
        self._send_json(e.status, body, headers)

    # model lists and probes
    def _models(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        fp = self.server.provider
        if path == "/api/version":
            return self._send_json(200, {"version": "0.6.3"})
        if path == "/api/tags":
            return self._send_json(
                200,
                {
                    "models": [
                        {
                            "name": m,
                            "model": m,
                            "modified_at": _now_iso(),
                            "size": fp.model_sizes.get(m, 2_019_393_189),
                            "digest": uuid.uuid5(uuid.NAMESPACE_URL, m).hex * 2,
                            "details": {
                                "format": "gguf",
                                "family": "llama",
                                "families": ["llama"],
                                "parameter_size": "3.2B",
                                "quantization_level": "Q4_K_M",
                                "parent_model": "",
                            },
                        }
                        for m in fp.models
                    ]
                },
            )
        if path == "/api/show":
            name = body.get("model") or body.get("name")
            if name not in fp.models:
                return self._send_json(404, {"error": f"model '{name}' not found"})
            return self._send_json(
                200,
                {
                    "modelfile": "",
                    "parameters": "",
                    "template": "{{ .Prompt }}",
                    "details": {
                        "format": "gguf",
                        "family": "llama",
                        "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M",
                    },
                    "model_info": {"general.parameter_count": 3_212_749_888, "general.size": fp.model_sizes.get(name)},
                    "capabilities": ["completion", "tools"],
                    "modified_at": _now_iso(),
                },
            )
        if path == "/v1/messages/count_tokens":
            return self._send_json(200, {"input_tokens": _estimate_tokens(body.get("messages"))})
        if "anthropic-version" in headers or "x-api-key" in headers:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": _now_iso()} for m in fp.models]
            return self._send_json(
                200,
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                },
            )
        return self._send_json(
            200,
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": int(time.time()), "owned_by": fp.owned_by}
                    for m in fp.models
                ],
            },
        )

    # usage
    @staticmethod
    def _usage(turn: Reply, body: dict[str, Any]) -> tuple[int, int]:
        if turn.usage:
            return turn.usage
        out = max(1, len(turn.text) // 4) + sum(_estimate_tokens(t.input) for t in turn.tools)
        return _estimate_tokens(body.get("messages") or body.get("input")), out

    # Anthropic Messages
    def _anthropic(self, turn: Reply, model: str, body: dict[str, Any], stream: bool) -> None:
        fp = self.server.provider
        msg_id = fp.next_id("msg_")
        inp, out = self._usage(turn, body)
        blocks: list[dict[str, Any]] = []
        if turn.text:
            blocks.append({"type": "text", "text": turn.text})
        for t in turn.tools:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": t.id or fp.next_id("toolu_"),
                    "name": t.name,
                    "input": t.input if isinstance(t.input, dict) else {"input": t.input},
                }
            )
        stop = turn.stop or ("tool_use" if turn.tools else "end_turn")
        usage = {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        }
        if not stream:
            return self._send_json(
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
        events: list[tuple[str | None, Any]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {**usage, "output_tokens": 1},
                    },
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                events.append(
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                    )
                )
                for piece in _pieces(b["text"]):
                    events.append(
                        (
                            "content_block_delta",
                            {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}},
                        )
                    )
            else:
                events.append(
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}},
                        },
                    )
                )
                for piece in _pieces(json.dumps(b["input"])):
                    events.append(
                        (
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {"type": "input_json_delta", "partial_json": piece},
                            },
                        )
                    )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": out},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        self._sse(events, turn.delay_s)

    # OpenAI Chat Completions
    def _chat(self, turn: Reply, model: str, body: dict[str, Any], stream: bool) -> None:
        fp = self.server.provider
        quirks = fp.quirks
        cid, created = fp.next_id("chatcmpl-"), int(time.time())
        limit = body.get("max_tokens")
        if limit is None and "ignore_max_completion_tokens" not in quirks:
            limit = body.get("max_completion_tokens")
        if isinstance(limit, int) and turn.text and len(turn.text) // 4 > limit:  # the answer cut at the limit
            turn = Reply(text=turn.text[: limit * 4], usage=turn.usage, delay_s=turn.delay_s, stop="length")
        inp, out = self._usage(turn, body)
        calls = [
            {
                "id": t.id or fp.next_id("call_"),
                "type": "function",
                "function": {
                    "name": t.name,
                    "arguments": json.dumps(t.input) if not isinstance(t.input, str) else t.input,
                },
            }
            for t in turn.tools
        ]
        finish = turn.stop or ("tool_calls" if calls else "stop")
        usage = {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        timings = {"prompt_n": inp, "predicted_n": out, "cache_n": 0, "predicted_per_second": 50.0}
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            whole: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "system_fingerprint": "fp_fake",
            }
            if "timings" in quirks:
                whole["timings"] = timings
            elif "no_usage" not in quirks:
                whole["usage"] = usage
            return self._send_json(200, whole)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }

        events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
        for piece in _pieces(turn.text):
            events.append((None, chunk({"content": piece})))
        per_call = [self._call_deltas(i, c, quirks) for i, c in enumerate(calls)]
        if "interleave" in quirks:  # round robin over the calls' chunks
            ordered = [d for group in itertools.zip_longest(*per_call) for d in group if d is not None]
        else:
            ordered = [d for deltas in per_call for d in deltas]
        events += [(None, chunk({"tool_calls": [d]})) for d in ordered]
        last = chunk({}, finish)
        if "timings" in quirks:
            last["timings"] = timings
        events.append((None, last))
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and not quirks & {"no_stream_usage", "no_usage", "timings"}:
            events.append(
                (
                    None,
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    },
                )
            )
        events.append((None, "[DONE]"))
        self._sse(events, turn.delay_s)

    @staticmethod
    def _call_deltas(index: int, call: dict[str, Any], quirks: frozenset[str]) -> list[dict[str, Any]]:
        """One tool call's deltas: OpenAI's shape (id and name once), or the servers' quirks."""
        args = call["function"]["arguments"]
        pieces = _split_anywhere(args) if "split_args" in quirks else _pieces(args)
        head = {"index": index, "id": call["id"], "type": "function"}
        name = call["function"]["name"]
        if "repeat_id_name" in quirks:
            return [{**head, "function": {"name": name, "arguments": p}} for p in pieces or [""]]
        first = {**head, "function": {"name": name, "arguments": ""}}
        return [first] + [{"index": index, "function": {"arguments": p}} for p in pieces]

    # OpenAI Responses
    def _responses(self, turn: Reply, model: str, body: dict[str, Any], stream: bool) -> None:
        fp = self.server.provider
        rid, created = fp.next_id("resp_"), int(time.time())
        inp, out = self._usage(turn, body)
        custom = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "custom"}
        items: list[dict[str, Any]] = []
        if turn.text:
            items.append(
                {
                    "id": fp.next_id("msg_"),
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}],
                }
            )
        for t in turn.tools:
            call_id = t.id or fp.next_id("call_")
            if t.name in custom:
                text = t.input if isinstance(t.input, str) else t.input.get("input", json.dumps(t.input))
                items.append(
                    {
                        "id": fp.next_id("ctc_"),
                        "type": "custom_tool_call",
                        "status": "completed",
                        "call_id": call_id,
                        "name": t.name,
                        "input": text,
                    }
                )
            else:
                args = t.input if isinstance(t.input, str) else json.dumps(t.input)
                items.append(
                    {
                        "id": fp.next_id("fc_"),
                        "type": "function_call",
                        "status": "completed",
                        "call_id": call_id,
                        "name": t.name,
                        "arguments": args,
                    }
                )
        usage = {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }

        # A turn scripted to stop at the token limit ends "incomplete", as the Responses API reports it.
        final_status = "incomplete" if turn.stop in ("length", "max_tokens", "max_output_tokens") else "completed"

        def response(status: str, output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": status,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "store": bool(body.get("store", False)),
                "temperature": 1.0,
                "text": {"format": {"type": "text"}},
                "tool_choice": "auto",
                "tools": [],
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": usage if with_usage else None,
                "user": None,
                "metadata": {},
            }

        if not stream:
            return self._send_json(200, response(final_status, items, True))
        seq = itertools.count()
        events: list[tuple[str | None, Any]] = []

        def ev(name: str, **data: Any) -> None:
            events.append((name, {"type": name, "sequence_number": next(seq), **data}))

        ev("response.created", response=response("in_progress", [], False))
        ev("response.in_progress", response=response("in_progress", [], False))
        for idx, item in enumerate(items):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "content": []},
                )
                ev(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=idx,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
                for piece in _pieces(text):
                    ev(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=idx,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                ev(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=idx,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
                ev(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=idx,
                    content_index=0,
                    part=item["content"][0],
                )
            elif item["type"] == "function_call":
                ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
                for piece in _pieces(item["arguments"]):
                    ev("response.function_call_arguments.delta", item_id=item["id"], output_index=idx, delta=piece)
                ev(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=idx,
                    arguments=item["arguments"],
                )
            else:
                ev("response.output_item.added", output_index=idx, item={**item, "status": "in_progress", "input": ""})
                for piece in _pieces(item["input"]):
                    ev("response.custom_tool_call_input.delta", item_id=item["id"], output_index=idx, delta=piece)
                ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=idx, input=item["input"])
            ev("response.output_item.done", output_index=idx, item=item)
        ev(f"response.{final_status}", response=response(final_status, items, True))
        self._sse(events, turn.delay_s)

    # Ollama
    def _ollama(self, turn: Reply, model: str, body: dict[str, Any], stream: bool) -> None:
        inp, out = self._usage(turn, body)
        calls = [
            {"function": {"name": t.name, "arguments": t.input if isinstance(t.input, dict) else {"input": t.input}}}
            for t in turn.tools
        ]
        final: dict[str, Any] = {
            "model": model,
            "created_at": _now_iso(),
            "done": True,
            "done_reason": turn.stop or "stop",
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": inp,
            "prompt_eval_duration": 200_000,
            "eval_count": out,
            "eval_duration": 700_000,
        }
        if "no_eval_count" in self.server.provider.quirks:
            for k in ("prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"):
                del final[k]
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": turn.text}
            if calls:
                message["tool_calls"] = calls
            return self._send_json(200, {**final, "message": message})
        self._start_stream("application/x-ndjson")
        lines = [
            {
                "model": model,
                "created_at": _now_iso(),
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
            for piece in _pieces(turn.text)
        ]
        if calls:  # Ollama sends tool calls whole, in one chunk
            lines.append(
                {
                    "model": model,
                    "created_at": _now_iso(),
                    "message": {"role": "assistant", "content": "", "tool_calls": calls},
                    "done": False,
                }
            )
        lines.append({**final, "message": {"role": "assistant", "content": ""}})
        for line in lines:
            if turn.delay_s:
                time.sleep(turn.delay_s)
            self._chunk((json.dumps(line) + "\n").encode())
        self._end_stream()


def _split_anywhere(text: str) -> list[str]:
    """Pieces of 1 to 5 characters: splits inside keys, escapes and multi-byte characters' JSON escapes."""
    sizes, out, i = itertools.cycle((1, 3, 2, 5, 1, 4)), [], 0
    while i < len(text):
        n = next(sizes)
        out.append(text[i : i + n])
        i += n
    return out


def _pieces(text: str, size: int = 24) -> list[str]:
    """Split streamed text the way providers do: several deltas, not one."""
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


__all__ = [
    "DEFAULT_MODELS",
    "LLAMA_CPP",
    "QUIRKS",
    "Error",
    "FakeProvider",
    "Recorded",
    "Reply",
    "ToolCall",
    "error",
    "reply",
    "tool",
]
