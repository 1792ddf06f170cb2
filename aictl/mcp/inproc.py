"""Each run's task-scoped MCP server, served from the executor's own process over loopback HTTP.

The alternative, `aictl mcp serve --task` as a stdio subprocess of the agent, had two costs: a Python
process per run (1-4 s before the agent's first tool list), and the store's URL (with a PostgreSQL password)
in the server's environment and in the agent's MCP config file, both readable by the agent. Here the agent
gets a URL on 127.0.0.1 and a per-run bearer token that opens only its own task's tools for its own lease
epoch; the store's credentials stay in this process. The token reaches the agent as an environment variable
(AICTL_TASK_TOKEN, named in the MCP config, which Claude Code and Codex expand) and is registered with the
redactor, so no log, transcript or evidence shows it.

One uvicorn server per run, on its own thread and event loop, with its own store connection (a connection
stays on the thread that opened it); stopped when the run ends.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aictl.domain.errors import AictlError

TOKEN_ENV = "AICTL_TASK_TOKEN"
START_TIMEOUT_S = 30.0


class TaskServerUnavailable(AictlError):
    code = "task_server_unavailable"


class InProcessTaskServers:
    """What the executor is given (`Executor(task_servers=...)`) by the CLI and the daemon."""

    def __init__(self, settings: Any, gate: Any):
        self.settings, self.gate = settings, gate

    @contextmanager
    def serve(self, task_id: int, epoch: int, owner: str) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
        """(MCP server entry, env for the agent) while the run lasts."""
        from aictl.domain.redact import register

        token = secrets.token_urlsafe(32)
        register(token)
        server = _Server(self.settings, self.gate, task_id, epoch, owner, token)
        url = server.start()
        try:
            entry = {"url": url, "bearer_token_env": TOKEN_ENV, "bearer_token": token}
            yield entry, {TOKEN_ENV: token}
        finally:
            server.stop()


class _Server:
    def __init__(self, settings: Any, gate: Any, task_id: int, epoch: int, owner: str, token: str):
        self.settings, self.gate = settings, gate
        self.task_id, self.epoch, self.owner, self.token = task_id, epoch, owner, token
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.server: Any = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)  # listening before the URL is handed out: the agent may connect at once
        self.thread = threading.Thread(target=self._run, name=f"aictl-task-server-{task_id}", daemon=True)

    def start(self) -> str:
        self.thread.start()
        if not self.ready.wait(START_TIMEOUT_S) or self.error is not None:
            self.stop()
            raise TaskServerUnavailable(f"the task server for task {self.task_id} did not start: {self.error}")
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"

    def _run(self) -> None:
        import anyio
        import uvicorn

        from aictl.mcp.http import BearerAuth
        from aictl.mcp.scoped import ScopedOps
        from aictl.mcp.taskserver import build_task_server
        from aictl.store import open_store

        store = None
        try:
            store = open_store(self.settings.resolved_database_url, busy_timeout_ms=self.settings.busy_timeout_ms)
            ops = ScopedOps(
                store, self.settings, gate=self.gate, task_id=self.task_id, epoch=self.epoch, owner=self.owner
            )
            mcp = build_task_server(ops)
            app = BearerAuth(mcp.streamable_http_app(host="127.0.0.1"), {self.token: self.owner})
            self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
            self.ready.set()
            anyio.run(lambda: self.server.serve(sockets=[self.sock]))
        except BaseException as e:  # noqa: BLE001 - reported to start(); the run goes on without its task server
            self.error = e
            self.ready.set()
        finally:
            if store is not None:
                store.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.sock.close()
