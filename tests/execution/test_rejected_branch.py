"""A result the checks refused never sits on a mergeable branch: it moves to refs/aictl/rejected/.

Real `aictl task execute` processes with the command connector: the agent writes `.env` (the default
policy's protect-secrets rule refuses it) or rewrites `.ai/policy.yaml` (refused by a protect rule
added here); the task fails, `aictl/task-N` is gone from refs/heads and the commit is kept under
refs/aictl/rejected/task-N-e1 for inspection. A clean result keeps its branch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.execution.conftest import git

PROTECT_POLICY = """
  - id: protect-policy
    effect: deny
    final: true
    match:
      actions: [write_path]
      paths: [".ai/policy.yaml"]
    reason: agents never rewrite the policy
"""


def _aictl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aictl.cli.main", *args], cwd=root, capture_output=True, text=True, timeout=120
    )


def _run(root: Path, command: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    created = _aictl(root, "task", "create", "hostile", "--command", command, "--lock", "**", "-o", "json")
    tid = json.loads(created.stdout)["id"]
    return tid, _aictl(root, "task", "execute", str(tid))


@pytest.mark.parametrize(
    "command", ["echo KEY=1 > .env; echo fine > ok.txt", "echo 'default: allow' >> .ai/policy.yaml"]
)
def test_a_refused_result_leaves_refs_heads(git_project, command):
    policy = git_project / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text().replace("rules:\n", "rules:" + PROTECT_POLICY, 1))
    git(git_project, "commit", "-qam", "protect the policy")
    tid, run = _run(git_project, command)
    assert run.returncode == 1 and "policy refuses changes" in run.stdout, run.stdout + run.stderr
    heads = git(git_project, "for-each-ref", "--format=%(refname)", "refs/heads/")
    assert f"refs/heads/aictl/task-{tid}" not in heads.split()
    ref = f"refs/aictl/rejected/task-{tid}-e1"
    changed = git(git_project, "show", "--name-only", "--format=", ref).split()
    assert changed and (".env" in changed or ".ai/policy.yaml" in changed)
    assert ref in run.stdout  # the report names where the refused result went


def test_a_clean_result_keeps_its_branch(git_project):
    tid, run = _run(git_project, "echo fine > ok.txt")
    assert run.returncode == 0, run.stderr
    assert git(git_project, "show", f"aictl/task-{tid}:ok.txt") == "fine\n"
    assert git(git_project, "for-each-ref", "refs/aictl/rejected/") == ""
