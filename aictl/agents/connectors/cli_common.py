"""What the agent-CLI connectors (claude-code, codex) share: finding the binary, the key, the run, the result.

A CLI connector builds an argv and an environment, runs the CLI through the
sandbox with stdin closed and a hard timeout, feeds every stdout line to a
stream parser as it arrives (the parser emits normalized AgentEvents, see
base.py), and turns what the parser saw plus the exit status into one
ConnectorResult. Only the standard library is imported here.
"""

from __future__ import annotations

import abc
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl.agents.connectors.base import ConnectorResult, RunContext, one_line, render_event
from aictl.agents.connectors.spec import TRANSIENT_KINDS, status_error_kind
from aictl.domain.errors import UsageError

if TYPE_CHECKING:
    from aictl.agents.connectors.spec import ConnectorSpec
    from aictl.domain.models import AIRecord
    from aictl.sandbox.base import RunResult

AGENT_CLIS_ENV = "AICTL_AGENT_CLIS"
INSTALL_HINT = (
    "install the pinned CLIs with: .ci/install-agent-clis (into ~/.cache/aictl/agent-clis), "
    "or give a path: aictl ai register ID --connector {connector} --binary /path/to/{name}"
)
# Tool inputs and outputs are cut to this many characters in events and the transcript.
MAX_FIELD_CHARS = 4000


