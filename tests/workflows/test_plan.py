"""`aictl plan` and `aictl workflow suggest` with a scripted planning model (anthropic SDK, fake provider):
a valid plan is shown and, with --apply, created in one transaction; a cyclic plan or an invalid workflow is refused."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.daemon.conftest import make_project
from tests.fakeprovider import reply

KEY = "sk-ant-test-KEYVALUE-0077"

PLAN = {
    "tasks": [
        {"key": "model", "title": "Add the User model", "locks": ["src/models/**"], "verify": "pytest -q",
         "capabilities": ["python"]},
        {"key": "api", "title": "Add the /users endpoint", "depends_on": ["model"], "locks": ["src/api/**"]},
        {"key": "docs", "title": "Document the endpoint", "depends_on": ["api", "model"], "locks": ["docs/**"]},
    ]
}  # fmt: skip


@pytest.fixture
def planner(tmp_path, fake_provider):
    root = make_project(tmp_path / "repo")
    env = {"ANTHROPIC_API_KEY": KEY}
    r = run_cli("ai", "register", "planner", "--connector", "anthropic", "--model", "claude-haiku-4-5",
                "--base-url", fake_provider.url, "-o", "json", cwd=root, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (root / "SPEC.md").write_text("# Users\nWHEN a client GETs /users THE SYSTEM SHALL list the users.\n")
    return root, env


def test_plan_shows_a_validated_dag_and_apply_creates_it_in_one_go(planner, fake_provider):
    root, env = planner
    fake_provider.script(reply("Here is the plan:\n```json\n" + json.dumps(PLAN) + "\n```"))
    r = run_cli("plan", "SPEC.md", "--ai", "planner", "-o", "json", cwd=root, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [t["key"] for t in out["tasks"]] == ["model", "api", "docs"] and out["created"] == []
    assert "THE SYSTEM SHALL list the users" in str(fake_provider.calls()[0].messages)  # the spec reached the AI
    fake_provider.script(reply(json.dumps(PLAN)))
    r = run_cli("plan", "SPEC.md", "--ai", "planner", "--apply", cwd=root, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "- model: Add the User model" in r.stdout and "  - api: Add the /users endpoint" in r.stdout
    tasks = json.loads(run_cli("task", "list", "-o", "json", cwd=root).stdout)
    made = {t["title"]: t for t in tasks if "planning" not in t["labels"]}
    assert set(made) == {"Add the User model", "Add the /users endpoint", "Document the endpoint"}
    docs, api, model = made["Document the endpoint"], made["Add the /users endpoint"], made["Add the User model"]
    assert sorted(docs["dependencies"]) == sorted([api["id"], model["id"]]) and docs["status"] == "blocked"
    assert model["lock_paths"] == ["src/models/**"] and model["verify"] == "pytest -q"


def test_a_cyclic_plan_is_refused_and_nothing_is_created(planner, fake_provider):
    root, env = planner
    bad = {"tasks": [{"key": "a", "title": "A", "depends_on": ["b"]}, {"key": "b", "title": "B", "depends_on": ["a"]}]}
    fake_provider.script(reply(json.dumps(bad)))
    r = run_cli("plan", "SPEC.md", "--ai", "planner", "--apply", "-o", "json", cwd=root, env=env, timeout=120)
    assert r.returncode == 2 and "dependency cycle" in json.loads(r.stderr)["error"]["message"]
    tasks = json.loads(run_cli("task", "list", "-o", "json", cwd=root).stdout)
    assert [t["labels"] for t in tasks] == [["ai:planner", "planning"]]  # only the planning run


SUGGESTED = """Sure:
```yaml
version: 1
name: whatever
description: test then ship
steps:
  - id: test
    command: pytest -q
  - id: ship
    needs: [test]
    approval: {reason: ship it}
```"""


def test_workflow_suggest_writes_only_a_valid_workflow(planner, fake_provider):
    root, env = planner
    fake_provider.script(reply(SUGGESTED.replace("needs: [test]", "needs: [tset]")))
    r = run_cli("workflow", "suggest", "test and ship", "--ai", "planner", "--name", "ship", "-o", "json",
                cwd=root, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "needs unknown step 'tset'" in r.stderr
    assert not (root / ".ai" / "workflows" / "ship.yaml").exists()
    fake_provider.script(reply(SUGGESTED))
    r = run_cli("workflow", "suggest", "test and ship", "--ai", "planner", "--name", "ship", "-o", "json",
                cwd=root, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "ship"
    assert run_cli("workflow", "validate", cwd=root).returncode == 0
    assert "name: ship" in (root / ".ai" / "workflows" / "ship.yaml").read_text()
