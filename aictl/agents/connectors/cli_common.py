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
from pathlib import Path
from typing import Any, Callable

from aictl.agents.connectors.base import ConnectorResult, RunContext
from aictl.domain.errors import UsageError

AGENT_CLIS_ENV = "AICTL_AGENT_CLIS"
INSTALL_HINT = ("install the pinned CLIs with: .ci/install-agent-clis (into ~/.cache/aictl/agent-clis), "
                "or give a path: aictl ai register ID --connector {connector} --binary /path/to/{name}")
# Tool inputs and outputs are cut to this many characters in events and the transcript.
MAX_FIELD_CHARS = 4000
TRANSIENT_KINDS = frozenset({"rate_limit", "overloaded", "timeout"})


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


def require_binary(ai: Any, connector: str, default_name: str) -> str:
    configured = (ai.config or {}).get("binary") if ai is not None else None
    binary = find_binary(configured, default_name)
    if binary is None:
        where = configured if configured else f"{default_name} (not on PATH nor in {agent_clis_prefix()})"
        raise UsageError(f"the {connector} connector cannot find its CLI: {where}",
                         hint=INSTALL_HINT.format(connector=connector, name=default_name))
    return binary


def health(ai: Any, connector: str, default_name: str) -> dict[str, Any]:
    """`aictl ai status` for a CLI connector: the binary this connector would run, and its --version."""
    import subprocess

    binary = find_binary((ai.config or {}).get("binary"), default_name)
    if binary is None:
        return {"ok": False, "detail": f"{default_name} not found; " + INSTALL_HINT.format(connector=connector,
                                                                                               name=default_name)}
    try:
        proc = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"ok": False, "detail": f"cannot run {binary} --version: {e}", "binary": binary}
    version = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[:1]
    return {"ok": proc.returncode == 0, "binary": binary, "version": version[0] if version else "",
            "detail": f"{binary}: {version[0] if version else '?'}"}


def api_key(ai: Any, default_env: str) -> tuple[str, str | None]:
    """(the env var name, its value in aictl's environment) for the AI's key; the value is never stored."""
    name = ((ai.config or {}).get("api_key_env") if ai is not None else None) or default_env
    return name, os.environ.get(name) or None


def base_url(ai: Any) -> str | None:
    """The provider's root URL without a trailing /v1, or None for the CLI's own default."""
    url = ((ai.config or {}).get("base_url") if ai is not None else None) or ""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    return url or None


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


