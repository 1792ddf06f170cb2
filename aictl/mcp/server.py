"""`aictl mcp serve`: the tools, resources and prompt of aictl's MCP server, on the SDK's MCPServer.

Tools are async and call the (synchronous) services on the event loop's thread: the store holds one
connection that must stay on one thread, and every call is a few milliseconds of SQLite or PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from aictl import __version__
from aictl.domain.errors import AictlError
from aictl.mcp.ops import Ops, error_payload, jsonable

INSTRUCTIONS = (
    "aictl is the control plane for AI coding agents on this repository: a queue of tasks with leases, path "
    "locks and dependencies, a policy that decides every action, and a hash-chained audit log. Claim a task, "
    "start it, do the work, then complete (or fail/release) it with the owner and lease epoch the claim returned. "
    "A tool error carries aictl's code, message, hint and exit_class."
)
# The SDK logs every refused call at INFO on stderr; the caller already gets the error, and a client that never
# reads the server's stderr pipe would block it once the pipe fills.
LOG_LEVEL: Final = "WARNING"
ACTOR_SCOPE_KEY = "aictl.actor"  # set by the HTTP token check (http.py): the token's name

TaskId = Annotated[int, Field(description="Task id.", ge=1)]
Epoch = Annotated[int, Field(description="Lease epoch returned by task_claim (fences stale holders).", ge=1)]
Owner = Annotated[str | None, Field(description="Lease owner (default: the caller's identity).")]
READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False)


def result(value: Any) -> CallToolResult:
    value = jsonable(value)
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(value, ensure_ascii=False))],
        structured_content=value if isinstance(value, dict) else {"result": value},
    )


def tool_error(payload: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps({"error": payload}, ensure_ascii=False))],
        structured_content={"error": payload},
        is_error=True,
    )


def caller(ops: Ops, ctx: Context | None) -> Ops:
    """The caller's view: over HTTP the token's name, else the server's actor (AICTL_ACTOR)."""
    request = ctx.request_context.request if ctx is not None else None
    actor = getattr(request, "scope", {}).get(ACTOR_SCOPE_KEY) if request is not None else None
    return ops.for_actor(actor) if actor else ops


def call(ops: Ops, ctx: Context | None, fn: Callable[[Ops], Any]) -> CallToolResult:
    try:
        return result(fn(caller(ops, ctx)))
    except AictlError as e:
        return tool_error(error_payload(e))


TASK_FIELDS = (
    "Each task: title (required), description, type, priority (higher first), labels, capabilities "
    "(the claimer must have), locks (gitignore-style globs it may change), depends_on (ids of existing "
    "tasks, or the `key` of another task in this batch), key, exclusive, max_attempts, command, verify."
)


