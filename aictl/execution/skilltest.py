"""`aictl skill test`: run a skill's own `tests:` cases against a chosen AI, each in a throwaway project.

A case's task (its prompt, labelled so the skill applies) runs through the normal executor in a fresh git
repository holding a copy of the project's skills and policy and the chosen AI's registration, so the project's
queue, branches and evidence are untouched. A case passes when the run ends with the expected status, the skill
reached the agent, and the agent's answer plus its diff contain each `contains` text and none of `not_contains`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from aictl.domain.errors import NotFound, UsageError


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=aictl@localhost", "-c", "user.name=aictl", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed in the skill-test project: {done.stderr.strip()}")
    return done.stdout


def _sandbox_project(project_dir: Path, into: Path) -> Path:
    root = into / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("A scratch repository for `aictl skill test`.\n", encoding="utf-8")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "skill test")
    home = root / ".ai"
    home.mkdir()
    (home / ".gitignore").write_text("*\n", encoding="utf-8")
    src = project_dir / ".ai"
    if (src / "skills").is_dir():
        shutil.copytree(src / "skills", home / "skills")
    if (src / "policy.yaml").is_file():
        shutil.copy2(src / "policy.yaml", home / "policy.yaml")
    return root


def run_skill_tests(
    project_dir: Path | str, store: Any, name: str, ai_id: str, *, ai_scope: str | None = None
) -> list[dict[str, Any]]:
    """One result per test case of skill `name` (as `ai_id` sees it), run by `ai_id`."""
    from aictl.agents.registry import Registry
    from aictl.config import load_settings
    from aictl.execution.executor import Executor
    from aictl.execution.outcome import ExecuteOptions
    from aictl.policy.gate import load_gate
    from aictl.skills import load_registry
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    project_dir = Path(project_dir)
    skill = load_registry(project_dir).find(name, ai_scope or ai_id)
    if skill is None:
        raise NotFound(f"no skill {name!r} for AI {ai_id}", hint="aictl skill list --ai " + ai_id)
    if not skill.tests:
        raise NotFound(
            f"skill {name!r} has no tests ({skill.source})",
            hint="add a `tests:` list of {prompt, expect: {status, contains}} to its front matter",
        )
    ai = Registry(store).get(ai_id)
    results = []
    for case in skill.tests:
        with tempfile.TemporaryDirectory(prefix="aictl-skill-test-") as tmp:
            root = _sandbox_project(project_dir, Path(tmp))
            settings = load_settings(root)
            scratch = open_store(settings.resolved_database_url)
            try:
                Registry(scratch, actor=settings.actor).register(ai)
                labels = case["labels"] or list(skill.labels[:1])
                task = TaskService(scratch, settings).create(
                    TaskSpec(title=case["prompt"], labels=labels, lock_paths=["**"])
                )  # a scratch repo: any file
                report = Executor(scratch, settings, policy=load_gate(root)).execute(
                    task.id, ExecuteOptions(owner="aictl-skill-test", ai=ai_id)
                )
                results.append(_judge(case, skill, report, root))
            finally:
                scratch.close()
    return results


def _judge(case: dict[str, Any], skill: Any, report: Any, root: Path) -> dict[str, Any]:
    result = report.task.result if isinstance(report.task.result, dict) else {}
    text = str(result.get("summary") or report.reason or "")
    if report.commit:
        text += "\n" + _git(root, "show", "--format=", report.commit)
    reached = [s["name"] for s in (report.skills or {}).get("skills", [])]
    expect = case["expect"]
    failures = []
    if report.outcome.value != expect["status"]:
        failures.append(
            f"status {report.outcome.value}, expected {expect['status']}"
            + (f" ({report.reason})" if report.reason else "")
        )
    if skill.name not in reached:
        failures.append(f"the skill did not reach the agent (it got: {', '.join(reached) or 'none'})")
    failures += [f"missing {t!r}" for t in expect["contains"] if t not in text]
    failures += [f"unexpected {t!r}" for t in expect["not_contains"] if t in text]
    return {
        "skill": skill.ref,
        "case": case["name"],
        "ok": not failures,
        "outcome": report.outcome.value,
        "failures": failures,
        "summary": str(result.get("summary") or ""),
    }


__all__ = ["run_skill_tests"]