def one_line(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def kind_for_status(status: int | None) -> str | None:
    """HTTP status → error kind: 429 rate_limit, 401/403 auth, 5xx (and Anthropic's 529) overloaded."""
    if status is None:
        return None
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status >= 500:
        return "overloaded"
    return "other"


_RETRY_IN = re.compile(r"(?i)(?:try again|retry)(?: after| in)\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?)\b")
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

    def feed_stderr(self, line: str) -> None:
        """A stderr line (logs, warnings); most CLIs say nothing there that the stream does not."""

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.transcript.append(render(event))
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


def render(event: dict[str, Any]) -> str:
    """One transcript line per event, for people."""
    t = event.get("type")
    if t == "init":
        return f"[init] session {event.get('session_id')} model {event.get('model') or '?'}"
    if t == "message":
        return f"{event.get('role', 'assistant')}: {event.get('text', '')}"
    if t == "tool_call":
        raw = f" ({event['raw_name']})" if event.get("raw_name") and event["raw_name"] != event.get("name") else ""
        return f"→ {event.get('name')}{raw} {one_line(event.get('input'))}"
    if t == "tool_result":
        return f"← {'ok' if event.get('ok') else 'error'}: {one_line(event.get('output') or '')}"
    if t == "usage":
        cost = event.get("cost_usd")
        return (f"[usage] input {event.get('input_tokens', 0)}, output {event.get('output_tokens', 0)}, "
                f"cache read {event.get('cache_read_tokens', 0)} tokens"
                + (f", ${cost:.6f}" if isinstance(cost, (int, float)) else ""))
    if t == "error":
        when = f" (retry at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(event['retry_at']))})" \
            if event.get("retry_at") else ""
        return f"[error] {event.get('kind')}: {event.get('message')}{when}"
    if t == "result":
        return f"[result] {'ok' if event.get('ok') else 'failed'} after {event.get('turns', 0)} turn(s): " \
               f"{one_line(event.get('summary') or '')}"
    return f"[{t}] {one_line(event)}"


def cost_from_prices(usage: dict[str, Any], prices: Any) -> float | None:
    """USD for the usage at `prices` (USD per million tokens: input, output, cache_read); None without prices."""
    if not isinstance(prices, dict) or "input" not in prices or "output" not in prices:
        return None
    per = {k: float(v) / 1_000_000 for k, v in prices.items() if isinstance(v, (int, float))}
    total = (usage.get("input_tokens", 0) * per["input"] + usage.get("output_tokens", 0) * per["output"]
             + usage.get("cache_read_tokens", 0) * per.get("cache_read", per["input"])
             + usage.get("cache_write_tokens", 0) * per.get("cache_write", per["input"]))
    return round(total, 8)


class StateDir:
    """The run's persistent agent state: ctx.state_dir, or a temporary one removed after the run."""

    def __init__(self, ctx: RunContext, prefix: str):
        self.temporary = ctx.state_dir is None
        # Outside the sandbox's TMPDIR (a per-run dir): Codex refuses a CODEX_HOME under it.
        self.path = Path(tempfile.mkdtemp(prefix=prefix)) if self.temporary else Path(ctx.state_dir)
        self.path.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def refuse(ctx: RunContext, message: str, *, kind: str = "other") -> ConnectorResult:
    """A run that cannot start on this machine (no CLI, no key, unsupported backend): a failure, not a crash."""
    event = {"type": "error", "kind": kind, "message": message, "retry_at": None}
    if ctx.on_event is not None:
        ctx.on_event(event)
    return ConnectorResult(ok=False, error=message, error_kind=kind, transcript=f"[error] {kind}: {message}",
                           events=[event], model=getattr(ctx.ai, "model", None))


class Refused(Exception):
    """The run cannot start here; `.result` is the failed ConnectorResult to return."""

    def __init__(self, result: ConnectorResult):
        super().__init__(result.error)
        self.result = result


def preflight(ctx: RunContext, connector: str, default_name: str, default_key_env: str, *, product: str,
              why_local: str) -> tuple[str, str, str]:
    """(binary, key variable name, key) for a CLI run on this machine, or Refused saying what is missing."""
    if ctx.spec.backend != "local":
        raise Refused(refuse(ctx, f"the {connector} connector runs the CLI on this machine: backend "
                                  f"{ctx.spec.backend!r} would need an image with {product} in it (execute with "
                                  f"--backend local; {why_local})"))
    try:
        binary = require_binary(ctx.ai, connector, default_name)
    except UsageError as e:
        raise Refused(refuse(ctx, f"{e.message} ({e.hint})")) from None
    key_name, key = api_key(ctx.ai, default_key_env)
    if key is None:
        raise Refused(refuse(ctx, f"{key_name} is not set: {product} needs an API key (name another variable with"
                                  " config api_key_env)", kind="auth"))
    return binary, key_name, key


def run_cli(ctx: RunContext, argv: list[str], env: dict[str, str], parser: StreamParser) -> Any:
    """Run the CLI in the sandbox, parsing stdout as it streams; returns the sandbox's RunResult."""
    spec = ctx.spec.model_copy(update={"env": {**ctx.spec.env, **env}})

    def on_output(stream: str, line: str) -> None:
        # The JSON events reach watchers as normalized events (ctx.on_event); only the rest is passed on as output.
        if stream == "stdout":
            if parser.feed(line):
                return
        else:
            parser.feed_stderr(line)
        if ctx.on_output is not None:
            ctx.on_output(stream, line)

    return ctx.sandbox.run(argv, workdir=ctx.workdir, spec=spec, on_output=on_output, cancel=ctx.cancel,
                           labels=ctx.labels)


def finish(ctx: RunContext, res: Any, parser: StreamParser, *, cli: str, model: str | None) -> ConnectorResult:
    """The ConnectorResult for a finished run: the CLI's own verdict, overridden by timeout, cancel, start errors."""
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
            error, kind = f"{cli} exited with {res.exit_code}: {detail}", kind_from_text(detail)
        error = error or f"{cli} failed"
    else:
        error, kind = None, None
    if kind is not None and not any(e["type"] == "error" and e.get("kind") == kind for e in parser.events):
        parser.emit({"type": "error", "kind": kind, "message": error, "retry_at": parser.retry_at})
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, **parser.usage, "turns": parser.turns}
    if res.start_error:
        transient = True
    else:
        transient = kind in TRANSIENT_KINDS
    return ConnectorResult(
        ok=ok and error is None, exit_code=res.exit_code, summary=parser.summary, error=error,
        transient=transient, timed_out=res.timed_out, cancelled=res.cancelled,
        transcript="\n".join(parser.transcript) + ("\n[stderr]\n" + res.stderr if res.stderr.strip() else ""),
        stdout=res.stdout, stderr=res.stderr, usage=usage, cost_usd=parser.cost_usd, duration_s=res.duration_s,
        sandbox=res.settings, error_kind=kind, retry_at=parser.retry_at if kind == "rate_limit" else None,
        session_id=parser.session_id, model=parser.model or model, events=parser.events,
    )


# A status code as CLIs quote it: "unexpected status 401 Unauthorized", "last status: 429 Too Many Requests",
# "API Error: 529 overloaded", "Request rejected (429)". Never a bare number: a URL's port may contain "429".
_STATUS_IN_TEXT = re.compile(r"(?i)(?:\bstatus:?|\bapi error:?|\bhttp)\s+(\d{3})\b|\((\d{3})\)")


def kind_from_text(text: str) -> str:
    """Error kind from a CLI's error message, when it gives no status code of its own."""
    match = _STATUS_IN_TEXT.search(text or "")
    if match:
        kind = kind_for_status(int(match.group(1) or match.group(2)))
        if kind != "other":
            return kind
    low = (text or "").lower()
    if any(w in low for w in ("rate limit", "too many requests", "usage limit")):
        return "rate_limit"
    if any(w in low for w in ("unauthorized", "forbidden", "invalid api key", "invalid x-api-key", "authenticat")):
        return "auth"
    if any(w in low for w in ("overloaded", "high demand", "temporarily unavailable")):
        return "overloaded"
    return "other"


__all__ = ["AGENT_CLIS_ENV", "StateDir", "StreamParser", "agent_clis_prefix", "api_key", "base_url", "clip",
           "cost_from_prices", "find_binary", "finish", "health", "kind_for_status", "kind_from_text",
           "prompt_of", "refuse", "require_binary", "retry_at_from_text", "run_cli"]
