"""Every example skill (skills/ and aictl's own .ai/skills/) parses and reaches the tasks it is meant for."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aictl.agents.context import build_system, skills_for
from aictl.domain.models import Task
from aictl.skills import load_skill_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "skills").glob("*/SKILL.md")) + sorted((REPO / ".ai" / "skills").glob("*/SKILL.md"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_example_skill_parses_and_is_injected_for_its_labels(path, tmp_path):
    loaded = load_skill_file(path)
    skill = {"name": loaded.name, "description": loaded.description, "body": loaded.body, "labels": list(loaded.labels)}
    assert skill["name"] == path.parent.name and skill["description"] and skill["body"] and loaded.version == "1.0.0"
    project = tmp_path / "proj"
    shutil.copytree(path.parent, project / ".ai" / "skills" / path.parent.name)
    wanted = Task(id=1, title="t", status="queued", created_at=0, updated_at=0, labels=skill["labels"][:1])
    texts = skills_for(wanted, project)
    assert len(texts) == 1 and texts[0].startswith(f"## Skill: {skill['name']}")
    assert skill["body"].splitlines()[0] in build_system(wanted, skills=texts)
    other = Task(id=2, title="t", status="queued", created_at=0, updated_at=0, labels=["unrelated"])
    assert len(skills_for(other, project)) == (0 if skill["labels"] else 1)
