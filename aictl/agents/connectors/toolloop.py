"""aictl's own tool loop, shared by the API connectors (anthropic, openai, ollama).

A raw model cannot change code by itself, so the loop offers it the
workspace tools (`tools.py`) and runs whatever it calls, turn after turn:

    request (streamed) → text and tool calls → run the tools → send the results → …

until the model answers without calling a tool (success), or a limit ends
the run: ``max_turns`` (default 30), the budget (cost of the tokens so far
≥ ``budget_usd``), the run's deadline (the sandbox spec's timeout), or
``ctx.cancel``. A connector only supplies a `Session`: one streamed request in
its provider's wire format, and how tool results are sent back.

A turn the model's token limit cut off (``ModelTurn.truncated``: OpenAI's
``finish_reason: length``, Anthropic's ``max_tokens``, Ollama's ``done_reason:
length``) is never a finished answer: config ``truncated: fail`` (the default)
ends the run not ok with that reason; ``continue`` runs its tool calls (a call cut
short gets an error the model reads) or asks the model to go on. Text streamed
before a run is stopped (timeout, cancel, a broken stream) stays in the
transcript, marked as cut off.

Retries are aictl's, not the SDKs' (the SDKs are built with ``max_retries=0``):
429, 408/409, 5xx and 529 are retried with capped exponential backoff and
jitter, honouring ``retry-after``/``retry-after-ms`` — unless the provider asks
for a longer wait than ``max_retry_wait_s`` (60 s): then the run ends at once,
transient, with ``retry_at`` so the router can pause the AI instead of blocking
a worker. 401/403 end the run at once (``error_kind="auth"``), naming the
environment variable that holds the key, never the key.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aictl.agents.connectors import nochange
from aictl.agents.connectors.apicommon import ProviderError, redact
from aictl.agents.connectors.base import ConnectorResult, RunContext, render_event
from aictl.agents.connectors.spec import TRANSIENT_KINDS
from aictl.agents.connectors.tools import (
    SHORT_NAMES,
    ApprovalNeeded,
    SandboxUnavailable,
    ToolOutcome,
    ToolSpec,
    WorkspaceTools,
)
from aictl.agents.pricing import prices_for, run_cost
from aictl.domain.errors import UsageError
from aictl.domain.redact import redact_text

if TYPE_CHECKING:
    from aictl.agents.connectors.spec import ConnectorSpec

DEFAULT_MAX_TURNS = 30
DEFAULT_MAX_RETRIES = 4
MAX_RETRY_WAIT_S = 60.0  # a longer retry-after ends the run (transient, retry_at) instead of sleeping
RETRY_BACKOFF_S = 0.5  # first backoff without retry-after; doubles per attempt
RETRY_BACKOFF_CAP_S = 8.0
REQUEST_TIMEOUT_S = 600.0
EVENT_OUTPUT_LIMIT = 4096  # characters of a tool result kept in its event
SUMMARY_LIMIT = 2000
WATCH_POLL_S = 0.05  # how often a streaming request looks at the cancel event and the deadline

ENV_NOTE = (
    "You are working in a checkout of a software repository and have tools to {tools}. Paths are relative "
    "to the repository root. Make the change you are asked for. When you are done, reply with a short "
    "summary of what you did, without calling a tool."
)
TOOL_PHRASES = {"read": "read files", "write": "write files", "list": "list files", "run": "run shell commands"}
TRUNCATED_MODES = ("fail", "continue")
CONTINUE_NOTE = "Your answer was cut off at the token limit. Continue where you stopped."


@dataclass
class ToolCall:
    id: str
    name: str
    input: Any  # the arguments, normally a dict
    error: str | None = None  # the arguments could not be parsed; the model is told so


@dataclass
class Usage:
    input_tokens: int = 0  # excluding cache reads and writes (the Anthropic convention)
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False  # the server reported none: counted from the text (never a silent zero)

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.estimated = self.estimated or other.estimated

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }
        if self.estimated:
            out["estimated"] = True
        return out


@dataclass
class ModelTurn:
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    model: str | None = None
    truncated: bool = False  # the model's token limit cut this turn off (set by the session from its stop reason)


@dataclass
class Setup:
    """What a connector opens its session with."""

    model: str
    system: str
    prompt: str
    tools: list[ToolSpec]
    config: dict[str, Any]
    max_tokens: int | None
    temperature: float | None


class Stopped(Exception):
    """The run must end now (cancelled, out of time)."""


class Cancelled(Stopped):
    pass


class TimedOut(Stopped):
    pass


class Session(Protocol):
    def request(self, run: LoopRun, timeout: float) -> ModelTurn:
        """One streamed model request: call run.message/run.tool_call as blocks complete, raise ProviderError."""

    def add_results(self, turn: ModelTurn, results: list[tuple[ToolCall, ToolOutcome]]) -> None:
        """Append the model's turn and the tool results to the conversation."""

    def add_continue(self, turn: ModelTurn, text: str) -> None:
        """Append the model's (cut off) turn and a user message asking it to go on."""

    def close(self) -> None: ...


