"""`aictl ai …`: register AIs, label them, pause them, and check that they answer."""

import sys
import time
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import cell, info, iso
from aictl.domain.errors import ExitCode, UsageError

app = noun_app("Register the AIs that take tasks, and see whether they can.")

AiIdArg = Annotated[str, typer.Argument(help="AI id, e.g. claude-1.", show_default=False)]
LabelsArg = Annotated[list[str], typer.Argument(help="Labels (space or comma separated).", show_default=False)]


def _registry() -> Any:
    from aictl.agents.registry import Registry

    return Registry(state.store(), actor=state.settings().actor)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _state_of(ai: Any, now: float) -> str:
    if not ai.enabled:
        return "disabled"
    if ai.paused_until is not None and ai.paused_until > now:
        return f"paused until {iso(ai.paused_until)}"
    return "enabled"


def _columns(running: dict[str, int]) -> list:
    now = time.time()
    return [
        ("id", lambda a: a.id),
        ("connector", lambda a: a.connector),
        ("model", lambda a: a.model),
        ("capabilities", lambda a: a.capabilities),
        ("labels", lambda a: a.labels),
        ("running", lambda a: f"{running.get(a.id, 0)}/{a.max_concurrency}"),
        ("state", lambda a: _state_of(a, now)),
    ]


def _human(ai: Any, running: int | None = None) -> str:
    lines = [
        f"ai {ai.id}: {ai.connector}" + (f" / {ai.model}" if ai.model else ""),
        f"  state:          {_state_of(ai, time.time())}",
    ]
    if ai.pause_reason and ai.paused_until and ai.paused_until > time.time():
        lines.append(f"  pause reason:   {ai.pause_reason}")
    lines += [
        f"  capabilities:   {cell(ai.capabilities)}",
        f"  labels:         {cell(ai.labels)}",
        "  concurrency:    " + (f"{running}/" if running is not None else "") + str(ai.max_concurrency),
    ]
    for key, value in sorted(ai.config.items()):
        lines.append(f"  {key + ':':<15} {cell(value)}")
    return "\n".join(lines)


def _emit(out: Any, ai: Any, dry_run: bool = False) -> None:
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(ai, columns=_columns({}), human=_human)


@app.command("register")
def register(
    ai_id: AiIdArg,
    connector: Annotated[
        str,
        typer.Option(
            "--connector", help="claude-code, codex, anthropic, openai, ollama or command.", show_default=False
        ),
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="Model name, e.g. sonnet, gpt-5.5, qwen2.5-coder:7b.")
    ] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option("--capability", "-c", help="What it can do; tasks requiring a capability need it (repeatable)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Label; a task labelled ai:<label> wants an AI with it (repeatable)."),
    ] = None,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1, help="Tasks it may hold at once.")] = 1,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Provider URL (APIs, or the CLI's API).")] = None,
    binary: Annotated[str | None, typer.Option("--binary", help="CLI executable (path, or name on PATH).")] = None,
    arg: Annotated[list[str] | None, typer.Option("--arg", help="Extra argument for the CLI (repeatable).")] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="NAME of the environment variable holding the API key (never the key)."),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", help="More settings as key=value, e.g. max_turns=20, model_size_gb=4.7 (repeatable)."),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Register it disabled (the router skips it).")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an AI with this id.")] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Register an AI. Secrets are never stored: name the environment variable that holds the key."""
    from aictl.agents.registry import parse_config_pairs
    from aictl.domain.models import AIRecord

    out = state.output(output)
    cfg = parse_config_pairs(config or [])
    for key, value in (("base_url", base_url), ("binary", binary), ("api_key_env", api_key_env)):
        if value is not None:
            cfg[key] = value
    if arg:
        cfg["args"] = list(arg)
    from aictl.skills.resolve import check_project

    check_project(state.settings().project_dir)  # the skills it would get must load (exit 2, file:line)
    ai = AIRecord(
        id=ai_id,
        connector=connector,
        model=model,
        capabilities=_split(capability),
        labels=_split(label),
        max_concurrency=max_concurrency,
        config=cfg,
        enabled=not disabled,
    )
    _emit(out, _registry().register(ai, replace=replace, dry_run=dry_run), dry_run)


@app.command("list")
def list_(output: OutputOpt = None) -> None:
    """Registered AIs with what they hold now. An empty list is not an error."""
    out = state.output(output)
    reg = _registry()
    out.emit(reg.list(), columns=_columns(reg.running_counts()))


@app.command("get")
def get(ai_id: AiIdArg, output: OutputOpt = None) -> None:
    """Show one AI."""
    out = state.output(output)
    reg = _registry()
    ai = reg.get(ai_id)
    out.emit(ai, columns=_columns(reg.running_counts()), human=lambda a: _human(a, reg.running(a.id)))


