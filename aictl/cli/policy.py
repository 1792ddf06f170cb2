"""`aictl policy …`: check, explain, test and replay policies. None of these commands enforces anything."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt, noun_app
from aictl.cli.output import cell, info, iso
from aictl.domain.errors import ExitCode, UsageError

app = noun_app("Check, explain, test and replay the policy that judges AIs.")


def _project_dir() -> Path:
    """The project's directory, or the working directory outside a project (only the global policy applies)."""
    return state.settings().project_dir or Path.cwd()


def _is_test_file(path: Path) -> bool:
    return path.name.endswith(("_test.yaml", "_test.yml"))


def _validate_files(files: list[Path]) -> tuple[list[Any], int]:
    """(every issue, the number of rules) of each file on its own; *_test.yaml files are read as test files."""
    from aictl.policy.loader import load_model_file
    from aictl.policy.schema import PolicyFile, PolicyTestFile

    issues: list[Any] = []
    rules = 0
    for path in files:
        if _is_test_file(path):
            issues += load_model_file(path, PolicyTestFile)[1]
            continue
        policy, found = load_model_file(path, PolicyFile)
        issues += found
        if policy is not None:
            rules += len(policy.rules) + sum(len(section.rules) for section in policy.ai.values())
    return issues, rules


def _validate_hierarchy() -> tuple[list[Any], int, int]:
    """(every issue, rules, files) of global → project → per-AI files, conflicts between levels included."""
    from aictl.domain.errors import ConfigError
    from aictl.policy.loader import PolicyIssue
    from aictl.policy.merge import load_effective_policy

    try:
        policy = load_effective_policy(_project_dir())
    except ConfigError as exc:
        raw = exc.details.get("issues") or [{"file": exc.details.get("file", "<policy>"), "message": exc.message}]
        return [PolicyIssue.model_validate(issue) for issue in raw], 0, 0
    return [], sum(len(layer.rules) for layer in policy.layers), len(policy.sources)