# -- the loop ----------------------------------------------------------------------------------


class LoopRun:
    """One run's state: where and with which key, events, transcript, counters, and the cancel/deadline checks
    sessions use."""

    def __init__(self, ctx: RunContext, spec: ConnectorSpec, deadline: float | None):
        self.ctx, self.spec, self.connector, self.deadline = ctx, spec, spec.name, deadline
        self.base_url = spec.base_url(ctx.ai) or ""
        self.key_env, self.key = spec.api_key(ctx.ai)
        self.cancel = ctx.cancel
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.requests = 0
        self.retries = 0
        self._on_event = ctx.on_event
        self._partial: list[str] = []  # text streamed since the last complete message

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.lines.append(render_event(event))
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as e:  # noqa: BLE001 - a broken consumer must not end the run
                self._on_event = None
                self.lines.append(f"[aictl: on_event raised {type(e).__name__}: {e}; events no longer streamed]")

    def note(self, line: str) -> None:
        self.lines.append(line)

    # called by sessions while a response streams
    def message(self, text: str) -> None:
        self._partial.clear()
        if text.strip():
            self.emit({"type": "message", "role": "assistant", "text": text})

    def delta(self, text: str) -> None:
        """A piece of text as it streams; kept for the transcript if the run stops before it completes."""
        self._partial.append(text)

    def flush_partial(self) -> None:
        """Record the text of a turn that was stopped mid-stream, marked as cut off."""
        text, self._partial = "".join(self._partial), []
        if text.strip():
            self.emit({"type": "message", "role": "assistant", "text": text, "partial": True})

    def tool_call(self, call: ToolCall) -> None:
        self.emit(
            {
                "type": "tool_call",
                "id": call.id,
                "name": SHORT_NAMES.get(call.name, call.name),
                "raw_name": call.name,
                "input": call.input,
            }
        )

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut("timed out")

    @contextmanager
    def watch(self, close: Callable[[], None]) -> Iterator[None]:
        """While a response streams, abort it on cancel or deadline so a blocked read fails at once.

        The headers must have arrived for there to be a response to abort; until then the request's
        own timeout bounds the wait.
        """
        done, fired = threading.Event(), threading.Event()

        def waiter() -> None:
            while not done.wait(WATCH_POLL_S):
                if self.cancel.is_set() or (self.deadline is not None and time.monotonic() > self.deadline):
                    fired.set()
                    try:  # again on every poll: the response may not have existed the first time
                        close()
                    except Exception:  # noqa: BLE001 - best effort; check() ends the run at the next event anyway
                        pass

        thread = threading.Thread(target=waiter, name="aictl-stream-watch", daemon=True)
        thread.start()
        try:
            yield
        except Exception:
            if fired.is_set():
                self.check()
            raise
        finally:
            done.set()
            thread.join()

    def request_timeout(self, configured: float) -> float:
        if self.deadline is None:
            return configured
        return max(1.0, min(configured, self.deadline - time.monotonic()))