def agent_clis_prefix() -> Path:
    """Where .ci/install-agent-clis puts the pinned CLIs (npm --prefix)."""
    configured = os.environ.get(AGENT_CLIS_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "aictl" / "agent-clis"


def find_binary(configured: str | None, default_name: str) -> str | None:
    """config `binary` (a path, or a name on PATH), else `default_name` on PATH, else the agent-clis prefix."""
    if configured:
        if os.sep in configured:
            path = Path(configured).expanduser()
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(configured)
    found = shutil.which(default_name)
    if found:
        return found
    candidate = agent_clis_prefix() / "node_modules" / ".bin" / default_name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def require_binary(ai: AIRecord | None, spec: ConnectorSpec) -> str:
    configured = (ai.config or {}).get("binary") if ai is not None else None
    default_name = spec.binary or ""
    binary = find_binary(configured, default_name)
    if binary is None:
        where = configured if configured else f"{default_name} (not on PATH nor in {agent_clis_prefix()})"
        raise UsageError(
            f"the {spec.name} connector cannot find its CLI: {where}",
            hint=INSTALL_HINT.format(connector=spec.name, name=default_name),
        )
    return binary


def config_value(ctx: RunContext, key: str, default: Any = None) -> Any:
    return (ctx.ai.config or {}).get(key, default) if ctx.ai is not None else default


def prompt_of(ctx: RunContext) -> str:
    """The user's request: ctx.prompt, else the task's title and description."""
    if ctx.prompt:
        return ctx.prompt
    task = ctx.task
    parts = [getattr(task, "title", "") or "", ctx.instructions or getattr(task, "description", "") or ""]
    return "\n\n".join(p for p in parts if p).strip()


def clip(value: Any, limit: int = MAX_FIELD_CHARS) -> Any:
    """Strings in a (nested) value cut to `limit` characters, so one huge file cannot flood events."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… [{len(value) - limit} more chars]"
    if isinstance(value, dict):
        return {k: clip(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clip(v, limit) for v in value]
    return value


_RETRY_IN = re.compile(
    r"(?i)(?:try again|retry)(?: after| in)\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?)\b"
)
_UNIX_RESET = re.compile(r"(?i)usage limit reached\|(\d{9,11})")


def retry_at_from_text(text: str, now: float | None = None) -> float | None:
    """A reset time stated in an error message ("try again in 20s", "usage limit reached|1760000000")."""
    if not text:
        return None
    m = _UNIX_RESET.search(text)
    if m:
        return float(m.group(1))
    m = _RETRY_IN.search(text)
    if m:
        amount, unit = float(m.group(1)), m.group(2).lower()
        scale = 0.001 if unit == "ms" else 60 if unit.startswith("m") else 3600 if unit.startswith("h") else 1
        return (now if now is not None else time.time()) + amount * scale
    return None


class StreamParser(abc.ABC):
    """Turns a CLI's JSONL stdout into normalized events, a transcript and the facts the result needs.

    Subclasses implement `handle(obj)`; `feed(line)` is called from the sandbox's
    reader thread, one complete line at a time, in order.
    """

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self.transcript: list[str] = []
        self.session_id: str | None = None
        self.model: str | None = None
        self.summary = ""
        self.usage: dict[str, Any] = {}
        self.cost_usd: float | None = None
        self.error: str | None = None
        self.error_kind: str | None = None
        self.retry_at: float | None = None
        self.finished = False  # the CLI reported the end of its work (result / turn.completed)
        self.failed = False  # … and said it failed
        self.turns = 0
        self.noise: list[str] = []  # stdout lines that were not JSON

    def feed(self, line: str) -> bool:
        """Parse one stdout line; False when it was not a JSON event (a stray print, a crash message)."""
        line = line.strip()
        if not line:
            return True
        try:
            obj = json.loads(line)
        except ValueError:
            self.noise.append(line)
            self.transcript.append(f"[stdout] {one_line(line)}")
            return False
        if isinstance(obj, dict):
            self.handle(obj)
        return True

    @abc.abstractmethod
    def handle(self, obj: dict[str, Any]) -> None:
        """One JSON event of the CLI's stream."""

    def feed_stderr(self, line: str) -> None:  # noqa: B027 - an optional hook, a no-op unless a CLI overrides it
        """A stderr line (logs, warnings); most CLIs say nothing there that the stream does not."""

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.transcript.append(render_event(event))
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken consumer must not stop the parse
                self.on_event = None

    def fail(self, kind: str, message: str, retry_at: float | None = None) -> None:
        """Remember the first (most specific) error; later ones only fill in a reset time."""
        if self.error_kind is None or (self.error_kind == "other" and kind != "other"):
            self.error_kind, self.error = kind, message
        if retry_at is not None and self.retry_at is None:
            self.retry_at = retry_at
        self.emit({"type": "error", "kind": kind, "message": message, "retry_at": retry_at})


class StateDir:
    """The run's persistent agent state: ctx.state_dir, or a temporary one removed after the run."""

    def __init__(self, ctx: RunContext, prefix: str):
        self.temporary = ctx.state_dir is None
        # Outside the sandbox's TMPDIR (a per-run dir): Codex refuses a CODEX_HOME under it.
        self.path = Path(tempfile.mkdtemp(prefix=prefix)) if ctx.state_dir is None else Path(ctx.state_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        if ctx.spec.backend == "docker":  # the CLI inside reads and writes it at the same path
            from aictl.sandbox.base import BindMount

            state = str(self.path.resolve())
            mount = BindMount(source=state, target=state, read_only=False)
            ctx.spec = ctx.spec.model_copy(update={"mounts": [*ctx.spec.mounts, mount]})

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def refuse(ctx: RunContext, message: str, *, kind: str = "other") -> ConnectorResult:
    """A run that cannot start on this machine (no CLI, no key, unsupported backend): a failure, not a crash."""
    event = {"type": "error", "kind": kind, "message": message, "retry_at": None}
    if ctx.on_event is not None:
        ctx.on_event(event)
    return ConnectorResult(
        ok=False,
        error=message,
        error_kind=kind,
        transcript=f"[error] {kind}: {message}",
        events=[event],
        model=getattr(ctx.ai, "model", None),
    )


class Refused(Exception):
    """The run cannot start here; `.result` is the failed ConnectorResult to return."""

    def __init__(self, result: ConnectorResult):
        super().__init__(result.error)
        self.result = result


def preflight(ctx: RunContext, spec: ConnectorSpec, *, product: str, why_local: str) -> tuple[str, str, str]:
    """(binary, key variable name, key) for a CLI run here or in the docker backend's agents image, or Refused."""
    if ctx.spec.backend not in ("local", "docker"):
        raise Refused(
            refuse(
                ctx,
                f"the {spec.name} connector runs the CLI on this machine or in docker, not on backend "
                f"{ctx.spec.backend!r} (execute with --backend local or docker; {why_local})",
            )
        )
    try:  # inside docker the CLI is the agents image's, on its PATH (aictl sandbox build --preset agents)
        binary = spec.binary or spec.name if ctx.spec.backend == "docker" else require_binary(ctx.ai, spec)
    except UsageError as e:
        raise Refused(refuse(ctx, f"{e.message} ({e.hint})")) from None
    if ctx.spec.backend == "docker" and ctx.mcp_servers:
        # Their commands (aictl mcp serve, configured servers) live on this machine, not in the image.
        ctx.mcp_servers = {}
    key_name, key = spec.api_key(ctx.ai)
    if key_name is None or key is None:
        raise Refused(
            refuse(
                ctx,
                f"{key_name} is not set: {product} needs an API key (name another variable with config api_key_env)",
                kind="auth",
            )
        )
    return binary, key_name, key


def run_cli(ctx: RunContext, argv: list[str], env: dict[str, str], parser: StreamParser) -> RunResult:
    """Run the CLI in the sandbox, parsing stdout as it streams; returns the sandbox's RunResult.

    In docker, the agents image runs it and only its AI's API is reachable (incontainer.py).
    """
    spec = ctx.spec.model_copy(update={"env": {**ctx.spec.env, **env}})
    if spec.backend == "docker" and ctx.ai is not None:
        from aictl.agents.connectors.incontainer import container_spec

        spec = container_spec(ctx, spec)
        if ctx.run_policy is not None and spec.egress is not None:
            spec = recorded_egress(ctx.run_policy, spec)

    def on_output(stream: str, line: str) -> None:
        # The JSON events reach watchers as normalized events (ctx.on_event); only the rest is passed on as output.
        if stream == "stdout":
            if parser.feed(line):
                return
        else:
            parser.feed_stderr(line)
        if ctx.on_output is not None:
            ctx.on_output(stream, line)

    return ctx.sandbox.run(
        argv, workdir=ctx.workdir, spec=spec, on_output=on_output, cancel=ctx.cancel, labels=ctx.labels
    )


def recorded_egress(run_policy: Any, spec: Any) -> Any:
    """Every connection the container tries becomes a decision record: the listed pairs (the AI's own API) are
    aictl's built-in allow; any other host:port is put to the policy's `network` rules, which may allow it."""
    listed = set(spec.egress)
    earlier = spec.on_egress

    def on_egress(attempt: Any) -> None:
        if f"{attempt.host}:{attempt.port}" in listed:
            run_policy.decide("network", host=attempt.host, port=attempt.port, allowed_by=API_RULE)
        if earlier is not None:
            earlier(attempt)

    def decide(host: str, port: int) -> bool:
        return bool(run_policy.decide("network", host=host, port=port).allowed)

    return spec.model_copy(update={"on_egress": on_egress, "egress_decide": decide})


API_RULE = "aictl:ai-api"


def finish(ctx: RunContext, res: RunResult, parser: StreamParser, spec: ConnectorSpec) -> ConnectorResult:
    """The ConnectorResult for a finished run: the CLI's own verdict, overridden by timeout, cancel, start errors."""
    cli, model = spec.binary or spec.name, getattr(ctx.ai, "model", None)
    error, kind = parser.error, parser.error_kind
    ok = res.exit_code == 0 and parser.finished and not parser.failed and not (res.timed_out or res.cancelled)
    if res.start_error:
        error, kind = f"sandbox did not start: {res.start_error}", "other"
    elif res.timed_out:
        error, kind = f"{cli} timed out after {ctx.spec.timeout_s:g}s and was killed", "timeout"
    elif res.cancelled:
        error, kind = "cancelled", None
    elif not ok:
        if kind is None:
            tail = (res.stderr or "").strip().splitlines()[-3:]
            detail = "; ".join(tail) or ("; ".join(parser.noise[-3:]) if parser.noise else "no result reported")
            error, kind = f"{cli} exited with {res.exit_code}: {detail}", kind_from_text(detail, spec.error_kind)
        error = error or f"{cli} failed"
    else:
        error, kind = None, None
    if kind is not None and not any(e["type"] == "error" and e.get("kind") == kind for e in parser.events):
        parser.emit({"type": "error", "kind": kind, "message": error, "retry_at": parser.retry_at})
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, **parser.usage, "turns": parser.turns}
    transient = True if res.start_error else kind in TRANSIENT_KINDS
    return ConnectorResult(
        ok=ok and error is None,
        exit_code=res.exit_code,
        summary=parser.summary,
        error=error,
        transient=transient,
        timed_out=res.timed_out,
        cancelled=res.cancelled,
        transcript="\n".join(parser.transcript) + ("\n[stderr]\n" + res.stderr if res.stderr.strip() else ""),
        stdout=res.stdout,
        stderr=res.stderr,
        usage=usage,
        cost_usd=parser.cost_usd,
        duration_s=res.duration_s,
        sandbox=res.settings,
        error_kind=kind,
        retry_at=parser.retry_at if kind == "rate_limit" else None,
        session_id=parser.session_id,
        model=parser.model or model,
        events=parser.events,
    )


# A status code as CLIs quote it: "unexpected status 401 Unauthorized", "last status: 429 Too Many Requests",
# "API Error: 529 overloaded", "Request rejected (429)". Never a bare number: a URL's port may contain "429".
_STATUS_IN_TEXT = re.compile(r"(?i)(?:\bstatus:?|\bapi error:?|\bhttp)\s+(\d{3})\b|\((\d{3})\)")


def kind_from_text(text: str, error_kind: Callable[[int | None], str | None] = status_error_kind) -> str:
    """Error kind from a CLI's error message, when it gives no status code of its own."""
    match = _STATUS_IN_TEXT.search(text or "")
    if match:
        kind = error_kind(int(match.group(1) or match.group(2)))
        if kind not in (None, "other"):
            return kind
    low = (text or "").lower()
    if any(w in low for w in ("rate limit", "too many requests", "usage limit")):
        return "rate_limit"
    if any(w in low for w in ("unauthorized", "forbidden", "invalid api key", "invalid x-api-key", "authenticat")):
        return "auth"
    if any(w in low for w in ("overloaded", "high demand", "temporarily unavailable")):
        return "overloaded"
    return "other"


__all__ = [
    "AGENT_CLIS_ENV",
    "INSTALL_HINT",
    "Refused",
    "StateDir",
    "StreamParser",
    "agent_clis_prefix",
    "clip",
    "config_value",
    "find_binary",
    "finish",
    "kind_from_text",
    "preflight",
    "prompt_of",
    "refuse",
    "require_binary",
    "retry_at_from_text",
    "run_cli",
]
