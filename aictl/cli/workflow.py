"""`aictl workflow …`: YAML workflows of agent, command, approval and merge steps (docs/workflows.md)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import info
from aictl.domain.errors import NotInitialized, UsageError

app = noun_app("Workflows: YAML DAGs of agent and command steps, with conditions, loops and approvals.")

NameArg = Annotated[str, typer.Argument(help="Workflow name (.ai/workflows/NAME.yaml) or a file.", show_default=False)]
RunArg = Annotated[int, typer.Argument(help="Workflow run id.", show_default=False)]
LIVE_DAEMON_S = 15.0  # a daemon of this project that beat this recently advances runs itself


def _project() -> Path:
    settings = state.settings()
    if settings.project_dir is None:
        raise NotInitialized("no aictl project here (no .ai/ found)", hint="aictl init")
    return Path(settings.project_dir)


def _engine() -> Any:
    from aictl.workflows.engine import WorkflowEngine

    return WorkflowEngine(state.store(), state.settings(), policy=state.gate())


def _summary(w: Any, path: Path | None = None) -> dict[str, Any]:
    return {
        "name": w.name,
        "description": w.description,
        "source": str(path or w.source),
        "policy": w.policy,
        "inputs": {k: {"type": v.type, "required": v.required, "default": v.default} for k, v in w.inputs.items()},
        "steps": [{"id": s.id, "kind": s.kind, "needs": s.needs, "line": s.line} for s in w.steps],
    }


def _tree(run: Any) -> str:
    lines = [f"run {run.id} of {run.workflow}: {run.status}" + (f" ({run.reason})" if run.reason else "")]
    for s in run.definition.steps:
        st = run.steps[s.id]
        task = f" task {st.task_id}" if st.task_id else (f" tasks {st.tasks}" if st.tasks else "")
        after = f" after {', '.join(s.needs)}" if s.needs else ""
        lines.append(f"  {s.id:<16} {st.status:<17} {s.kind:<8} attempt {st.attempt}{task}{after}")
        if st.reason and st.status not in ("succeeded",):
            lines.append(f"  {'':<16} why: {st.reason[:300]}")
        if st.outputs:
            lines.append(f"  {'':<16} outputs: {st.outputs}")
    return "\n".join(lines)


RUN_COLUMNS = [
    ("id", lambda r: r.id),
    ("workflow", lambda r: r.workflow),
    ("status", lambda r: r.status),
    ("steps", lambda r: " ".join(f"{k}:{v.status}" for k, v in r.steps.items())),
    ("reason", lambda r: r.reason or ""),
]


@app.command("validate")
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Workflow files (default: every .ai/workflows/*.yaml).")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Check workflow files: unknown keys, cycles in needs, unknown steps or inputs, bad CEL, each with its line."""
    from aictl.domain.errors import AictlError
    from aictl.workflows.loader import listing, load_file

    out = state.output(output)
    paths = list(files or listing(_project()))
    results, bad = [], 0
    project = state.settings().project_dir
    for p in paths:
        try:
            w = load_file(p)
            if w.policy is not None and project is not None:
                _check_overlay(Path(project), p, w.policy)
            results.append({"file": str(p), "valid": True, "name": w.name, "issues": []})
        except AictlError as e:
            bad += 1
            issues = (e.details or {}).get("issues") or [{"line": None, "message": e.message}]
            results.append({"file": str(p), "valid": False, "issues": issues})
            if out.mode == "table":
                info(e.message)
    if out.mode == "table":
        info(f"{len(paths) - bad} of {len(paths)} workflow file(s) valid")
    else:
        out.emit(results)
    if bad:
        raise typer.Exit(2)


def _check_overlay(project: Path, path: Path, name: str) -> None:
    """The overlay a workflow names must exist in the project (a run would not start without it)."""
    from aictl.domain.errors import ConfigError
    from aictl.policy.sources import key_line, overlay_path

    overlay = overlay_path(project, name)
    if overlay.is_file():
        return
    line = key_line(path, "policy")
    message = f"policy overlay {name!r} does not exist ({overlay}); a run of this workflow would not start"
    raise ConfigError(
        f"{path}:{line}: {message}" if line else f"{path}: {message}",
        details={"issues": [{"line": line, "message": message}]},
    )


@app.command("list")
def list_(output: OutputOpt = None) -> None:
    """The project's workflows (.ai/workflows/*.yaml)."""
    from aictl.workflows.loader import listing, load_file

    out = state.output(output)
    rows = [_summary(load_file(p), p) for p in listing(_project())]
    out.emit(
        rows,
        name=lambda r: r["name"],
        columns=[
            ("name", lambda r: r["name"]),
            ("steps", lambda r: len(r["steps"])),
            ("description", lambda r: r["description"]),
        ],
    )


