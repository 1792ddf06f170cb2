"""Every example in workflows/ run end to end in the foreground: agent steps by the real anthropic SDK against
the scripted fake provider, command steps and verification for real, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from aictl.agents.registry import Registry
from aictl.domain.errors import ConfigError
from aictl.domain.models import AIRecord
from tests.daemon.conftest import git
from tests.fakeprovider import reply, tool
from tests.workflows.conftest import EXAMPLES

KEY = "sk-ant-test-KEYVALUE-0042"
OVERLAYS = EXAMPLES.parent / "policies" / "workflows"


@pytest.fixture
def ex(wf, fake_provider, monkeypatch):
    """The wf project with the examples copied in, two AIs registered, pytest on the sandbox's PATH."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for f in EXAMPLES.glob("*.yaml"):
        shutil.copy(f, wf.root / ".ai" / "workflows" / f.name)
    overlays = wf.root / ".ai" / "policies" / "workflows"  # the policy overlays the examples name
    overlays.mkdir(parents=True)
    for f in OVERLAYS.glob("*.yaml"):
        if not f.name.endswith("_test.yaml"):
            shutil.copy(f, overlays / f.name)
    registry = Registry(wf.store, actor="ops")
    config = {"base_url": fake_provider.url, "api_key_env": "ANTHROPIC_API_KEY", "retry_backoff_s": 0.01}
    registry.register(AIRecord(id="coder", connector="anthropic", model="claude-haiku-4-5", capabilities=["python"],
                               config=config))  # fmt: skip
    registry.register(AIRecord(id="critic", connector="anthropic", model="claude-haiku-4-5", labels=["reviewer"],
                               config=config))  # fmt: skip
    wf.fp = fake_provider
    return wf


def commit(wf, files: dict[str, str]) -> None:
    for name, text in files.items():
        (wf.root / name).parent.mkdir(parents=True, exist_ok=True)
        (wf.root / name).write_text(text)
    git(wf.root, "add", "-A")
    git(wf.root, "commit", "-qm", "fixture")


def write(path: str, content: str, then: str = "Done.") -> list:
    return [reply("Writing it.", [tool("write_file", {"path": path, "content": content})]), reply(then)]


def prompts(wf) -> list[str]:
    return [str(c.messages) for c in wf.fp.calls()]


def approve_merges(wf, run):
    """The project policy (aictl init's) asks a human for every merge: approve each parked one, drive on."""
    for _ in range(10):
        if run.done:
            return run
        st = run.steps["merge"]
        for word in (st.reason or "").split():
            if word.isdigit() and "awaits approval" in (st.reason or ""):
                try:
                    wf.engine.svc.approve(int(word))
                except Exception:  # noqa: BLE001 - a number in the text that is not a parked task
                    pass
        run = wf.drive(run.id)
    return run


ADD_OK = "def add(a, b):\n    return a + b\n"
TEST_ADD = "from src.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def test_feature_loops_on_its_tests_goes_back_on_review_then_passes_approval_and_merges(ex):
    commit(ex, {"src/__init__.py": "", "src/calc.py": "def add(a, b):\n    raise NotImplementedError\n",
                "tests/__init__.py": "", "tests/test_calc.py": TEST_ADD})  # fmt: skip
    ex.fp.script(
        *write("src/calc.py", "def add(a, b):\n    return a - b\n"),  # implement 1: the tests fail
        *write("src/calc.py", ADD_OK),  # implement 2: they pass
        reply('{"verdict": "CHANGES", "reasons": "add a docstring"}'),  # review 1
        *write("src/calc.py", '"""Arithmetic."""\n\n\n' + ADD_OK),  # implement 3, after the review
        reply('Looks good.\n```json\n{"verdict": "APPROVE", "reasons": "fine"}\n```'),  # review 2
    )
    run = ex.run(ex.load("feature"), goal="add two numbers")
    assert run.steps["approve"].status == "waiting_approval", run.model_dump()
    impl = run.steps["implement"]
    assert impl.attempt == 3 and [ex.task(t).status.value for t in impl.tasks] == ["failed", "done", "done"]
    calls = prompts(ex)
    assert any("Feedback from the previous attempt" in c and "exited 1" in c for c in calls)  # the test log fed back
    assert any("add a docstring" in c and "Implement: add two numbers" in c for c in calls)  # the review fed back
    assert run.steps["review"].outputs == {"verdict": "APPROVE", "reasons": "fine"}
    assert run.steps["revise"].status == "skipped" and "is false" in run.steps["revise"].reason
    assert run.steps["merge"].status == "pending"  # the gate holds it
    ex.engine.svc.approve(run.steps["approve"].task_id, comment="ship")
    run = approve_merges(ex, ex.drive(run.id))
    assert run.status == "succeeded", run.model_dump()
    assert git(ex.root, "show", "main:src/calc.py").startswith('"""Arithmetic."""')
    assert run.steps["approve"].outputs["comment"] == "ship"
    # The review AI did the reviews, the coder the code (routing by the steps' ai:).
    assert {ex.task(t).ai for t in run.steps["review"].tasks} == {"critic"}
    assert {ex.task(t).ai for t in impl.tasks} == {"coder"}


