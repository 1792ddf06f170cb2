"""MCP servers' tools in aictl's own tool loop (the API connectors): `mcp__<server>__<tool>`.

Each server gets one long-lived asyncio task on a private event-loop thread that holds the SDK's client open
(anyio cancel scopes must be entered and left by the same task) and serves calls from a queue; the loop's
thread calls in synchronously. Every call is first put to `decide(server, tool, args)`: the policy's `use_tool`,
recorded by the caller; a refusal is a tool error the model reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from aictl.agents.connectors.tools import ToolOutcome, ToolSpec, clip

PREFIX = "mcp__"
START_TIMEOUT_S = 60.0
Decide = Callable[[str, str, dict[str, Any]], tuple[bool, str]]


class McpUnavailable(Exception):
    """A configured MCP server did not start or answer."""


def tool_name(server: str, tool: str) -> str:
    return f"{PREFIX}{server}__{tool}"


class McpTools:
    def __init__(
        self, servers: dict[str, dict[str, Any]], *, decide: Decide | None = None, call_timeout_s: float = 300.0
    ):
        self.decide = decide
        self.call_timeout_s = call_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aictl-mcp-tools", daemon=True)
        self._thread.start()
        self._queues: dict[str, asyncio.Queue] = {}
        self._done: list[Future] = []
        self._specs: dict[str, tuple[str, str, ToolSpec]] = {}
        # stdio servers' stderr: a real file (the SDK hands it to the process), quoted when a server fails to start.
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in close()
        try:
            for server, entry in servers.items():
                ready: Future = Future()
                self._done.append(asyncio.run_coroutine_threadsafe(self._serve(server, entry, ready), self._loop))
                for tool in ready.result(timeout=START_TIMEOUT_S):
                    name = tool_name(server, tool.name)
                    self._specs[name] = (
                        server,
                        tool.name,
                        ToolSpec(
                            name,
                            f"[MCP server {server}] {tool.description or tool.name}",
                            tool.input_schema or {"type": "object", "properties": {}},
                        ),
                    )
        except Exception as e:  # noqa: BLE001 - any start failure (spawn, handshake, timeout) is the same refusal
            self.close()
            raise McpUnavailable(f"MCP server {server!r} did not start: {e}") from None

    def _stderr_tail(self) -> str:
        self._errlog.flush()
        self._errlog.seek(0)
        tail = self._errlog.read()[-1000:].strip()
        return f" (stderr: {tail})" if tail else ""

    def specs(self) -> list[ToolSpec]:
        return [spec for _, _, spec in self._specs.values()]

    def handles(self, name: str) -> bool:
        return name in self._specs

    def call(self, name: str, args: Any) -> ToolOutcome:
        server, tool, _ = self._specs[name]
        args = args if isinstance(args, dict) else {}
        if self.decide is not None:
            allowed, why = self.decide(server, tool, args)
            if not allowed:
                return ToolOutcome(False, why if why.startswith("policy:") else f"policy: use_tool {name}: {why}")
        answer: Future = Future()
        self._loop.call_soon_threadsafe(self._queues[server].put_nowait, (tool, args, answer))
        try:
            result = answer.result(timeout=self.call_timeout_s)
        except TimeoutError:
            return ToolOutcome(False, f"MCP server {server!r} did not answer {tool} within {self.call_timeout_s:g}s")
        except Exception as e:  # noqa: BLE001 - the server's failure is the model's tool error, not the run's
            return ToolOutcome(False, f"MCP server {server!r}: {e}")
        text = "\n".join(getattr(c, "text", None) or json.dumps(c.model_dump(mode="json")) for c in result.content)
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        return ToolOutcome(not result.is_error, clip(text))

    async def _serve(self, server: str, entry: dict[str, Any], ready: Future) -> None:
        from mcp import Client

        queue: asyncio.Queue = asyncio.Queue()
        self._queues[server] = queue
        try:
            async with Client(_transport(entry, self._errlog)) as client:
                ready.set_result((await client.list_tools()).tools)
                while (item := await queue.get()) is not None:
                    tool, args, answer = item
                    try:
                        answer.set_result(await client.call_tool(tool, args))
                    except Exception as e:  # noqa: BLE001 - handed to the caller's thread
                        answer.set_exception(e)
        except Exception as e:  # noqa: BLE001 - reported through `ready` (start) or to the waiting call
            if not ready.done():
                ready.set_exception(McpUnavailable(f"{e}{self._stderr_tail()}"))

    def close(self) -> None:
        for queue in self._queues.values():
            self._loop.call_soon_threadsafe(queue.put_nowait, None)
        for done in self._done:
            try:
                done.result(timeout=10)
            except Exception:  # noqa: BLE001 - closing: a server that will not stop is left to exit with us
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._errlog.close()


def _transport(entry: dict[str, Any], errlog: Any) -> Any:
    if "command" in entry:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=entry["command"], args=entry.get("args", []), env=entry.get("env") or None
        )
        return stdio_client(params, errlog=errlog)
    from mcp.client.streamable_http import streamable_http_client

    headers = {}
    if entry.get("bearer_token"):  # the run's own task server, served by this process (aictl.mcp.inproc)
        headers["Authorization"] = f"Bearer {entry['bearer_token']}"
    elif entry.get("bearer_token_env"):
        headers["Authorization"] = f"Bearer {os.environ.get(entry['bearer_token_env'], '')}"
    import httpx2

    return _HttpTransport(entry["url"], headers, streamable_http_client, httpx2)


class _HttpTransport:
    """streamable HTTP with headers: the SDK's client over an httpx2 client that carries the bearer token."""

    def __init__(self, url: str, headers: dict[str, str], connect: Any, httpx2: Any):
        self.url, self.headers, self.connect, self.httpx2 = url, headers, connect, httpx2

    async def __aenter__(self) -> Any:
        self._http = self.httpx2.AsyncClient(headers=self.headers, timeout=60)
        self._cm = self.connect(self.url, http_client=self._http)
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._cm.__aexit__(*exc)
        finally:
            await self._http.aclose()