@app.command("show")
def show(name: NameArg, output: OutputOpt = None) -> None:
    """A workflow's inputs and steps."""
    from aictl.workflows.loader import find, load_file

    out = state.output(output)
    path = find(_project(), name)
    w = load_file(path)
    summary = _summary(w, path)

    def human(r: dict[str, Any]) -> str:
        lines = [f"workflow {r['name']} ({r['source']})", f"  {r['description']}"]
        if r["policy"]:
            lines.append(f"  policy overlay: {r['policy']} (.ai/policies/workflows/{r['policy']}.yaml)")
        lines.append("  inputs:")
        lines += [f"    {k}: {v}" for k, v in r["inputs"].items()]
        lines.append("  steps:")
        lines += [f"    {s['id']:<16} {s['kind']:<8} needs {s['needs'] or '-'}" for s in r["steps"]]
        return "\n".join(lines)

    out.emit(summary, human=human, name=lambda r: r["name"])


def _inputs(pairs: list[str] | None) -> dict[str, str]:
    got: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--input wants KEY=VALUE, got {pair!r}", hint="aictl workflow run feature --input goal=…")
        got[key.strip()] = value
    return got


def _daemon_alive() -> bool:
    import time

    from aictl.daemon.registry import DaemonRegistry

    project = str(state.settings().project_dir)
    return any(
        d["status"] == "running" and d["project"] == project and time.time() - d["heartbeat_at"] < LIVE_DAEMON_S
        for d in DaemonRegistry(state.store()).list()
    )


def _progress(mode: str) -> Any:
    import json
    import sys

    def emit(e: dict[str, Any]) -> None:
        if mode == "json":
            return
        if e["type"] == "step":
            why = f" ({e['reason'][:200]})" if e.get("reason") and e["status"] != "running" else ""
            task = f" task {e['task']}" if e.get("task") else ""
            sys.stderr.write(f"run {e['run']}: {e['step']} {e['status']} (attempt {e['attempt']}){task}{why}\n")
        elif e["type"] == "task" and e["outcome"] != "done":
            sys.stderr.write(f"run {e['run']}: task {e['task']} {e['outcome']}: {json.dumps(e.get('reason'))}\n")

    return emit


def _finish(out: Any, run: Any) -> None:
    out.emit(run, human=_tree, name=lambda r: r.id)
    if run.status in ("failed", "cancelled"):
        raise typer.Exit(1)