def test_bugfix_reproduces_first_then_fixes_until_the_test_passes(ex):
    commit(ex, {"src/__init__.py": "", "src/calc.py": "def add(a, b):\n    return a - b\n", "tests/__init__.py": ""})
    ex.fp.script(
        *write("tests/test_bug.py", TEST_ADD),  # reproduce: fails, as it must
        *write("src/calc.py", "def add(a, b):\n    return a * b\n"),  # fix 1: still wrong
        *write("src/calc.py", ADD_OK),  # fix 2
    )
    run = ex.run(ex.load("bugfix"), bug="add(2, 3) returns -1")
    assert run.status == "succeeded", run.model_dump()
    assert run.steps["reproduce"].attempt == 1 and run.steps["fix"].attempt == 2
    fix = ex.task(run.steps["fix"].task_id)
    assert run.steps["reproduce"].task_id in fix.dependencies  # the fix started from the reproducing test
    assert git(ex.root, "show", f"aictl/task-{fix.id}:tests/test_bug.py") == TEST_ADD


def test_dependency_bump_pins_by_command_then_an_agent_adapts_the_code(ex):
    commit(ex, {"requirements.txt": "attrs==23.1\nrequests==2.0\n", "src/__init__.py": "",
                "src/calc.py": "VERSION = '2.0'\n", "tests/__init__.py": "",
                "tests/test_pin.py": "from src.calc import VERSION\n\n\ndef test_pin():\n"
                "    assert f'requests=={VERSION}' in open('requirements.txt').read()\n"})  # fmt: skip
    install = reply("Installing it first.", [tool("run_command", {"command": "pip install requests==2.31"})])
    ex.fp.script(install, *write("src/calc.py", "VERSION = '2.31'\n"))
    run = ex.run(ex.load("dependency-bump"), package="requests", version="2.31", policy=True)
    assert run.status == "succeeded", run.model_dump()
    adapt = ex.task(run.steps["adapt"].task_id)
    assert git(ex.root, "show", f"aictl/task-{adapt.id}:requirements.txt") == "attrs==23.1\nrequests==2.31\n"
    assert "requests==2.31" in adapt.description
    # The workflow's policy overlay (policy: dependency-bump) tightened its steps, and only them.
    assert "policy-overlay:dependency-bump" in adapt.labels
    with ex.store.read() as tx:
        rows = tx.all("SELECT task_id, action, effect, matched_rules, limits FROM decisions ORDER BY ts")
    rows = [r | {k: json.loads(r[k]) if isinstance(r[k], str) else r[k] for k in ("matched_rules", "limits")}
            for r in rows]  # fmt: skip
    refused = [r for r in rows if r["action"] == "run_command" and r["effect"] == "deny"]
    assert [r["task_id"] for r in refused] == [adapt.id]
    assert "dependency-bump/no-installs" in refused[0]["matched_rules"]
    assert "pip install" in str(ex.fp.calls()[1].messages)  # the refusal went back to the model, which went on
    executes = [r for r in rows if r["action"] == "execute" and r["task_id"] == adapt.id]
    assert executes and all(r["limits"]["max_runtime_s"] == 900 for r in executes), executes
    bump = ex.task(run.steps["bump"].task_id)  # the overlay lets the bump step write the pin (its `when`)
    assert not [r for r in rows if r["task_id"] == bump.id and r["effect"] == "deny"]


def test_a_workflow_whose_policy_overlay_is_missing_does_not_start(ex):
    (ex.root / ".ai" / "policies" / "workflows" / "dependency-bump.yaml").unlink()
    with pytest.raises(ConfigError, match=r"dependency-bump\.yaml does not exist"):
        ex.run(ex.load("dependency-bump"), package="requests", version="2.31")
    assert ex.engine.runs() == []


def test_fan_out_runs_one_step_per_item_then_joins(ex):
    ex.fp.script(*write("docs/auth.md", "# auth\n"), *write("docs/billing.md", "# billing\n"))
    run = ex.run(ex.load("fan-out"))
    assert run.status == "succeeded", run.model_dump()
    assert len(run.steps["document"].tasks) == 2
    assert run.steps["index"].outputs["index"].split() == ["auth.md", "billing.md", "index.md"]
