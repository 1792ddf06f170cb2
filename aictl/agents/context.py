"""What an AI is told about a task: the prompt, the system text, its skills and the tools the policy allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOOLS = ("read", "write", "list", "run")


def build_prompt(task: Any, message: str | None = None, *, resuming: bool = False) -> str:
    """The user's request: the task's title and description; a follow-up message when there is one."""
    if resuming and message:
        return message
    prompt = task.title.strip()
    if task.description and task.description.strip():
        prompt += "\n\n" + task.description.strip()
    if message:
        prompt += "\n\nFollow-up instructions:\n" + message.strip()
    return prompt


def build_system(task: Any, *, verify: str | None = None, skills: list[str] | None = None) -> str:
    """How to work inside aictl, plus the skills that apply to the task."""
    lines = [
        f"You are working on aictl task {task.id} in a git worktree made for it; "
        "the current working directory is the root of that workspace.",
    ]
    if task.lock_paths:
        lines.append(
            "Only change files matching these paths (gitignore-style patterns): "
            + ", ".join(task.lock_paths)
            + ". A change to any other file fails the task."
        )
    else:
        lines.append("Change only what the task needs.")
    if verify:
        lines.append(f"When you are done, this verification command will be run in the workspace: {verify}")
    lines.append("Do not commit, push or create branches: aictl collects and commits your changes itself.")
    text = "\n".join(lines)
    for skill in skills or []:
        text += "\n\n" + skill
    return text


def skills_for(
    task: Any, project_dir: Path | str | None, ai: str | None = None, connector: str | None = None
) -> list[str]:
    """Texts of the skills `ai` gets for the task (aictl.skills.resolve), each with its whole body inlined."""
    return [skill_text(r.skill) for r in resolve_skills(task, project_dir, ai, connector)]


def resolve_skills(
    task: Any, project_dir: Path | str | None, ai: str | None = None, connector: str | None = None
) -> list[Any]:
    """The skills (aictl.skills.Resolved) `ai` gets for the task on `connector`; none without a project."""
    if project_dir is None:
        return []
    from aictl.skills import load_registry, resolve

    return resolve(load_registry(project_dir), task, ai, connector)


def skill_text(skill: Any) -> str:
    text = f"## Skill: {skill.name}\n{skill.description}"
    return text + "\n\n" + skill.body if skill.body else text


def allowed_tools(policy: Any, task_row: dict[str, Any], ai: Any, *, epoch: int | None = None) -> list[str] | None:
    """The aictl tools (read, write, list, run) the policy lets this AI use; None without a policy (all)."""
    if policy is None:
        return None
    from aictl.tasks.service import task_facts

    facts = task_facts(task_row)
    labels = list(getattr(ai, "labels", []) or [])
    ai_id = getattr(ai, "id", None)
    out = []
    for tool in TOOLS:
        record = policy.check(
            "use_tool", ai=ai_id, actor=ai_id, ai_labels=labels, task=facts, epoch=epoch, context={"tool": tool}
        )
        if record.effect != "allow":
            continue
        if tool == "run":
            record = policy.check(
                "run_command", ai=ai_id, actor=ai_id, ai_labels=labels, task=facts, epoch=epoch, context={"tool": tool}
            )
            if record.effect != "allow":
                continue
        out.append(tool)
    return out


def activity_line(event: dict[str, Any]) -> str | None:
    """One line for `task watch` from an agent event (tool calls and messages; others are not news)."""
    kind = event.get("type")
    if kind == "tool_call":
        name = event.get("name") or "tool"
        args = event.get("input")
        if isinstance(args, dict):
            detail = (
                args.get("command")
                or args.get("file_path")
                or args.get("path")
                or args.get("pattern")
                or json.dumps(args, sort_keys=True, default=str)
            )
        else:
            detail = "" if args is None else str(args)
        line = f"{name}: {detail}" if detail else str(name)
    elif kind == "message" and event.get("text"):
        line = str(event["text"]).strip()
    elif kind == "error":
        line = f"error: {event.get('message') or event.get('kind')}"
    else:
        return None
    line = " ".join(line.split())
    return line if len(line) <= 160 else line[:159] + "…"


__all__ = [
    "TOOLS",
    "activity_line",
    "allowed_tools",
    "build_prompt",
    "build_system",
    "resolve_skills",
    "skill_text",
    "skills_for",
]
