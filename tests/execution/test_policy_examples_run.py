"""Every example under policies/ works as shipped as `.ai/policy.yaml` for a real run: a scripted model (the real
Anthropic SDK against the fake provider) gets aictl's tools, reads and writes inside its locks, and the task ends
done with the change on its branch; each tool call is a decision made under that file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.agents.cli_fixtures import cli_json, execute
from tests.agents.sdk_variants import KEYS
from tests.execution.conftest import git
from tests.fakeprovider import reply, tool

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EXAMPLES = sorted(p for p in POLICIES.glob("*.yaml") if not p.name.endswith("_test.yaml"))


@pytest.mark.parametrize("policy", EXAMPLES, ids=lambda p: p.stem)
def test_an_agent_does_its_work_under_the_example(policy, fake_provider, git_project, capsys, monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    shutil.copy(policy, git_project / ".ai" / "policy.yaml")
    cli_json(
        capsys,
        *("ai", "register", "api-1", "--connector", "anthropic", "--model", "claude-haiku-4-5"),
        *("--base-url", fake_provider.url, "--api-key-env", "ANTHROPIC_API_KEY", "--config", "retry_backoff_s=0.01"),
    )
    tid = cli_json(capsys, "task", "create", "add src/new.py", "--lock", "src/**")["id"]
    fake_provider.script(
        reply("Reading first.", [tool("read_file", {"path": "src/app.py"})]),
        reply("Writing.", [tool("write_file", {"path": "src/new.py", "content": "x = 1\n"})]),
        reply("Added src/new.py."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    assert rep["changed_paths"] == ["src/new.py"]
    assert git(git_project, "show", f"{rep['commit']}:src/new.py") == "x = 1\n"
    first = fake_provider.calls("anthropic")[0]
    assert {"read_file", "write_file"} <= set(first.tools)  # the example gives agents tools
    decided = {
        (d["action"], d["resource"]["path"]): d
        for d in cli_json(capsys, "audit", "decisions", "--task", str(tid))
        if d["action"] in ("read_path", "write_path") and d["resource"].get("path")
    }
    for key in (("read_path", "src/app.py"), ("write_path", "src/new.py")):
        assert decided[key]["effect"] == "allow"
        assert [s["path"] for s in decided[key]["sources"]] == [str(git_project / ".ai" / "policy.yaml")]