def _number(config: dict[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise UsageError(f"AI config {key!r} must be a number >= 0, not {value!r}")
    return float(value)


def _limit(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _system_prompt(ctx: RunContext, tools: list[ToolSpec]) -> str:
    parts = []
    if any(t.name in SHORT_NAMES for t in tools):
        phrases = [TOOL_PHRASES[SHORT_NAMES[t.name]] for t in tools if t.name in SHORT_NAMES]
        listed = ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + phrases[-1]
        parts.append(ENV_NOTE.format(tools=listed))
    if ctx.system.strip():
        parts.append(ctx.system.strip())
    return "\n\n".join(parts)


def _prompt(ctx: RunContext) -> str:
    if ctx.prompt.strip():
        return ctx.prompt
    task = ctx.task
    text = "\n\n".join(p for p in (getattr(task, "title", ""), getattr(task, "description", "")) if p)
    if not text.strip():
        raise UsageError("an AI run needs a prompt: the task has no title or description")
    return text


def run_tool_loop(
    ctx: RunContext, spec: ConnectorSpec, *, open_session: Callable[[Setup, LoopRun], Session]
) -> ConnectorResult:
    """Run the loop to its end; always returns a ConnectorResult (raises only UsageError for a bad AI config)."""
    t0 = time.monotonic()
    ai, connector = ctx.ai, spec.name
    if ai is None or not ai.model:
        raise UsageError(
            f"the {connector} connector needs an AI with a model",
            hint=f"aictl ai register NAME --connector {connector} --model MODEL",
        )
    config = spec.config(ai)
    prices = prices_for(ai.model, connector=spec, override=config.get("prices"))
    max_turns = int(_limit(ctx.max_turns, config.get("max_turns")) or DEFAULT_MAX_TURNS)
    timeout_s = _limit(getattr(ctx.spec, "timeout_s", None), config.get("timeout_s"))
    deadline = t0 + float(timeout_s) if timeout_s is not None else None
    run = LoopRun(ctx, spec, deadline)
    tools = WorkspaceTools(
        ctx.workdir,
        sandbox=ctx.sandbox,
        spec=ctx.spec,
        cancel=ctx.cancel,
        labels=ctx.labels,
        on_output=ctx.on_output,
        allowed=ctx.allowed_tools,
        deadline=deadline,
        command_timeout_s=_number(config, "command_timeout_s", 300.0),
        policy=ctx.run_policy,
    )
    specs = tools.specs()
    mcp = None
    if ctx.mcp_servers:
        from aictl.agents.connectors.mcptools import McpTools, McpUnavailable

        try:
            mcp = McpTools(
                ctx.mcp_servers, decide=ctx.decide_tool, call_timeout_s=_number(config, "command_timeout_s", 300.0)
            )
        except McpUnavailable as e:
            return ConnectorResult(
                ok=False,
                error=str(e),
                error_kind="other",
                transient=True,
                duration_s=time.monotonic() - t0,
                model=ai.model,
            )
        specs = specs + mcp.specs()
    system = _system_prompt(ctx, specs)
    if ctx.skills:  # progressive disclosure: the system prompt lists them, this tool reads one
        from aictl.agents.connectors import skilltool

        specs = [*specs, skilltool.SPEC]
    setup = Setup(
        model=ai.model,
        system=system,
        prompt=_prompt(ctx),
        tools=specs,
        config=config,
        max_tokens=config.get("max_tokens"),
        temperature=config.get("temperature"),
    )
    retry = _Retry(
        run,
        max_retries=int(_number(config, "max_retries", DEFAULT_MAX_RETRIES)),
        max_wait_s=_number(config, "max_retry_wait_s", MAX_RETRY_WAIT_S),
        backoff_s=_number(config, "retry_backoff_s", RETRY_BACKOFF_S),
    )
    request_timeout = _number(config, "request_timeout_s", REQUEST_TIMEOUT_S)
    on_truncated = config.get("truncated", "fail")
    if on_truncated not in TRUNCATED_MODES:
        raise UsageError(f"AI config 'truncated' must be fail or continue, not {on_truncated!r}")
    usage = Usage()
    locks = list(getattr(ctx.task, "lock_paths", None) or [])
    head_at_start = nochange.head(ctx.workdir) if locks else None
    turn_no = 0
    model_seen: str | None = None
    summary = ""

    def cost() -> float | None:
        return run_cost(spec, ai, usage.as_dict())

    def finish(
        ok: bool,
        error: str | None = None,
        *,
        kind: str | None = None,
        transient: bool = False,
        retry_at: float | None = None,
        cancelled: bool = False,
        timed_out: bool = False,
        pending: dict[str, Any] | None = None,
    ) -> ConnectorResult:
        nonlocal summary
        spent = cost()
        run.flush_partial()  # a stopped stream's text stays in the transcript
        if ok and head_at_start is not None:
            unchanged = nochange.unchanged(ctx.workdir, locks, head_at_start)
            if unchanged:
                run.note(f"[aictl: {unchanged}]")
                summary = f"{summary}\n\n({unchanged})" if summary else f"({unchanged})"
        if error:
            run.emit({"type": "error", "kind": kind or "other", "message": error, "retry_at": retry_at})
        run.emit({"type": "result", "ok": ok, "turns": turn_no, "summary": summary[:SUMMARY_LIMIT]})
        return ConnectorResult(
            ok=ok,
            summary=summary[:SUMMARY_LIMIT],
            error=error,
            error_kind=kind if not ok else None,
            transient=transient,
            retry_at=retry_at,
            cancelled=cancelled,
            timed_out=timed_out,
            transcript="\n".join(run.lines) + "\n",
            usage={**usage.as_dict(), "turns": turn_no, "requests": run.requests, "retries": run.retries},
            cost_usd=spent,
            duration_s=time.monotonic() - t0,
            sandbox=tools.sandbox_settings,
            model=model_seen or ai.model,
            events=run.events,
            pending_approval=pending,
        )

    run.note(
        f"== {connector} model {ai.model} at {run.base_url}; tools: "
        f"{', '.join(s.name for s in specs) or 'none'}; up to {max_turns} turns"
    )
    if setup.system:
        run.note("== system\n" + setup.system)
    run.note("== user\n" + setup.prompt)
    run.emit(
        {
            "type": "init",
            "session_id": None,
            "model": ai.model,
            "tools": [SHORT_NAMES.get(s.name, s.name) for s in specs],
        }
    )
    if ctx.budget_usd is not None and prices is None:
        return finish(
            False,
            f"a budget of ${ctx.budget_usd:g} is set but the price of {ai.model} is unknown, so it "
            "cannot be enforced; set the AI's config prices (USD per million tokens)",
            kind="other",
        )
    session: Session | None = None
    try:
        if run.key_env and run.key is None:
            raise ProviderError(
                f"{connector}: the API key variable ${run.key_env} is not set (AI {ai.id})", kind="auth"
            )
        session = open_session(setup, run)
        while True:
            run.check()
            if ctx.budget_usd is not None and (cost() or 0.0) >= ctx.budget_usd:
                return finish(
                    False,
                    f"stopped: the budget of ${ctx.budget_usd:g} is spent (${cost():.4f} after {turn_no} turns)",
                    kind="other",
                )
            turn_no += 1
            run.note(f"== turn {turn_no}")
            turn = retry.call(lambda: session.request(run, run.request_timeout(request_timeout)))
            usage.add(turn.usage)
            model_seen = turn.model or model_seen
            if turn.text.strip():
                summary = turn.text.strip()
            run.emit({"type": "usage", **usage.as_dict(), "cost_usd": cost(), "turn": turn_no})
            if turn.truncated:
                cut = f"the model's answer was cut off at its token limit (stop reason {turn.stop_reason!r})"
                run.note(f"[aictl: {cut}]")
                if on_truncated == "fail":
                    return finish(
                        False, f"{cut} on turn {turn_no}; raise max_tokens or set truncated=continue", kind="truncated"
                    )
                if not turn.calls:
                    if turn_no >= max_turns:
                        return finish(False, f"{cut} on turn {turn_no}, the last of {max_turns}", kind="truncated")
                    session.add_continue(turn, CONTINUE_NOTE)
                    continue
            if not turn.calls:
                return finish(True)
            if turn_no >= max_turns:
                run.note(f"(not run: {', '.join(c.name for c in turn.calls)}; no turns left)")
                return finish(
                    False, f"stopped after {max_turns} turns: the model still wanted to call tools", kind="other"
                )
            results = []
            for call in turn.calls:
                run.check()
                if call.error:
                    outcome = ToolOutcome(False, call.error)
                elif ctx.skills and call.name == "load_skill":
                    from aictl.agents.connectors import skilltool

                    outcome = skilltool.call(ctx.skills, call.input)
                elif mcp is not None and mcp.handles(call.name):
                    outcome = mcp.call(call.name, call.input)
                else:
                    outcome = tools.call(call.name, call.input)
                # Provider-bound: a secret aictl knows of (an AI's key, a store password, a token) that a tool
                # turned up (`env`, /proc/$PPID/environ, a config file) never goes to the model's provider.
                outcome = ToolOutcome(outcome.ok, redact_text(outcome.output))
                run.emit(
                    {
                        "type": "tool_result",
                        "id": call.id,
                        "ok": outcome.ok,
                        "output": outcome.output[:EVENT_OUTPUT_LIMIT],
                    }
                )
                results.append((call, outcome))
            session.add_results(turn, results)
    except ProviderError as e:
        if e.kind == "timeout" and run.deadline is not None and time.monotonic() >= run.deadline - 0.05:
            # The request's read timeout is cut to the run's deadline, so it can beat the stream watcher
            # by a few milliseconds: it is the run's deadline all the same.
            return finish(False, f"timed out after {timeout_s:g}s", kind="timeout", transient=True, timed_out=True)
        return finish(
            False,
            redact(e.message, *spec.secrets(ai)),
            kind=e.kind,
            transient=e.retryable or e.kind in TRANSIENT_KINDS,
            retry_at=e.retry_at,
        )
    except Cancelled:
        return finish(False, "cancelled", kind="other", cancelled=True)
    except TimedOut:
        return finish(False, f"timed out after {timeout_s:g}s", kind="timeout", transient=True, timed_out=True)
    except SandboxUnavailable as e:
        return finish(False, f"sandbox did not start: {e}", kind="other", transient=True)
    except ApprovalNeeded as e:  # the call is refused for now; the task waits for a person (see the executor)
        run.emit({"type": "tool_result", "id": None, "ok": False, "output": e.verdict.reason})
        return finish(False, f"waiting for approval: {e.verdict.reason}", kind="approval", pending=e.pending())
    finally:
        if session is not None:
            session.close()
        if mcp is not None:
            mcp.close()


class _Retry:
    def __init__(self, run: LoopRun, *, max_retries: int, max_wait_s: float, backoff_s: float):
        self.run, self.max_retries, self.max_wait_s, self.backoff_s = run, max_retries, max_wait_s, backoff_s

    def call(self, request: Callable[[], ModelTurn]) -> ModelTurn:
        attempt = 0
        while True:
            self.run.requests += 1
            try:
                return request()
            except ProviderError as e:
                if not e.retryable or attempt >= self.max_retries:
                    raise
                if e.retry_after is not None:
                    delay = e.retry_after
                else:
                    delay = min(self.backoff_s * 2**attempt, RETRY_BACKOFF_CAP_S) * (1 - 0.25 * random.random())
                if delay > self.max_wait_s:
                    raise  # a long wait: give the worker back and let the router pause this AI until retry_at
                deadline = self.run.deadline
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                attempt += 1
                self.run.retries += 1
                self.run.emit(
                    {
                        "type": "error",
                        "kind": e.kind,
                        "message": f"{e.message}; retry {attempt} of {self.max_retries} in {delay:.2f}s",
                        "retry_at": None,
                        "retrying": True,
                    }
                )
                if self.run.cancel.wait(delay):
                    raise Cancelled("cancelled") from None


__all__ = [
    "Cancelled",
    "LoopRun",
    "ModelTurn",
    "ProviderError",
    "Session",
    "Setup",
    "TimedOut",
    "ToolCall",
    "Usage",
    "run_tool_loop",
]