@app.command("run")
def run(
    name: NameArg,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="An input, KEY=VALUE (repeatable).")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the run ends (approvals, a daemon's tasks).")
    ] = False,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run the step tasks here even when a daemon of this project is up.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Start a run. Without a daemon, its step tasks run here with progress on stderr; with one, the daemon runs them.

    Exit 0 when the run succeeded or is still going (parked at an approval, or in a daemon's hands), 1 when it failed.
    """
    from aictl.workflows.loader import find, load_file

    out = state.output(output)
    w = load_file(find(_project(), name))
    engine = _engine()
    started = engine.start(w, _inputs(inputs))
    if out.mode == "table":
        info(f"workflow {w.name}: run {started.id} started")
    _drive(engine, started.id, out, wait=wait, foreground=foreground)


@app.command("resume")
def resume(
    run_id: RunArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run ends.")] = False,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run its step tasks here even with a daemon.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Drive a run on from where it is (after an approval, or a crash), in the foreground unless a daemon is up."""
    _drive(_engine(), run_id, state.output(output), wait=wait, foreground=foreground)


def _drive(engine: Any, run_id: int, out: Any, *, wait: bool, foreground: bool) -> None:
    import time

    from aictl.workflows.driver import drive

    if not foreground and _daemon_alive():
        r = engine.advance(run_id)
        while wait and not r.done:
            time.sleep(0.5)
            r = engine.get(run_id)
        _finish(out, r)
        return
    from aictl.execution.executor import Executor
    from aictl.mcp.inproc import InProcessTaskServers

    settings = state.settings()
    executor = Executor(
        state.store(), settings, policy=state.gate(), task_servers=InProcessTaskServers(settings, state.gate())
    )
    r = drive(engine, run_id, executor=executor, owner=settings.actor, wait=wait, on_progress=_progress(out.mode))
    _finish(out, r)


@app.command("runs")
def runs(
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs in this state: running, succeeded, failed, cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")] = 50,
    output: OutputOpt = None,
) -> None:
    """Workflow runs, newest first."""
    out = state.output(output)
    out.emit(_engine().runs(status=status, limit=limit), columns=RUN_COLUMNS, name=lambda r: r.id)


@app.command("status")
def status(run_id: RunArg, output: OutputOpt = None) -> None:
    """A run's steps: state, attempts, tasks, outputs, and why a step is waiting, skipped or failed."""
    out = state.output(output)
    out.emit(_engine().get(run_id), human=_tree, name=lambda r: r.id)


@app.command("cancel")
def cancel(
    run_id: RunArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")] = "",
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Stop a run: its unfinished steps are cancelled, and so are their tasks."""
    from aictl.workflows.engine import WorkflowEngine

    out = state.output(output)
    store = state.store()
    if dry_run:
        from aictl.cli.context import RollbackStore

        store = RollbackStore(store)
    r = WorkflowEngine(store, state.settings()).cancel(run_id, reason)
    out.emit(r, human=_tree, name=lambda x: x.id)


SCAFFOLD = """version: 1
name: {name}
description: "{description}"
inputs:
  goal: {{type: string, required: true}}
steps:
  - id: implement
    prompt: "Implement: ${{{{ inputs.goal }}}}"
    locks: ["src/**", "tests/**"]
    verify: pytest -q
    retry: {{until: steps.implement.verify.passed, max: 3}}
  - id: review
    needs: [implement]
    prompt: >-
      Review the change of task ${{{{ steps.implement.task }}}}. Answer with a JSON object
      {{"verdict": "APPROVE" or "CHANGES", "reasons": "..."}}.
    outputs: {{verdict: result.verdict}}
"""


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Name of the new workflow.", show_default=False)],
    from_: Annotated[
        str | None, typer.Option("--from", help="Start from this workflow (a name or a file) instead of the scaffold.")
    ] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Write .ai/workflows/NAME.yaml from a scaffold or another workflow; it is validated before it is written."""
    import re

    from aictl.domain.errors import Conflict
    from aictl.policy.sources import overlay_path
    from aictl.workflows.loader import NAME, find, load_text, workflow_dir

    out = state.output(output)
    if not NAME.match(name):
        raise UsageError(f"workflow name {name!r}: use letters, digits, '.', '_' or '-'")
    target = workflow_dir(_project()) / f"{name}.yaml"
    if target.exists():
        raise Conflict(f"{target} exists already", hint=f"edit it, or pick another name than {name}")
    if from_:
        text = find(_project(), from_).read_text(encoding="utf-8")
        text = re.sub(r"(?m)^name:.*$", f"name: {name}", text, count=1)
    else:
        text = SCAFFOLD.format(name=name, description=f"{name}: implement, test, review")
    w = load_text(text, str(target))
    overlay = _overlay_to_copy(_project(), w.policy)
    if not dry_run:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if overlay is not None:
            overlay[1].parent.mkdir(parents=True, exist_ok=True)
            overlay[1].write_bytes(overlay[0].read_bytes())
    if out.mode == "table":
        info(("would write " if dry_run else "wrote ") + str(target))
        if overlay is not None:
            info(("would copy " if dry_run else "copied ") + f"the policy overlay it names to {overlay[1]}")
        elif w.policy is not None and not overlay_path(_project(), w.policy).exists():
            info(f"it names policy overlay {w.policy!r}: write {overlay_path(_project(), w.policy)} before a run")
    summary = _summary(w, target) | {"written": not dry_run, "overlay": str(overlay[1]) if overlay else None}
    out.emit(summary, human=lambda r: text.rstrip(), name=lambda r: r["name"])


def _overlay_to_copy(project: Path, name: str | None) -> tuple[Path, Path] | None:
    """(aictl's example overlay, where it goes) when the workflow names one the project lacks and aictl ships."""
    from aictl.policy.sources import overlay_path
    from aictl.workflows.loader import EXAMPLES

    if name is None:
        return None
    target = overlay_path(project, name)
    shipped = EXAMPLES.parent / "policies" / "workflows" / f"{name}.yaml"
    return (shipped, target) if shipped.is_file() and not target.exists() else None


@app.command("suggest")
def suggest(
    goal: Annotated[str, typer.Argument(help="What the workflow should achieve.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Name of the workflow to write.")] = "suggested",
    ai: Annotated[
        str | None, typer.Option("--ai", help="The registered AI that drafts it (default: the router's pick).")
    ] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """A planning AI drafts a workflow for a goal; it is validated and written to .ai/workflows/NAME.yaml only when
    valid (--dry-run prints it instead). An invalid draft is refused with its problems, file and line (exit 2)."""
    from aictl.domain.errors import Conflict
    from aictl.workflows.loader import NAME, workflow_dir
    from aictl.workflows.plan import suggest_workflow

    out = state.output(output)
    if not NAME.match(name):
        raise UsageError(f"workflow name {name!r}: use letters, digits, '.', '_' or '-'")
    target = workflow_dir(_project()) / f"{name}.yaml"
    if target.exists():
        raise Conflict(f"{target} exists already", hint="pick another --name")
    draft, w, body = suggest_workflow(state.store(), state.settings(), goal=goal, name=name, ai=ai, policy=state.gate())
    if not dry_run:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    if out.mode == "table":
        info(
            f"drafted by {draft.ai or 'the router'} (task {draft.task_id}); "
            + ("not written (dry run)" if dry_run else f"wrote {target}")
        )
    out.emit(
        _summary(w, target) | {"written": not dry_run, "planning_task": draft.task_id, "yaml": body},
        human=lambda r: body.rstrip(),
        name=lambda r: r["name"],
    )