def build_server(ops: Ops) -> MCPServer:
    """The whole-project server: every tool acts as the caller through `ops`."""
    mcp = MCPServer(name="aictl", version=__version__, instructions=INSTRUCTIONS, log_level=LOG_LEVEL)

    @mcp.tool(
        annotations=WRITE,
        description=(
            "Create one task or a batch with dependencies between them (one transaction: all or none). Tasks whose "
            "dependencies are unfinished start blocked. "
            + TASK_FIELDS
            + ' Example: {"tasks": [{"key": "schema", "title": "Add users table", "locks": ["db/**"]}, '
            '{"title": "Users API", "depends_on": ["schema"], "locks": ["src/api/**"]}]}'
        ),
    )
    async def task_create(
        tasks: Annotated[list[dict[str, Any]], Field(description="The tasks to create.", min_length=1)],
        dry_run: Annotated[bool, Field(description="Check everything, change nothing.")] = False,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_create(tasks, dry_run=dry_run))

    @mcp.tool(
        annotations=READ,
        description="List tasks, oldest first. Filter by status (queued, blocked, claimed, "
        "running, awaiting_approval, done, failed, cancelled), label or owner.",
    )
    async def task_list(
        status: Annotated[list[str] | None, Field(description="Only these statuses.")] = None,
        label: Annotated[list[str] | None, Field(description="Must carry these labels.")] = None,
        owner: Annotated[str | None, Field(description="Only tasks of this (last) owner.")] = None,
        limit: Annotated[int, Field(description="At most this many (0 = all).", ge=0)] = 100,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_list(status, label, owner, limit))

    @mcp.tool(
        annotations=READ,
        description="What could be claimed now, in claim order, and for each task that "
        "cannot be claimed the reasons why not (dependencies, locks, labels, AIs).",
    )
    async def task_ready(
        capability: Annotated[
            list[str] | None, Field(description="Judge as a claimer with these capabilities.")
        ] = None,
        label: Annotated[list[str] | None, Field(description="Only tasks with these labels.")] = None,
        limit: Annotated[int, Field(description="At most N ready and N waiting tasks.", ge=1)] = 20,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_ready(capability, label, limit))

    @mcp.tool(annotations=READ, description="One task in full: status, owner and lease, locks, dependencies, result.")
    async def task_get(task_id: TaskId, ctx: Context | None = None) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_get(task_id))

    @mcp.tool(
        annotations=WRITE,
        description=(
            "Claim a task under a lease: the named one, or the highest-priority ready one. Returns the task and the "
            "lease (owner, lease_epoch, lease_expires_at); pass owner and epoch to "
            "heartbeat/start/complete/fail/release. "
            "Error not_found when nothing can be claimed."
        ),
    )
    async def task_claim(
        task_id: Annotated[int | None, Field(description="Claim this task (default: the next ready one).")] = None,
        owner: Owner = None,
        ai: Annotated[
            str | None, Field(description="Claim for this AI: the policy judges it, its limits apply.")
        ] = None,
        capability: Annotated[list[str] | None, Field(description="Capabilities the claimer has.")] = None,
        label: Annotated[list[str] | None, Field(description="Only tasks with these labels.")] = None,
        ttl: Annotated[float | None, Field(description="Lease seconds (default: lease_ttl).", gt=0)] = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_claim(task_id, owner, ai, capability, label, ttl))

    @mcp.tool(annotations=WRITE, description="Extend a lease you hold. Error lease_lost once another epoch holds it.")
    async def task_heartbeat(
        task_id: TaskId,
        epoch: Epoch,
        owner: Owner = None,
        ttl: Annotated[float | None, Field(description="New lease seconds.", gt=0)] = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_heartbeat(task_id, epoch, owner, ttl))

    @mcp.tool(annotations=WRITE, description="Mark a task you claimed as running (the policy decides `start`).")
    async def task_start(
        task_id: TaskId, epoch: Epoch, owner: Owner = None, ctx: Context | None = None
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_start(task_id, epoch, owner))

    @mcp.tool(
        annotations=WRITE,
        description="Finish a task you hold, with an optional result (any JSON); dependents "
        "whose dependencies are all done become queued.",
    )
    async def task_complete(
        task_id: TaskId,
        epoch: Epoch,
        owner: Owner = None,
        result: Annotated[Any, Field(description="Result, any JSON value.")] = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_complete(task_id, epoch, owner, result))

    @mcp.tool(
        annotations=WRITE,
        description="Fail an attempt of a task you hold; retryable requeues it with backoff while attempts remain.",
    )
    async def task_fail(
        task_id: TaskId,
        epoch: Epoch,
        owner: Owner = None,
        reason: Annotated[str, Field(description="Why it failed.")] = "",
        retryable: Annotated[bool, Field(description="Transient: try again later.")] = False,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_fail(task_id, epoch, owner, reason, retryable))

    @mcp.tool(
        annotations=WRITE,
        description="Give a task you hold back to the queue (no attempt counted); its locks are freed.",
    )
    async def task_release(
        task_id: TaskId,
        epoch: Epoch,
        owner: Owner = None,
        reason: Annotated[str, Field(description="Why you give it back.")] = "",
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_release(task_id, epoch, owner, reason))

    @mcp.tool(
        annotations=WRITE,
        description="Attach evidence (text: a log, a diff, a JUnit XML test report as kind "
        "test_report) to a task you hold; secrets are redacted, the digest returned.",
    )
    async def task_attach(
        task_id: TaskId,
        epoch: Epoch,
        content: Annotated[str, Field(description="The evidence text.")],
        name: Annotated[str, Field(description="Name shown in listings, e.g. pytest.xml.")],
        kind: Annotated[str, Field(description="diff, test_report, transcript, log, ...")] = "log",
        media_type: Annotated[str, Field(description="e.g. text/plain, application/xml.")] = "text/plain",
        owner: Owner = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_attach(task_id, epoch, content, name, kind, media_type, owner))

    @mcp.tool(annotations=READ, description="Evidence recorded for a task (diffs, test reports, transcripts, logs).")
    async def task_evidence(task_id: TaskId, ctx: Context | None = None) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_evidence(task_id))

    @mcp.tool(
        annotations=READ,
        description="The changes on the task's branch (aictl/task-ID) against its base, as a unified diff.",
    )
    async def task_diff(task_id: TaskId, ctx: Context | None = None) -> CallToolResult:
        return call(ops, ctx, lambda o: o.task_diff(task_id))

    @mcp.tool(
        annotations=READ,
        description="Which AI would take the task now, and why each other one would not. Nothing is claimed.",
    )
    async def route(task_id: TaskId, ctx: Context | None = None) -> CallToolResult:
        return call(ops, ctx, lambda o: o.route(task_id))

    @mcp.tool(
        annotations=READ,
        description=(
            "What the project's policy would decide for an action, and why: every rule, matched or not. A what-if: "
            "nothing is enforced or recorded. Actions: claim, start, complete, release, create, write_path, "
            "run_command, use_tool, ..."
        ),
    )
    async def policy_explain(
        action: Annotated[str, Field(description="The action, e.g. claim, write_path, run_command.")],
        ai: Annotated[str | None, Field(description="AI asking (leave out for a human).")] = None,
        task_id: Annotated[int | None, Field(description="Task the action is on.")] = None,
        path: Annotated[list[str] | None, Field(description="Paths the action touches.")] = None,
        command: Annotated[str | None, Field(description="Command line, for run_command.")] = None,
        context: Annotated[dict[str, Any] | None, Field(description="Extra context for the rules.")] = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.policy_explain(action, ai, task_id, path, command, context))

    @mcp.tool(annotations=READ, description="Audit events in order (the last `limit`), optionally of one task.")
    async def audit_log(
        task_id: Annotated[int | None, Field(description="Only events of this task.")] = None,
        limit: Annotated[int | None, Field(description="Only the last N events.", ge=1)] = 50,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.audit_log(task_id, limit))

    @mcp.tool(annotations=READ, description="Recompute the audit log's hash chain; ok=false names the first break.")
    async def audit_verify(ctx: Context | None = None) -> CallToolResult:
        return call(ops, ctx, lambda o: o.audit_verify())

    @mcp.tool(
        annotations=READ,
        description="The merge queue: done tasks waiting to land on the integration branch, in DAG order, with the "
        "branch's tip (what `aictl merge status` shows).",
    )
    async def merge_status(
        into: Annotated[str | None, Field(description="Target branch (default: the integration branch).")] = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.merge_status(into))

    @mcp.tool(annotations=READ, description="The project's workflows (.ai/workflows/): name, description, inputs.")
    async def workflow_list(ctx: Context | None = None) -> CallToolResult:
        return call(ops, ctx, lambda o: o.workflow_list())

    @mcp.tool(
        annotations=WRITE,
        description="Start a workflow run: its first steps become tasks at once, which the project's daemon runs "
        "(or `aictl workflow resume RUN`). Returns the run with each step's state.",
    )
    async def workflow_run(
        name: Annotated[str, Field(description="The workflow's name (aictl workflow list).")],
        inputs: Annotated[dict[str, Any] | None, Field(description="Its inputs, name -> value.")] = None,
        ctx: Context | None = None,
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.workflow_run(name, inputs))

    @mcp.tool(
        annotations=READ,
        description="A workflow run: its status and each step's state, attempts, tasks, outputs, and why a step "
        "waits or was skipped.",
    )
    async def workflow_status(
        run_id: Annotated[int, Field(description="The run's id.", ge=1)], ctx: Context | None = None
    ) -> CallToolResult:
        return call(ops, ctx, lambda o: o.workflow_status(run_id))

    _resources(mcp, ops)
    _prompts(mcp)
    return mcp


