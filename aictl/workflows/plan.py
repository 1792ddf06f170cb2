"""Plans from a planning AI: `aictl plan SPEC.md` (a task DAG) and `aictl workflow suggest GOAL` (a workflow).

The planning AI is asked through a task of its own, run by the Executor like any other: so every connector can
plan (Claude Code, Codex, the API connectors, Ollama, even a command), and policy, sandbox, evidence and audit
apply to the planning run too. The task declares no lock paths, so a planner that edits files fails its checks.
Its final message must carry the plan (JSON, or YAML in a fenced block); nothing in it is trusted: the task DAG
goes through the same parser as `aictl task create -f` (aictl.tasks.batchfile) and a dry run of the one-
transaction batch create (cycles, unknown keys, lock globs), a workflow through the workflow loader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aictl.domain import limits
from aictl.domain.errors import ConfigError, UsageError

_FENCE = re.compile(r"```(json|ya?ml)?[ \t]*\n(.*?)```", re.S)

TASKS_FORMAT = """Answer with the plan only, as one JSON object (or YAML in a ```yaml block):
{"tasks": [{"key": "short-id", "title": "...", "description": "what to do and how to know it is done",
            "depends_on": ["key of an earlier task"], "locks": ["glob of the files it may change"],
            "capabilities": ["e.g. python"], "verify": "a shell command that passes when it is done"}]}
Keys are unique; depends_on names keys of this plan; no cycles; every task lists the files it changes as locks.
Do not change any file yourself."""

WORKFLOW_FORMAT = """Answer with one aictl workflow in a ```yaml block. Its shape:
version: 1
name: NAME
description: ...
inputs: {NAME: {type: string|list|int|bool, required: true|false, default: ...}}
steps:
  - id: step-id
    needs: [earlier step ids]
    prompt: "what an agent does; ${{ inputs.NAME }} and ${{ steps.ID.outputs.KEY }} are filled in"
    # or  command: "a shell command"    or  approval: {reason: "..."}    or  merge: true
    locks: ["globs of the files it may change"]
    verify: "a shell command that passes when the step is done"
    retry: {until: "steps.step-id.verify.passed", max: 3}
    when: "a CEL condition over inputs and steps"
    outputs: {KEY: result.KEY}
Do not change any file yourself."""


@dataclass
class Draft:
    """What the planning AI answered: its task (for the record) and the document it returned."""

    task_id: int
    ai: str | None
    text: str
    data: Any


def ask(
    store: Any,
    settings: Any,
    *,
    prompt: str,
    title: str,
    ai: str | None,
    policy: Any = None,
    on_event: Any = None,
) -> tuple[int, str | None, str]:
    """Run a planning task with `prompt` (through the Executor); (task id, AI, its final message)."""
    from aictl.execution.executor import Executor
    from aictl.execution.outcome import ExecuteOptions, Outcome
    from aictl.tasks.service import TaskService
    from aictl.tasks.spec import TaskSpec

    spec = TaskSpec(
        title=title[: limits.TITLE_MAX],
        description=prompt[: limits.DESCRIPTION_MAX],
        labels=["planning"] + ([f"ai:{ai}"] if ai else []),
        type="planning",
        max_attempts=1,
    )
    task = TaskService(store, settings).create(spec)
    report = Executor(store, settings, policy=policy, on_event=on_event).execute(
        task.id, ExecuteOptions(owner=settings.actor, ai=ai)
    )
    if report.outcome is not Outcome.DONE:
        raise UsageError(
            f"the planning AI did not answer: task {task.id} {report.outcome.value}: {report.reason}",
            hint=f"see its run: aictl task get {task.id}; aictl task evidence {task.id}",
        )
    result = report.task.result if isinstance(report.task.result, dict) else {}
    return task.id, report.ai, str(result.get("summary") or "")


def document(text: str, source: str) -> Any:
    """The plan a message carries: a fenced json/yaml block, else the whole message as JSON or YAML."""
    from aictl.yamlfile import parse_yaml

    blocks = _FENCE.findall(text)
    candidates = [body for _, body in blocks] or [text]
    last: ConfigError | None = None
    for body in reversed(candidates):
        body = body.strip()
        try:
            return json.loads(body)
        except ValueError:
            pass
        try:
            data = parse_yaml(body, source)
        except ConfigError as e:
            last = e
            continue
        if isinstance(data, (dict, list)):
            return data
    raise last or ConfigError(f"{source}: the planning AI's answer holds no JSON or YAML plan")


def plan_tasks(
    store: Any,
    settings: Any,
    *,
    spec_text: str,
    spec_name: str,
    ai: str | None,
    policy: Any = None,
    on_event: Any = None,
) -> tuple[Draft, list[Any]]:
    """Ask for a task DAG for a specification; (the draft, its validated TaskSpecs)."""
    prompt = (
        f"Plan the work for this specification as a DAG of tasks for coding agents.\n\n{TASKS_FORMAT}\n\n"
        f"--- {spec_name} ---\n{spec_text}"
    )
    task_id, who, text = ask(
        store, settings, prompt=prompt, title=f"plan: {spec_name}", ai=ai, policy=policy, on_event=on_event
    )
    source = f"plan from task {task_id}"
    data = document(text, source)
    return Draft(task_id, who, text, data), check_tasks(store, settings, data, source)


def check_tasks(store: Any, settings: Any, data: Any, source: str) -> list[Any]:
    """TaskSpecs from a plan document, checked by a dry run of the batch create (cycles, keys, lock globs)."""
    from aictl.domain.errors import AictlError
    from aictl.tasks.batchfile import parse_batch
    from aictl.tasks.service import TaskService

    specs = parse_batch(json.dumps(data), source)
    if not specs:
        raise ConfigError(f"{source}: the plan has no tasks")
    try:
        TaskService(store, settings).create_many(specs, dry_run=True)
    except AictlError as e:
        raise ConfigError(
            f"{source}: {e.message}", hint="ask again, or edit the plan and create it with task create -f"
        ) from None
    return specs


def apply_tasks(store: Any, settings: Any, specs: list[Any], policy: Any = None) -> list[Any]:
    """Create the plan's tasks in one transaction."""
    from aictl.tasks.service import TaskService

    return TaskService(store, settings, policy=policy).create_many(specs)


def suggest_workflow(
    store: Any, settings: Any, *, goal: str, name: str, ai: str | None, policy: Any = None, on_event: Any = None
) -> tuple[Draft, Any, str]:
    """Ask for a workflow for a goal; (the draft, the loaded Workflow, its YAML text). Invalid: WorkflowInvalid."""
    import yaml

    from aictl.workflows.loader import load_text

    prompt = f"Write an aictl workflow named {name} for this goal.\n\n{WORKFLOW_FORMAT}\n\n--- goal ---\n{goal}"
    task_id, who, text = ask(
        store, settings, prompt=prompt, title=f"suggest workflow: {name}", ai=ai, policy=policy, on_event=on_event
    )
    source = f"workflow suggested by task {task_id}"
    data = document(text, source)
    if isinstance(data, dict):
        data["name"] = name
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    wf = load_text(body, source)
    return Draft(task_id, who, text, data), wf, body


def tree(specs: list[Any]) -> str:
    """The plan as a tree: each task under the tasks it waits for (a task with several parents shows once)."""
    keys = {s.key: i for i, s in enumerate(specs) if s.key}
    children: dict[int | None, list[int]] = {}
    for i, s in enumerate(specs):
        parents = [keys[d] for d in s.depends_on if isinstance(d, str) and d in keys]
        children.setdefault(parents[-1] if parents else None, []).append(i)
    lines: list[str] = []

    def show(i: int, depth: int) -> None:
        s = specs[i]
        extra = [f"after {', '.join(map(str, s.depends_on))}"] if len(s.depends_on) > 1 else []
        extra += [f"locks {', '.join(s.lock_paths)}"] if s.lock_paths else []
        extra += [f"verify `{s.verify}`"] if s.verify else []
        extra += [f"needs {', '.join(s.required_capabilities)}"] if s.required_capabilities else []
        lines.append(f"{'  ' * depth}- {s.key or i + 1}: {s.title}" + (f"  ({'; '.join(extra)})" if extra else ""))
        for c in children.get(i, []):
            show(c, depth + 1)

    for root in children.get(None, []):
        show(root, 0)
    return "\n".join(lines)


__all__ = ["Draft", "apply_tasks", "check_tasks", "document", "plan_tasks", "suggest_workflow", "tree"]