@app.command("validate")
def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Policy files to check on their own (*_test.yaml as test files). "
            "Default: the project's whole hierarchy.",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Check policy files: every problem as file:line:col: message. Exit 2 if there is any.

    Without FILE, checks what enforcement loads: the global policy, .ai/policy.yaml and
    .ai/policies/ai/*.yaml, and the conflicts between them (a final rule loosened later).
    """
    out = state.output(output)
    if files:
        issues, rules = _validate_files(files)
        count = len(files)
    else:
        issues, rules, count = _validate_hierarchy()
    if out.mode in ("json", "yaml"):
        out.emit(issues)
    elif issues:
        for issue in issues:
            sys.stderr.write(f"{issue}\n")
        info(
            f"{len(issues)} problem{'s' if len(issues) != 1 else ''} in {len({issue.file for issue in issues})} file(s)"
        )
    elif count == 0:
        info("ok: no policy file found, so every request is denied; create one with: aictl init")
    else:
        info(f"ok: {rules} rules from {count} file{'s' if count != 1 else ''}")
    if issues:
        raise typer.Exit(ExitCode.USAGE)


def _parse_context(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    source = text
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{text[1:]}: cannot read: {exc.strerror}") from None
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--context is not valid JSON: {exc}", hint='e.g. --context \'{"branch": "main"}\'') from None
    if not isinstance(value, dict):
        raise UsageError("--context must be a JSON object", hint='e.g. --context \'{"branch": "main"}\'')
    return value


def _task_subject(task_id: int) -> tuple[dict[str, Any], int | None]:
    """resource.task exactly as the task plane builds it, and the task's lease epoch."""
    from aictl.tasks.queries import task_row
    from aictl.tasks.txn import task_facts

    with state.store().read() as tx:
        row = task_row(tx, task_id)
    return task_facts(row), row["lease_epoch"] or None


def _check_action(action: str) -> str:
    from aictl.policy.schema import KNOWN_ACTIONS

    if action not in KNOWN_ACTIONS:
        raise UsageError(f"unknown action {action!r}", hint=f"use one of: {', '.join(KNOWN_ACTIONS)}")
    return action


def _explanation_human(why: Any) -> str:
    decision = why.decision
    if decision.default_applied:
        head = f"effect: {decision.effect.upper()} (no rule matched; the default is {why.default})"
    else:
        head = f"effect: {decision.effect.upper()} (matched: {', '.join(decision.matched_rules)})"
    lines = [head]
    lines += [f"  reason: {reason}" for reason in decision.reasons]
    limits = decision.limits.model_dump(mode="json", exclude_none=True)
    if limits:
        lines.append(f"  limits: {json.dumps(limits, sort_keys=True)}")
    lines += [f"  warning: {warning}" for warning in why.warnings]
    if not why.rules:
        lines.append("no rules apply to this AI")
        return "\n".join(lines)
    rows = [("MATCHED", "EFFECT", "RULE", "SOURCE", "WHY")]
    rows += [
        (("yes" if t.matched else "no"), t.effect, t.id, f"{t.source}:{t.line}" if t.line else cell(t.source), t.why)
        for t in why.rules
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines.append(f"rules ({len(why.rules)}):")
    for row in rows:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return "\n".join(lines)


@app.command("explain")
def explain(
    action: Annotated[
        str, typer.Option("--action", "-a", help="Action, e.g. claim, write_path, run_command.", show_default=False)
    ],
    ai: Annotated[str | None, typer.Option("--ai", help="AI id asking (leave out for a human).")] = None,
    task_id: Annotated[
        int | None, typer.Option("--task", "-t", help="Task the action is on (read from the store).")
    ] = None,
    path: Annotated[list[str] | None, typer.Option("--path", help="Path the action touches (repeatable).")] = None,
    command: Annotated[str | None, typer.Option("--command", help="Command line, for run_command.")] = None,
    ai_label: Annotated[list[str] | None, typer.Option("--ai-label", help="Label of the AI (repeatable).")] = None,
    context: Annotated[str | None, typer.Option("--context", help="Context as a JSON object, or @FILE.")] = None,
    output: OutputOpt = None,
) -> None:
    """What would the project's policy decide, and why: every rule, matched or not, with the reason.

    A what-if: nothing is enforced and no decision record is written. Exit 0 whatever the
    effect. The request is built as the task plane builds it: with --task, resource.task
    holds the task's facts and subject.task_id / lease_epoch its id and epoch;
    subject.actor is the AI id.
    """
    from aictl.policy.engine import PolicyRequest, Resource, Subject
    from aictl.policy.engine import explain as run_explain
    from aictl.policy.merge import load_effective_policy

    out = state.output(output)
    _check_action(action)
    extra = _parse_context(context)
    task, epoch = _task_subject(task_id) if task_id is not None else (None, None)
    paths = path or []
    request = PolicyRequest(
        subject=Subject(ai=ai, ai_labels=ai_label or [], task_id=task_id, lease_epoch=epoch, actor=ai),
        action=action,
        resource=Resource(
            task=task,
            path=paths[0] if len(paths) == 1 else None,
            paths=paths if len(paths) > 1 else [],
            command=command,
        ),
        context=extra,
    )
    policy = load_effective_policy(_project_dir())
    if not policy.sources:
        from aictl.policy.gate import NO_POLICY_HINT

        info(f"note: no policy file found (global or .ai/policy.yaml): every request is denied; {NO_POLICY_HINT}")
    out.emit(run_explain(policy, request), human=_explanation_human, name=lambda e: e.decision.effect)


def _default_test_dir() -> Path:
    if Path("policies").is_dir():
        return Path("policies")
    try:
        project = state.settings().project_dir
    except Exception:  # noqa: BLE001 - a broken config must not stop a policy test run
        project = None
    return (project / ".ai") if project else Path(".ai")


def _case_lines(case: Any) -> list[str]:
    where = f"{case.file}:{case.line}" if case.line else case.file
    if case.passed:
        return [f"PASS  {where}  {case.name}"]
    if case.error:
        return [f"ERROR {where}  {case.name}", f"      {case.error}"]
    lines = [f"FAIL  {where}  {case.name}"]
    for field, diff in case.diff.items():
        lines.append(f"      {field}: expected {json.dumps(diff['expected'])}, got {json.dumps(diff['actual'])}")
    return lines


@app.command("test")
def test(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Directory (searched recursively) or one file. Default: policies/ if it exists, else .ai/.",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Run table-driven policy tests (*_test.yaml, and policies with tests:), like `opa test`.

    Exit 0 when every case passes, 1 when a case fails, 2 when a test or policy file
    cannot be read, a case cannot run (bad input, policy does not load) or there are no cases.
    """
    from aictl.policy.testing import run_policy_tests

    out = state.output(output)
    report = run_policy_tests(directory if directory is not None else _default_test_dir())
    broken = bool(report.issues) or any(case.error for case in report.cases)
    if out.mode in ("json", "yaml"):
        out.emit({**report.model_dump(mode="json"), "passed": report.passed, "failed": report.failed})
    else:
        lines = [str(issue) for issue in report.issues]
        for case in report.cases:
            lines += _case_lines(case)
        lines.append(
            f"{report.passed} passed, {report.failed} failed"
            + (f", {len(report.issues)} file error(s)" if report.issues else "")
            + f" in {len(report.files)} file(s)"
        )
        sys.stdout.write("\n".join(lines) + "\n")
    if broken:
        raise typer.Exit(ExitCode.USAGE)
    if report.failed:
        raise typer.Exit(ExitCode.FAILURE)


REPLAY_COLUMNS = [
    ("decision", lambda r: r.decision_id[:12]),
    ("time", lambda r: iso(r.ts)),
    ("ai", lambda r: r.ai),
    ("action", lambda r: r.action),
    ("task", lambda r: r.task_id),
    ("effect", lambda r: f"{r.old_effect} → {r.new_effect or 'error'}" if r.changed else r.old_effect),
    ("rules", lambda r: f"{cell(r.old_rules)} → {cell(r.new_rules)}" if r.changed else cell(r.old_rules)),
    ("note", lambda r: r.error or r.note),
]


@app.command("replay")
def replay(
    new_policy: Annotated[
        Path, typer.Argument(help="The policy file to try, in place of .ai/policy.yaml.", show_default=False)
    ],
    since: Annotated[
        str | None, typer.Option("--since", help="Only decisions at or after: ISO 8601 or 30m, 2h, 7d.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only decisions before: ISO 8601 or 30m, 2h, 7d.")
    ] = None,
    ai: Annotated[str | None, typer.Option("--ai", help="Only decisions about this AI id.")] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="Only decisions on this action.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="List unchanged decisions too.")] = False,
    alone: Annotated[bool, typer.Option("--alone", help="Use NEW_POLICY alone: no global or per-AI files.")] = False,
    output: OutputOpt = None,
) -> None:
    """Which recorded decisions would come out differently under NEW_POLICY (effect or matched rules).

    NEW_POLICY takes the place of the project file: the hierarchy is the global policy
    (user config dir), then NEW_POLICY with its ai: sections, then .ai/policies/ai/*.yaml
    (--alone: NEW_POLICY only). Each record's stored input is evaluated again. Inputs were
    stored with secrets masked, so a rule testing a secret value sees [REDACTED]. A
    completion refused for missing evidence is compared as the policy's allow. Exit 0.
    """
    from aictl.policy.records import DecisionLog
    from aictl.policy.replay import load_replay_policy, parse_when
    from aictl.policy.replay import replay as run_replay

    out = state.output(output)
    if action is not None:
        _check_action(action)
    start = parse_when(since) if since else None
    end = parse_when(until) if until else None
    policy = load_replay_policy(new_policy, _project_dir(), alone=alone)
    records = DecisionLog(state.store()).list(ai=ai, action=action, since=start)
    records = [r for r in records if end is None or r.ts < end]
    results = run_replay(records, policy)
    changed = [r for r in results if r.changed]
    shown = results if all_ else changed
    if out.mode == "table":
        info(f"{len(results)} decision(s) replayed, {len(changed)} would change")
    out.emit(shown, columns=REPLAY_COLUMNS, name=lambda r: r.decision_id)


@app.command("schema")
def schema(output: OutputOpt = None) -> None:
    """Print the JSON Schema of policy files (for editors: yaml-language-server)."""
    from aictl.policy.schema import export_json_schema, render_json_schema

    out = state.output(output)
    if out.mode == "yaml":
        out.emit(export_json_schema())
    else:
        sys.stdout.write(render_json_schema())
