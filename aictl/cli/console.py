"""`aictl console`: the operator's web page (queue, agents, approvals, tasks, audit, usage) and /metrics."""

from typing import Annotated

import typer

from aictl.cli.context import state


def console(
    host: Annotated[str, typer.Option("--host", help="Address to bind; not loopback needs AICTL_CONSOLE_TOKEN.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 8470,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Serve no route that changes anything (no approve/reject).")
    ] = False,
) -> None:
    """Serve the console: live views of the queue, agents, approvals, tasks, audit and usage; /metrics.

    Loopback by default. Any other address needs a bearer token in AICTL_CONSOLE_TOKEN (SECRET or
    NAME:SECRET pairs, comma-separated); a browser logs in once at /login?token=…. Approve and reject
    are the same service calls as `aictl task approve/reject`, policy-checked, as the console's user.
    """
    from aictl.console.server import serve

    state.store()  # the project's store must exist (and be this project's) before anything listens
    serve(state.settings(), host=host, port=port, read_only=read_only)
