"""What an AI is told: prompt, system text, skills chosen by label, tools the policy allows."""

from __future__ import annotations

import pytest

from aictl.agents.context import activity_line, allowed_tools, build_prompt, build_system, skills_for
from aictl.domain.errors import ConfigError
from aictl.domain.models import AIRecord, Task


def task(**kw) -> Task:
    base = {"id": 7, "title": "Fix login", "status": "running", "created_at": 0.0, "updated_at": 0.0}
    return Task(**{**base, **kw})


def skill(root, name, front, body="Body text."):
    d = root / ".ai" / "skills" / name
    d.mkdir(parents=True)
    (d / "SKILL.md").write_text(f"---\n{front}\n---\n{body}\n")


def test_prompt_and_system_say_how_to_work():
    t = task(description="Users cannot log in after a password reset.", lock_paths=["src/auth/**"])
    assert build_prompt(t) == "Fix login\n\nUsers cannot log in after a password reset."
    assert build_prompt(t, "also add a test").endswith("Follow-up instructions:\nalso add a test")
    assert build_prompt(t, "also add a test", resuming=True) == "also add a test"
    system = build_system(t, verify="pytest -q", skills=["## Skill: x\nuse x"])
    assert "aictl task 7" in system and "current working directory" in system
    assert "src/auth/**" in system and "pytest -q" in system and "Do not commit" in system
    assert system.endswith("## Skill: x\nuse x")
    assert "verification" not in build_system(task())


def test_skills_without_labels_apply_to_all_and_labelled_ones_by_intersection(tmp_path):
    skill(tmp_path, "general", "name: general\ndescription: how we work")
    skill(
        tmp_path,
        "migrations",
        "name: migrations\ndescription: writing migrations\nlabels: [db, migration]",
        "Always add a down step.",
    )
    skill(tmp_path, "web", "name: web\ndescription: frontend\nlabels: frontend")
    (tmp_path / ".ai" / "skills" / "notes.md").write_text("not a skill dir")
    names = lambda texts: [t.splitlines()[0] for t in texts]  # noqa: E731
    texts = skills_for(task(labels=["db"]), tmp_path)
    assert sorted(names(texts)) == ["## Skill: general", "## Skill: migrations"]
    assert any("Always add a down step." in t and "writing migrations" in t for t in texts)
    assert names(skills_for(task(labels=["frontend"]), tmp_path)) == ["## Skill: general", "## Skill: web"]
    assert names(skills_for(task(), tmp_path)) == ["## Skill: general"]
    assert skills_for(task(), tmp_path / "elsewhere") == [] and skills_for(task(), None) == []


def test_a_malformed_skill_is_a_config_error_naming_the_file(tmp_path):
    skill(tmp_path, "bad", "name: bad")  # no description
    with pytest.raises(ConfigError, match=r"bad/SKILL.md:1: 'description' is required"):
        skills_for(task(), tmp_path)
    (tmp_path / ".ai" / "skills" / "bad" / "SKILL.md").write_text("no front matter")
    with pytest.raises(ConfigError, match="front matter"):
        skills_for(task(), tmp_path)


POLICY = """version: 1
default: deny
rules:
  - id: tools
    effect: allow
    match: {actions: [use_tool]}
  - id: no-run-for-local
    effect: deny
    match: {actions: [run_command], ai: ["ollama-*"]}
  - id: commands
    effect: allow
    match: {actions: [run_command]}
  - id: docs-only-cannot-write
    effect: deny
    match: {actions: [use_tool], ai_labels: [readonly]}
    when: 'context.tool in ["write", "run"]'
"""


def test_allowed_tools_follow_use_tool_and_run_command(tmp_path):
    from aictl.policy.gate import load_gate

    (tmp_path / ".ai").mkdir()
    (tmp_path / ".ai" / "policy.yaml").write_text(POLICY)
    gate = load_gate(tmp_path)
    row = {
        "id": 7,
        "title": "t",
        "type": "task",
        "priority": 0,
        "status": "claimed",
        "labels": "[]",
        "required_capabilities": "[]",
        "lock_paths": "[]",
        "exclusive": 0,
        "attempts": 0,
        "max_attempts": 3,
    }
    assert allowed_tools(gate, row, AIRecord(id="claude-1", connector="claude-code")) == [
        "read",
        "write",
        "list",
        "run",
    ]
    assert allowed_tools(gate, row, AIRecord(id="ollama-1", connector="ollama")) == ["read", "write", "list"]
    reader = AIRecord(id="claude-2", connector="claude-code", labels=["readonly"])
    assert allowed_tools(gate, row, reader) == ["read", "list"]
    assert allowed_tools(None, row, reader) is None  # no policy: every tool


def test_activity_lines():
    assert (
        activity_line({"type": "tool_call", "name": "write", "input": {"file_path": "src/x.py"}}) == "write: src/x.py"
    )
    assert activity_line({"type": "tool_call", "name": "run", "input": {"command": "pytest -q"}}) == "run: pytest -q"
    assert activity_line({"type": "message", "role": "assistant", "text": "I will\n fix it"}) == "I will fix it"
    assert len(activity_line({"type": "message", "text": "x" * 500})) == 160
    assert activity_line({"type": "usage", "input_tokens": 3}) is None
