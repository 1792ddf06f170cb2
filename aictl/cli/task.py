"""`aictl task …`: parse, call the task service, render."""

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, EpochOpt, OutputOpt, OwnerOpt, TaskIdArg, noun_app
from aictl.cli.output import ago, info
from aictl.cli.taskview import TASK_COLUMNS, messages_human
from aictl.cli.taskview import task_human as _task_human
from aictl.domain.errors import NotFound, UsageError
from aictl.domain.limits import PRIORITY_MAX, PRIORITY_MIN, TTL_MAX, TTL_MIN

app = noun_app("Create, claim and finish tasks.")


def _emit_task(out: Any, task: Any, dry_run: bool = False) -> None:
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(task, columns=TASK_COLUMNS, human=_task_human)


def _owner(owner: str | None) -> str:
    return owner or state.settings().actor


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command("create")
def create(
    title: Annotated[str | None, typer.Argument(help="Task title.", show_default=False)] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="Longer description / instructions.")] = "",
    type_: Annotated[str, typer.Option("--type", help="Task type, e.g. feature, bugfix, chore.")] = "task",
    priority: Annotated[
        int, typer.Option("--priority", "-p", min=PRIORITY_MIN, max=PRIORITY_MAX, help="Higher runs first.")
    ] = 0,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Label (repeatable, or comma list).")] = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="Capability the claimer must have (repeatable).")
    ] = None,
    depends_on: Annotated[
        list[int] | None, typer.Option("--depends-on", "--dep", help="Task id this one waits for (repeatable).")
    ] = None,
    lock: Annotated[
        list[str] | None, typer.Option("--lock", help="Gitignore-style glob this task may change (repeatable).")
    ] = None,
    exclusive: Annotated[bool, typer.Option("--exclusive", help="Run alone: no other task may hold a claim.")] = False,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", min=1, help="Attempts before failing.")] = None,
    command: Annotated[
        str | None, typer.Option("--command", help="Shell command the `command` connector runs in the workspace.")
    ] = None,
    verify: Annotated[
        str | None, typer.Option("--verify", help="Verification command run after the agent, e.g. 'pytest -q'.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Create a batch of tasks from a YAML/JSON file ('-' = stdin).")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Cron expression: create a schedule that creates this task each "
            'time it fires, e.g. "0 * * * *" (see: aictl schedule).',
        ),
    ] = None,
    tz: Annotated[
        str | None, typer.Option("--tz", help="Time zone of --every, e.g. Europe/Berlin (default: this machine's).")
    ] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Create a task (or a batch with -f). Tasks with unfinished dependencies start blocked."""
    from aictl.tasks.service import TaskSpec

    out = state.output(output)

    def one_spec() -> TaskSpec:  # the task the options describe (a schedule fires the same spec)
        return TaskSpec.parse(
            title=title,
            description=description,
            type=type_,
            priority=priority,
            labels=_split(label),
            required_capabilities=_split(capability),
            depends_on=depends_on or [],
            lock_paths=lock or [],
            exclusive=exclusive,
            max_attempts=max_attempts,
            command=command,
            verify=verify,
        )

    if every is not None or tz is not None:
        from aictl.cli.schedule import create_schedule

        if every is None or file is not None or not title:
            raise UsageError(
                "--every needs a TITLE (not --file); --tz needs --every",
                hint='aictl task create "Nightly dependency bump" --every "0 3 * * *"',
            )
        create_schedule(out, one_spec(), every, tz, dry_run)
        return
    if file is not None:
        specs = _load_batch(file)
    elif title:
        specs = [one_spec()]
    else:
        raise UsageError("give a TITLE or --file", hint='aictl task create "Fix the login bug" --lock "src/auth/**"')
    tasks = state.tasks().create_many(specs, dry_run=dry_run)
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(tasks if file is not None else tasks[0], columns=TASK_COLUMNS, human=_task_human if file is None else None)


def _load_batch(path: Path) -> list[Any]:
    from aictl.tasks.batchfile import parse_batch

    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{name}: cannot read: {e.strerror}") from None
    return parse_batch(text, name)


@app.command("list")
def list_(
    status: Annotated[list[str] | None, typer.Option("--status", "-s", help="Filter by status (repeatable).")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Must carry this label.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Filter by (last) owner.")] = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="Requires this capability.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-L", min=0, help="At most this many (0 = all).")] = 500,
    output: OutputOpt = None,
) -> None:
    """List tasks, oldest first (the first 500 unless --limit says otherwise). An empty list is not an error."""
    from aictl.domain.status import TaskStatus

    out = state.output(output)
    statuses = _split(status)
    bad = [s for s in statuses if s not in {x.value for x in TaskStatus}]
    if bad:
        raise UsageError(f"unknown status {bad[0]!r}", hint=f"use one of: {', '.join(x.value for x in TaskStatus)}")
    tasks = state.queries().list(
        statuses=statuses or None,
        label=_split(label) or None,
        owner=owner,
        capability=_split(capability) or None,
        limit=limit + 1 if limit else None,
    )
    if limit and len(tasks) > limit:
        tasks = tasks[:limit]
        info(f"showing the first {limit} tasks; see all with --limit 0, or filter with --status/--label")
    out.emit(tasks, columns=TASK_COLUMNS)


@app.command("get")
def get(task_id: TaskIdArg, output: OutputOpt = None) -> None:
    """Show one task and its messages. `owner` is set only while a lease is held; last_owner, last_ai, last_epoch:
    the latest holder."""
    from aictl.execution import mailbox

    out = state.output(output)
    task = state.queries().get(task_id)
    notes = mailbox.history(state.store(), task_id)
    if out.mode in ("json", "yaml"):
        out.emit({**task.model_dump(mode="json"), "messages": notes})
    else:
        out.emit(task, columns=TASK_COLUMNS, human=lambda t: _task_human(t) + messages_human(notes))


def _claim_human(r: Any) -> str:
    return (
        f"claimed task {r['task'].id}: {r['task'].title}\n  owner {r['lease'].owner}, lease epoch "
        f"{r['lease'].lease_epoch}, expires {ago(r['lease'].lease_expires_at)}\n"
        f"  finish with: aictl task complete {r['task'].id} --owner {r['lease'].owner} "
        f"--epoch {r['lease'].lease_epoch}"
    )


@app.command("claim")
def claim(
    owner: OwnerOpt = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="Capabilities the claimer has (repeatable).")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Only tasks with this label.")] = None,
    task_id: Annotated[int | None, typer.Option("--id", help="Claim this task, not the next one.")] = None,
    ttl: Annotated[
        float | None, typer.Option("--ttl", min=TTL_MIN, max=TTL_MAX, help="Lease seconds (default lease_ttl).")
    ] = None,
    ai: Annotated[
        str | None,
        typer.Option(
            "--ai",
            help="Claim for this AI: the policy judges it, ai:<x> task labels must name it, a registered AI's "
            "labels, capabilities and concurrency limit apply (default: the owner).",
        ),
    ] = None,
    ai_label: Annotated[
        list[str] | None, typer.Option("--ai-label", help="Labels of that AI (default: its registered ones).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Block until a task can be claimed.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="With --wait: give up after N seconds.")] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Claim the highest-priority ready task under a lease. Exit 3 when there is none."""
    import math

    from aictl.tasks.claims import ClaimRequest, Claims

    out = state.output(output)
    store, settings, gate = state.store(), state.settings(), state.gate()
    ranker = None
    if ai:  # the router finds a registered AI: its labels, capabilities and concurrency limit apply
        from aictl.agents.router import Router

        ranker = Router(store, settings, policy=gate)
    claims = Claims(store, settings, policy=gate, ranker=ranker)
    result = claims.claim(
        ClaimRequest(
            owner=_owner(owner),
            task_id=task_id,
            ai=ai,
            capabilities=_split(capability) if capability is not None else None,
            labels=_split(label) or None,
            ai_labels=_split(ai_label) or None,
            ttl=ttl,
            dry_run=dry_run,
            wait=(math.inf if timeout is None else timeout) if wait else 0.0,
        )
    )
    if result is None:
        raise NotFound(
            "nothing to claim" + (f" within {timeout:g}s" if wait and timeout is not None else ""),
            hint="see why with: aictl task ready",
        )
    if dry_run:
        info("dry run: nothing was claimed")
    out.emit({"task": result.task, "lease": result.lease}, name=lambda r: r["task"].id, human=_claim_human)


