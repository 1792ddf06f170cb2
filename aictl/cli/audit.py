"""`aictl audit …`: read the append-only event log."""

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import info, iso
from aictl.domain.errors import AictlError, NotFound

app = noun_app("Read the audit log of every state change.")

EVENT_COLUMNS = [
    ("id", lambda e: e.id),
    ("time", lambda e: iso(e.ts)),
    ("actor", lambda e: e.actor),
    ("action", lambda e: e.action),
    ("task", lambda e: e.task_id),
    ("epoch", lambda e: e.lease_epoch),
    ("change", lambda e: f"{(e.before or {}).get('status', '')}→{(e.after or {}).get('status', '')}"),
    ("data", lambda e: json.dumps(e.data, sort_keys=True) if e.data else None),
]


@app.command("log")
def log(
    task_id: Annotated[int | None, typer.Option("--task", "-t", help="Only events of this task.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-L", min=1, help="Only the last N events.")] = None,
    output: OutputOpt = None,
) -> None:
    """Events in order (oldest first)."""
    out = state.output(output)
    out.emit(state.queries().events(task_id=task_id, limit=limit), columns=EVENT_COLUMNS)


@app.command("show")
def show(event_id: Annotated[int, typer.Argument(help="Event id.")], output: OutputOpt = None) -> None:
    """One event in full."""
    out = state.output(output)
    events = state.queries().events(after_id=event_id - 1, limit=None)
    event = next((e for e in events if e.id == event_id), None)
    if event is None:
        raise NotFound(f"event {event_id} not found", hint="list events with: aictl audit log")
    out.emit(event, columns=EVENT_COLUMNS)


class ChainBroken(AictlError):
    code = "audit_chain_broken"