@app.command("label")
def label(ai_id: AiIdArg, labels: LabelsArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Add labels to an AI."""
    _emit(state.output(output), _registry().label(ai_id, _split(labels), dry_run=dry_run), dry_run)


@app.command("unlabel")
def unlabel(ai_id: AiIdArg, labels: LabelsArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Remove labels from an AI."""
    _emit(state.output(output), _registry().unlabel(ai_id, _split(labels), dry_run=dry_run), dry_run)


@app.command("enable")
def enable(ai_id: AiIdArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Let the router assign tasks to this AI again."""
    _emit(state.output(output), _registry().enable(ai_id, dry_run=dry_run), dry_run)


@app.command("disable")
def disable(ai_id: AiIdArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Keep the router off this AI (tasks it holds run on)."""
    _emit(state.output(output), _registry().disable(ai_id, dry_run=dry_run), dry_run)


def parse_until(for_: str | None, until: str | None, now: float) -> float:
    """--for 90s|10m|2h|SECONDS or --until ISO-8601 (local time when no zone) → unix time."""
    from datetime import datetime

    if (for_ is None) == (until is None):
        raise UsageError("give one of --for or --until", hint="aictl ai pause claude-1 --for 30m")
    if until is None:
        assert for_ is not None  # exactly one of the two was given
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        text = for_.strip().lower()
        try:
            seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
        except ValueError:
            raise UsageError(f"--for wants a duration like 90s, 10m or 2h, not {for_!r}") from None
        if seconds <= 0:
            raise UsageError("--for must be positive")
        return now + seconds
    try:
        dt = datetime.fromisoformat(until)
    except ValueError:
        raise UsageError(f"--until wants an ISO time like 2025-06-01T12:00 or 12:00, not {until!r}") from None
    if len(until) <= 8 and ":" in until and "T" not in until and "-" not in until:  # a bare time: today
        dt = datetime.combine(datetime.fromtimestamp(now).date(), dt.time())
    return dt.timestamp()


@app.command("pause")
def pause(
    ai_id: AiIdArg,
    for_: Annotated[str | None, typer.Option("--for", help="How long: 90s, 10m, 2h.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Until when: ISO time, local unless it has a zone.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (shown by aictl route).")] = "",
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Keep the router off this AI until a time (as a rate limit does)."""
    out = state.output(output)
    when = parse_until(for_, until, time.time())
    _emit(out, _registry().pause(ai_id, when, reason or "paused by hand", dry_run=dry_run), dry_run)


@app.command("resume")
def resume(ai_id: AiIdArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """End a pause now."""
    _emit(state.output(output), _registry().resume(ai_id, dry_run=dry_run), dry_run)


@app.command("remove")
def remove(
    ai_id: AiIdArg,
    force: Annotated[bool, typer.Option("--force", help="Even while it holds running tasks.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm the removal.")] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Forget an AI. Refused while it holds tasks unless --force; needs --yes."""
    out = state.output(output)
    if not (yes or dry_run):
        raise UsageError(f"removing AI {ai_id} needs --yes", hint=f"aictl ai remove {ai_id} --yes")
    _emit(out, _registry().remove(ai_id, force=force, dry_run=dry_run), dry_run)


def _status_human(rows: list[dict]) -> None:
    for r in rows:
        mark = "ok  " if r["ok"] else "FAIL"
        sys.stdout.write(
            f"{mark} {r['id']} ({r['connector']}{' / ' + r['model'] if r['model'] else ''}): {r['health']['detail']}\n"
        )
        extra = [f"running {r['running']}/{r['max_concurrency']}", r["state"]]
        sys.stdout.write(f"     {', '.join(extra)}\n")


@app.command("status")
def status(
    ai_id: Annotated[str | None, typer.Argument(help="Only this AI (default: all).", show_default=False)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each provider.")] = 3.0,
    output: OutputOpt = None,
) -> None:
    """Check each AI for real (CLI --version, provider model list) with its load and pause. Exit 1 if any fails.

    A failing probe marks the AI unhealthy (the router skips it); a passing one lifts that mark.
    """
    from concurrent.futures import ThreadPoolExecutor

    from aictl.agents.health import UNHEALTHY_PAUSE_S, apply_probe, check

    out = state.output(output)
    reg = _registry()
    ais = [reg.get(ai_id)] if ai_id else reg.list()
    running = reg.running_counts()
    now = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(ais)))) as pool:
        results = list(pool.map(lambda a: check(a, timeout=timeout), ais))
    # the probe is the health signal: a failure pauses the AI as unhealthy, a pass lifts that pause
    ais = [apply_probe(reg, a, h, pause_s=UNHEALTHY_PAUSE_S, now=now) for a, h in zip(ais, results, strict=True)]
    rows = [
        {
            "id": a.id,
            "connector": a.connector,
            "model": a.model,
            "ok": bool(h["ok"]),
            "health": h,
            "enabled": a.enabled,
            "state": _state_of(a, now),
            "paused_until": a.paused_until,
            "pause_reason": a.pause_reason,
            "running": running.get(a.id, 0),
            "max_concurrency": a.max_concurrency,
        }
        for a, h in zip(ais, results, strict=True)
    ]
    if out.mode == "table":
        if not rows:
            info("no AI is registered; add one with: aictl ai register claude-1 --connector claude-code")
        _status_human(rows)
    else:
        out.emit(rows, name=lambda r: r["id"])
    if any(not r["ok"] for r in rows):
        raise typer.Exit(ExitCode.FAILURE)