@app.command("heartbeat")
def heartbeat(
    task_id: TaskIdArg,
    epoch: EpochOpt,
    owner: OwnerOpt = None,
    ttl: Annotated[
        float | None, typer.Option("--ttl", min=TTL_MIN, max=TTL_MAX, help="New lease length in seconds.")
    ] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Extend a lease you hold."""
    out = state.output(output)
    lease = state.tasks(dry_run=dry_run).heartbeat(task_id, _owner(owner), epoch, ttl=ttl)
    if dry_run:
        info("dry run: the lease was not extended")
    out.emit(
        lease,
        name=lambda x: x.task_id,
        human=lambda x: f"lease on task {x.task_id} (epoch {x.lease_epoch}) expires {ago(x.lease_expires_at)}",
    )


@app.command("start")
def start(
    task_id: TaskIdArg, epoch: EpochOpt, owner: OwnerOpt = None, dry_run: DryRunOpt = False, output: OutputOpt = None
) -> None:
    """Mark a claimed task as running."""
    out = state.output(output)
    _emit_task(out, state.tasks(enforce=True).start(task_id, _owner(owner), epoch, dry_run=dry_run), dry_run)


def _parse_result(result: str | None) -> Any:
    if result is None:
        return None
    text = Path(result[1:]).read_text(encoding="utf-8") if result.startswith("@") else result
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"message": text}


@app.command("complete")
def complete(
    task_id: TaskIdArg,
    epoch: EpochOpt,
    owner: OwnerOpt = None,
    result: Annotated[str | None, typer.Option("--result", help="Result as JSON, text, or @FILE.")] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Finish a task you hold; dependents whose dependencies are all done become queued."""
    out = state.output(output)
    _emit_task(
        out,
        state.tasks(enforce=True).complete(
            task_id, _owner(owner), epoch, result=_parse_result(result), dry_run=dry_run
        ),
        dry_run,
    )


@app.command("fail")
def fail(
    task_id: TaskIdArg,
    epoch: EpochOpt,
    owner: OwnerOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why it failed.")] = "",
    retryable: Annotated[
        bool, typer.Option("--retryable", help="Transient: requeue with backoff while attempts remain.")
    ] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Fail an attempt of a task you hold."""
    out = state.output(output)
    _emit_task(
        out,
        state.tasks().fail(task_id, _owner(owner), epoch, reason=reason, retryable=retryable, dry_run=dry_run),
        dry_run,
    )


@app.command("release")
def release(
    task_id: TaskIdArg,
    epoch: EpochOpt,
    owner: OwnerOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why you give it back.")] = "",
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Give a claimed task back to the queue (no attempt counted); its locks are freed."""
    out = state.output(output)
    _emit_task(
        out, state.tasks(enforce=True).release(task_id, _owner(owner), epoch, reason=reason, dry_run=dry_run), dry_run
    )


@app.command("cancel")
def cancel(
    task_id: TaskIdArg,
    reason: Annotated[str, typer.Option("--reason", help="Why it is cancelled.")] = "",
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Cancel a task in any unfinished state (undo with: aictl task retry)."""
    out = state.output(output)
    _emit_task(out, state.tasks().cancel(task_id, reason=reason, dry_run=dry_run), dry_run)


@app.command("retry")
def retry(task_id: TaskIdArg, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Queue a failed or cancelled task again with a fresh attempt budget."""
    out = state.output(output)
    _emit_task(out, state.tasks().retry(task_id, dry_run=dry_run), dry_run)


@app.command("deps")
def deps(
    task_id: TaskIdArg,
    add: Annotated[list[int] | None, typer.Option("--add", help="Make the task depend on this id too.")] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Show what a task waits for and what waits for it; --add adds a dependency (cycles are refused)."""
    out = state.output(output)
    for dep in add or []:
        state.tasks().add_dependency(task_id, dep, dry_run=dry_run)
    nodes = state.queries().deps(task_id)
    out.emit(
        nodes,
        columns=[
            ("direction", lambda n: n.direction),
            ("depth", lambda n: n.depth),
            ("id", lambda n: n.id),
            ("status", lambda n: n.status),
            ("title", lambda n: n.title),
        ],
    )


@app.command("ready")
def ready(
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="Judge as a claimer with these capabilities.")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Only tasks with this label.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-L", min=1, help="At most N ready and N waiting tasks.")] = 20,
    output: OutputOpt = None,
) -> None:
    """What could be claimed now, in claim order, and why the rest cannot."""
    from aictl.agents.router import Router
    from aictl.tasks.claims import Claims

    out = state.output(output)
    store, settings, gate = state.store(), state.settings(), state.gate()
    entries = Claims(store, settings, policy=gate, ranker=Router(store, settings, policy=gate)).ready(
        capabilities=_split(capability) if capability is not None else None, labels=_split(label) or None, limit=limit
    )
    out.emit(
        entries,
        columns=[
            ("id", lambda e: e.id),
            ("ready", lambda e: e.ready),
            ("pri", lambda e: e.priority),
            ("status", lambda e: e.status),
            ("title", lambda e: e.title),
            ("why not", lambda e: "; ".join(e.reasons) or None),
        ],
    )


@app.command("reap")
def reap(dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Return tasks whose lease expired to the queue (or fail them after max attempts), stop their runs still
    going on this host, and fire due schedules."""
    from aictl.cli.context import RollbackStore
    from aictl.tasks.schedules import fire_due

    out = state.output(output)
    tasks = state.tasks(dry_run=dry_run).reap()
    stopped: list[str] = []
    home = state.settings().home
    if not dry_run and home is not None:
        from aictl.sandbox.runs import stop_stale_runs

        for t in tasks:  # a frozen holder's run on this host must not go on writing once its lease is gone
            stopped += stop_stale_runs(home / "workspaces", t.id, t.lease_epoch + 1)
    fired = fire_due(RollbackStore(state.store()) if dry_run else state.store(), state.settings())
    if out.mode == "table":
        would = "would have " if dry_run else ""
        info(f"{would}reaped {len(tasks)} expired lease(s)")
        if stopped:
            info(f"stopped their runs on this host: {'; '.join(stopped)}")
        if fired:
            info(
                f"{would}fired {len(fired)} due schedule(s)"
                + ("" if dry_run else f": created task(s) {', '.join(map(str, fired))}")
            )
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(tasks, columns=TASK_COLUMNS)


@app.command("locks")
def locks(output: OutputOpt = None) -> None:
    """Path locks held right now, with the task, owner and epoch holding each."""
    out = state.output(output)
    out.emit(
        state.queries().locks(),
        name=lambda lock: lock.pattern,
        columns=[
            ("task", lambda lock: lock.task_id),
            ("pattern", lambda lock: lock.pattern),
            ("owner", lambda lock: lock.owner),
            ("epoch", lambda lock: lock.lease_epoch),
            ("since", lambda lock: ago(lock.acquired_at)),
        ],
    )


EVIDENCE_COLUMNS = [
    ("id", lambda e: e.id),
    ("epoch", lambda e: e.lease_epoch),
    ("kind", lambda e: e.kind),
    ("name", lambda e: e.name),
    ("digest", lambda e: e.digest[:16]),
    ("size", lambda e: e.size),
    ("summary", lambda e: json.dumps(e.summary, sort_keys=True) if e.summary else None),
]


@app.command("evidence")
def evidence(task_id: TaskIdArg, output: OutputOpt = None) -> None:
    """Evidence recorded for a task (diffs, test reports, transcripts, logs)."""
    out = state.output(output)
    from aictl.audit.evidence import EvidenceTampered

    state.queries().get(task_id)  # NotFound for a wrong id, not an empty list
    refs = state.evidence().list(task_id)
    out.emit(
        refs,
        columns=[*EVIDENCE_COLUMNS, ("check", lambda e: "ok" if e.verified else "FAILS VERIFICATION")],
        name=lambda e: e.digest,
    )
    forged = [str(e.id) for e in refs if not e.verified]
    if forged:
        raise EvidenceTampered(
            f"evidence row(s) {', '.join(forged)} of task {task_id} fail verification: "
            "they no longer match the audit events that recorded them",
            hint="check the whole log: aictl audit verify",
        )


@app.command("attach")
def attach(
    task_id: TaskIdArg,
    epoch: EpochOpt,
    file: Annotated[Path, typer.Argument(help="File to attach ('-' = stdin).", show_default=False)],
    kind: Annotated[str, typer.Option("--kind", "-k", help="diff, test_report, transcript, log, …")] = "log",
    name: Annotated[str | None, typer.Option("--name", help="Name shown in listings (default: file name).")] = None,
    media_type: Annotated[str | None, typer.Option("--media-type", help="Default: from the file extension.")] = None,
    owner: OwnerOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Attach evidence to a task you hold (JUnit XML as --kind test_report is parsed to counts)."""
    import mimetypes

    out = state.output(output)
    if str(file) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise UsageError(f"{file}: cannot read: {e.strerror}") from None
    mt = media_type or mimetypes.guess_type(str(file))[0] or "text/plain"
    if mt == "text/xml":
        mt = "application/xml"
    put: dict[str, Any] = dict(
        kind=kind, name=name or file.name, media_type=mt, task_id=task_id, owner=_owner(owner), lease_epoch=epoch
    )
    if dry_run:  # the lease check, redaction and parsing run; the row rolls back, the blob goes to a temp dir
        import tempfile

        from aictl.cli.context import RollbackStore
        from aictl.tasks.fence import fenced_evidence

        with tempfile.TemporaryDirectory(prefix="aictl-dry-run-") as home:
            ref = fenced_evidence(RollbackStore(state.store()), Path(home), actor=state.settings().actor).put(
                data, **put
            )
        info("dry run: nothing was attached")
    else:
        ref = state.evidence().put(data, **put)
    out.emit(ref, columns=EVIDENCE_COLUMNS, name=lambda e: e.digest)


@app.command("messages")
def messages(
    task_id: TaskIdArg,
    send: Annotated[str | None, typer.Option("--send", help="Send this message to the task (as the actor).")] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Messages to and from a task (sent by agents over MCP, or with --send); unread ones reach its next attempt."""
    from aictl.cli.context import RollbackStore
    from aictl.execution import mailbox

    out = state.output(output)
    if send is not None:
        store = RollbackStore(state.store()) if dry_run else state.store()
        mailbox.send(store, sender=state.settings().actor, body=send, to_task=task_id)
        if dry_run:
            info("dry run: nothing was sent")
    out.emit(
        mailbox.history(state.store(), task_id),
        name=lambda m: m["id"],
        columns=[
            ("id", lambda m: m["id"]),
            ("time", lambda m: ago(m["created_at"])),
            ("from", lambda m: f"task {m['from_task_id']} ({m['sender']})" if m["from_task_id"] else m["sender"]),
            ("to", lambda m: f"task {m['to_task_id']}" if m["to_task_id"] is not None else f"ai {m['to_ai']}"),
            ("read", lambda m: f"epoch {m['read_epoch']}" if m["read_at"] else "unread"),
            ("body", lambda m: m["body"][:200]),
        ],
    )


def _progress_printer(out: Any) -> Any:
    """Progress on stderr while it runs (phase, elapsed, last output line); JSON lines on stdout with -o json."""
    started = time.monotonic()
    last_line = {"text": ""}

    def emit(event: dict) -> None:
        if out.mode == "json":
            sys.stdout.write(json.dumps(event, default=str) + "\n")
            sys.stdout.flush()
            return
        elapsed = time.monotonic() - started
        if event["type"] == "phase":
            extra = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "task_id", "phase", "ts"))
            info(f"[{elapsed:6.1f}s] task {event['task_id']}: {event['phase']}" + (f" ({extra})" if extra else ""))
        elif event["type"] == "output":
            last_line["text"] = event["line"]
            info(f"[{elapsed:6.1f}s]   {event['stream']}: {event['line'][:200]}")
        elif event["type"] == "agent":
            from aictl.agents.context import activity_line

            line = activity_line(event["event"])
            if line:
                info(f"[{elapsed:6.1f}s]   agent: {line}")
        elif event["type"] == "ai_paused":
            info(f"[{elapsed:6.1f}s] {event['ai']} paused: {event['reason']}")

    return emit


@app.command("execute")
def execute(
    task_id: Annotated[int | None, typer.Argument(help="Task id (default: the next ready task).")] = None,
    owner: OwnerOpt = None,
    ai: Annotated[
        str | None,
        typer.Option(
            "--ai", help="Registered AI that runs it (default: the router picks; a task with a command runs it)."
        ),
    ] = None,
    connector: Annotated[
        str | None,
        typer.Option(
            "--connector", help="Connector that does the work (default: the AI's; `command` for command tasks)."
        ),
    ] = None,
    command: Annotated[str | None, typer.Option("--command", help="Shell command (command connector).")] = None,
    verify: Annotated[str | None, typer.Option("--verify", help="Verification command, e.g. 'pytest -q'.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="Sandbox: local or docker.")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Git ref the workspace starts from.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Hard timeout of the run, seconds.")] = None,
    ttl: Annotated[
        float | None, typer.Option("--ttl", min=TTL_MIN, max=TTL_MAX, help="Lease seconds (heartbeats keep it alive).")
    ] = None,
    epoch: Annotated[int | None, typer.Option("--epoch", help="Adopt your existing claim instead of claiming.")] = None,
    keep: Annotated[bool, typer.Option("--keep-workspace", help="Keep the workspace even on success.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the agent session of the task's last run.")
    ] = False,
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="Follow-up instructions for the agent (resumes its last session if any)."),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Run a task end to end: claim, policy, git worktree, agent in a sandbox, evidence, checks, complete/fail.

    Without --ai the router picks the AI (see: aictl route ID); when that AI hits a rate
    limit it is paused and the task goes to the next eligible AI at once.
    """
    from aictl.execution.executor import ExecuteOptions, Executor

    out = state.output(output)
    if backend not in (None, "local", "docker"):
        raise UsageError(f"unknown backend {backend!r}", hint="use --backend local or --backend docker")
    settings = state.settings()
    notifier, printer = None, _progress_printer(out)
    if settings.notifications:  # the same channels as the daemon: an unattended `task execute` in CI tells people
        from aictl.daemon.notify import Notifier, exec_notification

        notifier = Notifier.from_settings(settings)

        def on_event(e: dict) -> None:
            printer(e)
            note = exec_notification(e)
            if note:
                notifier.notify(*note)

    executor = Executor(state.store(), settings, policy=state.gate(), on_event=on_event if notifier else printer)
    try:
        report = executor.execute(
            task_id,
            ExecuteOptions(
                owner=_owner(owner),
                ai=ai,
                connector=connector,
                command=command,
                verify=verify,
                backend=backend,
                base=base,
                timeout_s=timeout,
                ttl=ttl,
                epoch=epoch,
                keep_workspace=keep,
                resume=resume,
                message=message,
            ),
        )
        if notifier is not None and report.outcome.value == "failed":
            notifier.notify(
                "task.failed",
                {
                    "task_id": report.task.id,
                    "title": report.task.title,
                    "outcome": "failed",
                    "reason": report.reason,
                    "status": str(report.task.status),
                    "ai": report.ai,
                    "epoch": report.lease_epoch,
                },
            )
    finally:
        if notifier is not None:
            notifier.close(timeout=10.0)  # flush what is queued; a dead channel costs at most this
    if out.mode == "json":
        sys.stdout.write(json.dumps({"type": "report", **report.model_dump(mode="json")}) + "\n")
    else:
        out.emit(report, name=lambda r: r.task.id, human=_report_human)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _report_human(r: Any) -> str:
    lines = [f"task {r.task.id}: {r.outcome}" + (f" — {r.reason}" if r.reason else "")]
    if r.ai:
        lines.append(f"  ai:        {r.ai} ({r.connector})")
    if r.changed_paths:
        lines.append(f"  changed:   {', '.join(r.changed_paths[:20])}")
    if r.commit:
        lines.append(f"  commit:    {r.commit[:12]} on {r.branch}  (aictl task diff {r.task.id})")
    if r.workspace:
        lines.append(f"  workspace: {r.workspace}")
    lines.append(f"  evidence:  {len(r.evidence)} item(s)  (aictl task evidence {r.task.id})")
    return "\n".join(lines)


@app.command("workspace")
def workspace(task_id: TaskIdArg, output: OutputOpt = None) -> None:
    """Print the path of a task's kept workspace (kept after a failure, for inspection)."""
    from aictl.sandbox.workspace import WorkspaceManager

    out = state.output(output)
    s = state.settings()
    ws = WorkspaceManager(s.project_root, s.project_home / "workspaces").get(task_id)
    if ws is None:
        raise NotFound(
            f"task {task_id} has no workspace (removed after success, or never executed)",
            hint=f"see its changes with: aictl task diff {task_id}",
        )
    out.emit(ws, name=lambda w: w.path, human=lambda w: str(w.path))


@app.command("diff")
def diff(task_id: TaskIdArg, output: OutputOpt = None) -> None:
    """The changes on the task's branch (aictl/task-ID) against the base it started from (-o json: {task_id, diff})."""
    from aictl.sandbox.workspace import WorkspaceManager

    out = state.output(output)
    try:
        text = WorkspaceManager.from_settings(state.settings()).diff(task_id)
    except NotFound as missing:
        text = _merged_diff(task_id, missing)
    if out.mode == "table":  # the unified diff itself, for a pager or `git apply`
        sys.stdout.write(text)
        return
    out.emit({"task_id": task_id, "diff": text}, name=lambda d: d["task_id"])


def _merged_diff(task_id: int, missing: NotFound) -> str:
    """A merged task's branch is pruned with the merge: its diff is the one recorded as evidence of its run."""
    if state.queries().get(task_id).status != "merged":
        raise missing
    ev = state.evidence()
    diffs = [e for e in ev.list(task_id) if e.kind == "diff"]
    if not diffs:
        raise NotFound(f"task {task_id} was merged and its run recorded no diff", hint=f"aictl task evidence {task_id}")
    return ev.get(diffs[-1].digest).decode("utf-8", "replace")


@app.command("approve")
def approve(
    task_id: TaskIdArg,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (recorded).")] = "",
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Approve a task awaiting approval: it returns to the queue and may run."""
    out = state.output(output)
    _emit_task(out, state.tasks(enforce=True).approve(task_id, comment=comment, dry_run=dry_run), dry_run)


@app.command("reject")
def reject(
    task_id: TaskIdArg,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (recorded).")] = "",
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Reject a task awaiting approval: it fails, with your reason."""
    out = state.output(output)
    _emit_task(out, state.tasks(enforce=True).reject(task_id, comment=comment, dry_run=dry_run), dry_run)


@app.command("watch")
def watch(
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame (or, with -o json, one snapshot) and exit.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", "-n", min=0.1, help="Seconds between refreshes.")] = 1.0,
    limit: Annotated[int, typer.Option("--limit", "-L", min=1, help="Rows per section.")] = 10,
    since: Annotated[
        int | None,
        typer.Option("--since", min=0, help="With -o json: stream events after this id (default: from now)."),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Live view of the queue: counts, running tasks with their AI and latest action, approvals, failures.

    With -o json, stream audit events instead, one JSON object per line, until Ctrl-C.
    """
    from aictl.cli import watch as view

    out = state.output(output)
    store = state.store()
    if out.mode == "json":
        if once:
            view.snapshot_json(store, limit=limit)
        else:
            view.run_stream(store, since=since, interval=interval)
        return
    if out.mode != "table":
        raise UsageError(f"task watch shows a table or streams JSON, not {out.mode}", hint="use -o json")
    s = state.settings()
    view.run_view(store, title=str(s.project_dir or ""), interval=interval, limit=limit, once=once)