@app.command("verify")
def verify(
    against: Annotated[
        Path | None, typer.Option("--against", help="Also check every event of an earlier export is unchanged.")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken entry if anything was tampered with."""
    from aictl.audit.anchor import ANCHOR_REF, parse_anchor
    from aictl.audit.chain import verify as run_verify
    from aictl.policy.records import vouch_decisions

    out = state.output(output)
    text = _anchors()
    anchor = parse_anchor(text) if text is not None else None
    report = run_verify(state.store(), against=against, vouchers={"decision": vouch_decisions}, anchor=anchor)
    if out.mode in ("json", "yaml"):
        out.emit(report)
    elif report.ok:
        info(
            f"audit log intact: {report.checked} events, head {report.last_hash[:16]}…"
            + (f", {report.anchored} confirmed against {against}" if against else "")
            + (f", anchor event {report.anchor_id} in git ({ANCHOR_REF}) holds" if anchor else "")
        )
    if report.first_break is not None:
        raise ChainBroken(
            f"audit log tampered: {report.first_break.reason}",
            hint="compare with an exported copy: aictl audit verify --against FILE",
            details={"event_id": report.first_break.event_id},
        )


def _anchors():
    """The project's git anchor text (None: no project repository or no anchor yet)."""
    from aictl.audit.anchor import ANCHOR_REF
    from aictl.sandbox.workspace import NotAGitRepository, WorkspaceManager

    settings = state.settings()
    if settings.project_dir is None or settings.home is None:
        return None
    try:
        return WorkspaceManager.from_settings(settings).read_anchor(ANCHOR_REF)
    except NotAGitRepository:
        return None


@app.command("anchor")
def anchor(dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Record the chain head (event id and hash) in the project's git repository (refs/aictl/audit-head).

    Task runs do this on their own; `audit verify` then catches a log truncated together with its head.
    """
    from aictl.audit.anchor import ANCHOR_REF, anchor_text, head
    from aictl.sandbox.workspace import WorkspaceManager

    out = state.output(output)
    got = head(state.store())
    if got is None:
        raise NotFound("the audit log has no events to anchor yet")
    if not dry_run:
        WorkspaceManager.from_settings(state.settings()).write_anchor(ANCHOR_REF, anchor_text(*got))
    out.emit({"ref": ANCHOR_REF, "event_id": got[0], "hash": got[1], "dry_run": dry_run}, name=lambda a: a["event_id"])
    info(f"{'would anchor' if dry_run else 'anchored'} event {got[0]} in {ANCHOR_REF}")


@app.command("export")
def export(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Write to this file (default: stdout).")] = None,
    since: Annotated[int, typer.Option("--since-id", help="Only events after this id.")] = 0,
    output: OutputOpt = None,
) -> None:
    """Export the chain as JSON Lines (with prev_hash and hash) to keep a copy elsewhere.

    JSON Lines is the export format (`audit verify --against` reads it); -o json or yaml writes
    the same events as one array, -o name their ids.
    """
    import io
    import sys

    from aictl.audit.chain import export as run_export

    out = state.output(output)
    lines = out.mode == "table"
    buf = io.StringIO()
    if file is None:
        n = run_export(state.store(), sys.stdout if lines else buf, since_id=since)
    else:
        with file.open("w", encoding="utf-8") as f:
            n = run_export(state.store(), f if lines else buf, since_id=since)
    if not lines:
        events = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
        if file is None:
            out.emit(events, name=lambda e: e["id"])
        else:
            with file.open("w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
                out.emit(events, name=lambda e: e["id"])
    info(f"exported {n} events")


@app.command("evidence")
def evidence(digest: Annotated[str, typer.Argument(help="sha256 digest (or a unique prefix).")]) -> None:
    """Print one piece of evidence, checked against its digest."""
    import sys

    data = state.evidence().get(digest)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


DECISION_COLUMNS = [
    ("id", lambda d: d.decision_id[:12]),
    ("time", lambda d: iso(d.ts)),
    ("ai", lambda d: d.ai),
    ("action", lambda d: d.action),
    ("task", lambda d: d.task_id),
    ("effect", lambda d: d.effect),
    ("rules", lambda d: d.matched_rules),
    ("reasons", lambda d: "; ".join(d.reasons) or None),
]


def _decision_human(d) -> str:
    lines = [
        f"decision {d.decision_id}",
        f"  time:      {iso(d.ts)}",
        f"  effect:    {d.effect}" + ("" if d.enforced else " (not enforced)"),
    ]
    for label, value in (
        ("ai", d.ai),
        ("actor", d.actor),
        ("task", d.task_id),
        ("epoch", d.lease_epoch),
        ("action", d.action),
        ("rules", ", ".join(d.matched_rules) or None),
    ):
        if value is not None:
            lines.append(f"  {label + ':':<10} {value}")
    lines += [f"  reason:    {reason}" for reason in d.reasons]
    if d.limits:
        lines.append(f"  limits:    {json.dumps(d.limits, sort_keys=True)}")
    lines.append(f"  input:     {json.dumps(d.input, sort_keys=True)}")
    lines += [f"  policy:    {s['path']} (sha256 {s['sha256'][:16]}…)" for s in d.sources]
    lines.append(f"  eval:      {d.eval_ms:.3f} ms")
    return "\n".join(lines)


@app.command("decisions")
def decisions(
    task_id: Annotated[int | None, typer.Option("--task", "-t", help="Only decisions on this task.")] = None,
    ai: Annotated[str | None, typer.Option("--ai", help="Only decisions about this AI id.")] = None,
    effect: Annotated[
        str | None, typer.Option("--effect", "-e", help="Only this effect: allow, deny or require_approval.")
    ] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="Only this action, e.g. claim.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only at or after: ISO 8601 or 30m, 2h, 7d.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-L", min=1, help="Only the last N decisions.")] = None,
    output: OutputOpt = None,
) -> None:
    """Policy decision records, oldest first: who asked for what, the effect and the rules behind it."""
    from aictl.domain.errors import UsageError
    from aictl.policy.records import DecisionLog
    from aictl.policy.replay import parse_when

    out = state.output(output)
    if effect is not None and effect not in ("allow", "deny", "require_approval"):
        raise UsageError(f"unknown effect {effect!r}", hint="use one of: allow, deny, require_approval")
    records = DecisionLog(state.store()).list(
        task_id=task_id, ai=ai, effect=effect, action=action, since=parse_when(since) if since else None, limit=limit
    )
    out.emit(records, columns=DECISION_COLUMNS, name=lambda d: d.decision_id)


@app.command("decision")
def decision(
    decision_id: Annotated[str, typer.Argument(help="Decision id (or a unique prefix).", show_default=False)],
    output: OutputOpt = None,
) -> None:
    """One decision record in full: input (secrets masked), rules, reasons, limits, policy files and hashes."""
    from aictl.policy.records import DecisionLog

    out = state.output(output)
    out.emit(
        DecisionLog(state.store()).get(decision_id),
        columns=DECISION_COLUMNS,
        human=_decision_human,
        name=lambda d: d.decision_id,
    )
