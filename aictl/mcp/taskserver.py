"""`aictl mcp serve --task ID --epoch N --owner O`: the server a run's agent gets, bound to its task and lease.

It refuses other task ids, and once the lease is fenced every tool answers the tool error "lease lost".
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from aictl import __version__
from aictl.domain.errors import AictlError
from aictl.mcp.ops import error_payload
from aictl.mcp.scoped import ScopedOps
from aictl.mcp.server import LOG_LEVEL, READ, TASK_FIELDS, WRITE, result, tool_error

OwnTask = Annotated[int | None, Field(description="Leave out: this server serves its own task only.")]


def build_task_server(ops: ScopedOps) -> MCPServer:
    mcp = MCPServer(
        name="aictl",
        version=__version__,
        log_level=LOG_LEVEL,
        instructions=(
            f"You are working on aictl task {ops.task_id} (lease epoch {ops.epoch}). Report progress, heartbeat on "
            "long work, attach evidence, return structured output, split work into subtasks, and message other "
            "tasks here. "
            "If a tool answers lease_lost, stop: the task was taken from you."
        ),
    )

    def call(fn: Any) -> CallToolResult:
        try:
            return result(fn())
        except AictlError as e:
            return tool_error(error_payload(e))

    @mcp.tool(annotations=READ, description="Your task: title, description, locks, status, lease.")
    async def get_task(task_id: OwnTask = None) -> CallToolResult:
        return call(lambda: ops.get_task(task_id))

    @mcp.tool(annotations=WRITE, description="Say what you are doing now, in one line (shown in `aictl task watch`).")
    async def report_progress(
        text: Annotated[str, Field(description="One line, e.g. 'running the tests'.")], task_id: OwnTask = None
    ) -> CallToolResult:
        return call(lambda: ops.report_progress(text, task_id))

    @mcp.tool(annotations=WRITE, description="Extend your lease (the run heartbeats for you; use it in long steps).")
    async def heartbeat(
        ttl: Annotated[float | None, Field(description="Lease seconds.", gt=0)] = None, task_id: OwnTask = None
    ) -> CallToolResult:
        return call(lambda: ops.heartbeat(ttl, task_id))

    @mcp.tool(
        annotations=WRITE,
        description="Attach evidence to your task: a log, a diff, a JUnit XML report "
        "(kind test_report). Secrets are redacted.",
    )
    async def attach_evidence(
        content: Annotated[str, Field(description="The evidence text.")],
        name: Annotated[str, Field(description="Name, e.g. pytest.xml.")],
        kind: Annotated[str, Field(description="diff, test_report, log, ...")] = "log",
        media_type: Annotated[str, Field(description="Media type.")] = "text/plain",
        task_id: OwnTask = None,
    ) -> CallToolResult:
        return call(lambda: ops.attach_evidence(content, name, kind, media_type, task_id))

    @mcp.tool(
        annotations=WRITE,
        description="Return your structured result (a JSON object) for whoever reads this "
        "task next; kept as evidence output.json.",
    )
    async def return_output(
        output: Annotated[dict[str, Any], Field(description="The result fields.")], task_id: OwnTask = None
    ) -> CallToolResult:
        return call(lambda: ops.return_output(output, task_id))

    @mcp.tool(
        annotations=WRITE,
        description=(
            "Split work off into subtasks of your task. They must lock only paths inside your task's locks and "
            "must not depend on your task; the policy decides `create`. " + TASK_FIELDS
        ),
    )
    async def create_subtasks(
        tasks: Annotated[list[dict[str, Any]], Field(description="The subtasks.", min_length=1)],
    ) -> CallToolResult:
        return call(lambda: ops.create_subtasks(tasks))

    @mcp.tool(
        annotations=WRITE,
        description="Send a message to another task (read by its running agent, or put "
        "into its next attempt's prompt) or to an AI.",
    )
    async def send_message(
        body: Annotated[str, Field(description="The message.")],
        to_task: Annotated[int | None, Field(description="Task id to send to.")] = None,
        to_ai: Annotated[str | None, Field(description="Or: an AI id.")] = None,
    ) -> CallToolResult:
        return call(lambda: ops.send_message(body, to_task, to_ai))

    @mcp.tool(
        annotations=WRITE,
        description="Ask a person before an action you may not take on your own (e.g. deleting a migration, running "
        "a deploy): name the action (read_path, write_path, delete_path, run_command, network, use_tool) and what "
        "it is for, then end your turn. The task waits for approval; once approved, the next attempt may do "
        "exactly that.",
    )
    async def request_approval(
        action: Annotated[str, Field(description="read_path, write_path, delete_path, run_command, network...")],
        reason: Annotated[str, Field(description="Why it is needed, for the person who decides.")],
        path: Annotated[str | None, Field(description="The repository path, for a path action.")] = None,
        command: Annotated[str | None, Field(description="The command line, for run_command.")] = None,
        host: Annotated[str | None, Field(description="The host, for network.")] = None,
        port: Annotated[int | None, Field(description="The port, for network.")] = None,
    ) -> CallToolResult:
        return call(lambda: ops.request_approval(action, reason, path, command, host, port))

    @mcp.tool(annotations=WRITE, description="Messages sent to your task (or your AI) not read yet; marks them read.")
    async def read_messages(task_id: OwnTask = None) -> CallToolResult:
        return call(lambda: ops.read_messages(task_id))

    return mcp
