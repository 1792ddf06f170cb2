"""`aictl mcp serve`: aictl as an MCP server (stdio, or streamable HTTP behind a bearer token)."""

from typing import Annotated

import typer

from aictl.cli.context import state
from aictl.cli.options import noun_app

app = noun_app("Serve aictl's tasks, policy and audit log to agents and editors over the Model Context Protocol.")


@app.command("serve")
def serve(
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="Serve streamable HTTP on HOST:PORT (e.g. 127.0.0.1:8765; port 0 = any free) instead of "
            "stdio. A non-loopback HOST needs --token-env.",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        int | None,
        typer.Option(
            "--task",
            help="Serve only this task's run tools (progress, evidence, output, subtasks, messages) for the "
            "lease --epoch/--owner; what `task execute` gives its agent.",
            show_default=False,
        ),
    ] = None,
    epoch: Annotated[
        int | None, typer.Option("--epoch", help="With --task: the lease epoch.", show_default=False)
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option("--owner", help="With --task: the lease owner (default: AICTL_ACTOR).", show_default=False),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            help="Environment variable holding the bearer token(s), SECRET or NAME:SECRET[,...]; the "
            "caller acts as NAME. Checked on every HTTP request.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the tools (task create/list/ready/get/claim/heartbeat/start/complete/fail/release/attach/diff, route,
    policy explain, audit log/verify), resources (aictl://task/ID, aictl://policy, aictl://audit/tail) and the
    plan_spec prompt. Over stdio the caller is AICTL_ACTOR.

    Claude Code: claude mcp add aictl -- aictl mcp serve
    """
    from aictl.domain.errors import UsageError
    from aictl.mcp.http import load_tokens, parse_bind, serve_http
    from aictl.mcp.ops import Ops
    from aictl.mcp.server import build_server

    if token_env and not http:
        raise UsageError("--token-env is for --http (stdio has no tokens: the caller is AICTL_ACTOR)")
    settings = state.settings()
    if task is not None or epoch is not None:
        if task is None or epoch is None:
            raise UsageError("--task and --epoch go together", hint="aictl mcp serve --task 7 --epoch 2 --owner w1")
        from aictl.mcp.scoped import ScopedOps
        from aictl.mcp.taskserver import build_task_server

        server = build_task_server(
            ScopedOps(
                state.store(), settings, gate=state.gate(), task_id=task, epoch=epoch, owner=owner or settings.actor
            )
        )
    else:
        server = build_server(Ops(state.store(), settings, gate=state.gate()))
    if http:
        host, port = parse_bind(http)
        serve_http(server, host, port, load_tokens(token_env, settings.actor))
    else:
        server.run("stdio")