def _text(fn: Callable[[], Any]) -> str:
    try:
        return json.dumps(jsonable(fn()), ensure_ascii=False, indent=2)
    except AictlError as e:
        # A resource has no error result: the error travels as the resource's content.
        return json.dumps({"error": error_payload(e)}, ensure_ascii=False)


def _resources(mcp: MCPServer, ops: Ops) -> None:
    @mcp.resource(
        "aictl://task/{task_id}",
        name="task",
        mime_type="application/json",
        description="One task in full, with its evidence.",
    )
    async def task(task_id: str) -> str:
        return _text(lambda: {**ops.task_get(int(task_id)), "evidence": ops.task_evidence(int(task_id))})

    @mcp.resource(
        "aictl://policy",
        name="policy",
        mime_type="application/json",
        description="The effective policy: the merged rules of every policy file, with their sources.",
    )
    async def policy() -> str:
        return _text(ops.effective_policy)

    @mcp.resource(
        "aictl://audit/tail", name="audit-tail", mime_type="application/json", description="The last 50 audit events."
    )
    async def audit_tail() -> str:
        return _text(lambda: ops.audit_log(None, 50))


PLAN_PROMPT = """Plan the following specification into aictl tasks, then create them with ONE call of the
task_create tool.

Rules:
- Each task is one reviewable change an agent can finish in one session; give it a clear title and a
  description that says what done means.
- Give each task `locks`: gitignore-style globs of the paths it may change. Tasks whose locks overlap never run
  at the same time, so keep them narrow.
- Use `key` and `depends_on` for real order (a schema before the API that uses it), nothing more: independent
  tasks run in parallel.
- Add `verify` (e.g. "pytest -q tests/api") where a command can check the work.
{extra}
Specification:
{spec}
"""


def _prompts(mcp: MCPServer) -> None:
    @mcp.prompt(
        name="plan_spec",
        description="Plan a specification into a DAG of aictl tasks (with locks and "
        "dependencies) and create them with task_create.",
    )
    def plan_spec(spec: str, constraints: str = "") -> str:
        extra = f"- Also: {constraints}\n" if constraints else ""
        return PLAN_PROMPT.format(spec=spec, extra=extra)
