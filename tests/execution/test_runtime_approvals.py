"""require_approval means wait: at a tool call (the run ends, an approval grants that call to the next attempt)
and at the result check (the finished result waits with its diff; approving completes it). By CLI
(the daemon: tests/daemon/test_runtime_approval.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.agents.cli_fixtures import cli, cli_json, evidence_of, execute
from tests.agents.sdk_variants import KEYS
from tests.execution.conftest import git
from tests.fakeprovider import reply, tool

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


def register(capsys, fp) -> None:
    cli_json(
        capsys,
        *("ai", "register", "api-1", "--connector", "anthropic", "--model", "claude-haiku-4-5"),
        *("--base-url", fp.url, "--api-key-env", "ANTHROPIC_API_KEY", "--config", "retry_backoff_s=0.01"),
    )


def test_a_tool_call_that_needs_approval_parks_the_task_and_the_approval_grants_it(fake_provider, git_project, capsys):
    shutil.copy(REPO / "policies" / "migrations-need-approval.yaml", git_project / ".ai" / "policy.yaml")
    register(capsys, fake_provider)
    tid = cli_json(capsys, "task", "create", "add a migration", "--lock", "migrations/**")["id"]
    write = tool("write_file", {"path": "migrations/0001_users.sql", "content": "create table users (id int);\n"})
    fake_provider.script(reply("Adding the migration.", [write]))
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert rep["outcome"] == "awaiting_approval" and code != 0, (rep.get("reason"), err)
    assert "write_path migrations/0001_users.sql" in rep["reason"] and "migration-files-need-approval" in rep["reason"]
    assert rep["task"]["status"] == "awaiting_approval"
    assert len(fake_provider.calls("anthropic")) == 1  # the run ended at the call: the model was not asked again
    parked = [d for d in cli_json(capsys, "audit", "decisions", "--task", str(tid)) if d["action"] == "write_path"]
    assert [d["effect"] for d in parked] == ["require_approval"]

    assert cli_json(capsys, "task", "approve", str(tid), "--comment", "reviewed")["status"] == "queued"
    fake_provider.script(reply("Adding the migration.", [write]), reply("Added it."))
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)  # granted at the call and the result
    assert rep["changed_paths"] == ["migrations/0001_users.sql"]
    assert git(git_project, "show", f"{rep['commit']}:migrations/0001_users.sql").startswith("create table")
    writes = [d for d in cli_json(capsys, "audit", "decisions", "--task", str(tid)) if d["action"] == "write_path"]
    assert any(d["effect"] == "allow" and any("approved" in r for r in d["reasons"]) for d in writes)


@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_a_protected_path_in_the_result_waits_with_its_diff(git_project, capsys, verdict):
    command = "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/ci.yml"
    tid = cli_json(capsys, "task", "create", "add CI", "--lock", ".github/**", "--command", command)["id"]
    code, rep, err = execute(capsys, str(tid))
    assert rep["outcome"] == "awaiting_approval" and code != 0, (rep.get("reason"), err)
    assert ".github/workflows/ci.yml" in rep["reason"] and "protect-ci" not in ("", None)
    assert "+on: push" in evidence_of(capsys, tid)["diff"]  # the person decides on the diff
    got = cli_json(capsys, "task", verdict, str(tid))
    if verdict == "approve":
        assert got["status"] == "done" and got["result"]["changed_paths"] == [".github/workflows/ci.yml"]
        assert git(git_project, "show", f"{got['result']['commit']}:.github/workflows/ci.yml") == "on: push\n"
    else:
        assert got["status"] == "failed"
    code, out, _ = cli(capsys, "task", "get", str(tid), "-o", "json")
    assert json.loads(out)["status"] == got["status"]
