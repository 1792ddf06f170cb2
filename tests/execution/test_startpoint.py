"""Dependent tasks start from their dependencies' commits (aictl/sandbox/startpoint.py via the executor)."""

from __future__ import annotations

import json

from aictl.cli.main import main
from tests.execution.conftest import git


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys, *args) -> int:
    code, out, err = run(capsys, "task", "create", *args, "--lock", "**", "-o", "json")
    assert code == 0, err
    return json.loads(out)["id"]


def execute(capsys, tid):
    code, out, err = run(capsys, "task", "execute", str(tid), "--owner", "w1", "-o", "json")
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return code, next(x for x in lines if x.get("type") == "report"), err


def evidence(capsys, rep, name):
    digest = next(e["digest"] for e in rep["evidence"] if e["name"] == name)
    return json.loads(run(capsys, "audit", "evidence", digest)[1])


def test_chain_builds_on_each_previous_result_and_diff_shows_only_own_change(git_project, capsys):
    a = create(capsys, "a", "--command", "echo A > log.txt")
    b = create(capsys, "b", "--dep", str(a), "--command", "cat log.txt > /dev/null && echo B >> log.txt")
    c = create(capsys, "c", "--dep", str(b), "--command", "cat log.txt > /dev/null && echo C >> log.txt")
    for tid in (a, b, c):
        code, rep, err = execute(capsys, tid)
        assert code == 0 and rep["outcome"] == "done", (tid, rep.get("reason"), err)
    assert git(git_project, "show", f"aictl/task-{c}:log.txt") == "A\nB\nC\n"
    start = evidence(capsys, rep, "start_point.json")
    assert [(d["task_id"], d["how"]) for d in start["dependencies"]] == [(b, "fast_forward")]
    assert start["commit"] == git(git_project, "rev-parse", f"aictl/task-{b}").strip()
    assert git(git_project, "rev-parse", f"refs/aictl/base/task-{c}").strip() == start["commit"]
    diff = run(capsys, "task", "diff", str(c))[1]
    assert "+C" in diff and "+A" not in diff and "+B" not in diff


def test_two_dependencies_are_merged_with_a_recorded_commit(git_project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    b = create(capsys, "b", "--command", "echo B > b.txt")
    c = create(capsys, "c", "--dep", str(a), "--dep", str(b), "--command", "cat a.txt b.txt > both.txt")
    for tid in (a, b):
        assert execute(capsys, tid)[0] == 0
    code, rep, err = execute(capsys, c)
    assert code == 0, (rep.get("reason"), err)
    assert git(git_project, "show", f"aictl/task-{c}:both.txt") == "A\nB\n"
    start = evidence(capsys, rep, "start_point.json")
    assert [(d["task_id"], d["how"]) for d in start["dependencies"]] == [(a, "fast_forward"), (b, "merged")]
    merge = start["commit"]
    parents = git(git_project, "rev-list", "--parents", "-n1", merge).split()[1:]
    assert parents == [git(git_project, "rev-parse", f"aictl/task-{x}").strip() for x in (a, b)]
    assert git(git_project, "log", "-1", "--format=%an <%ae>", merge).strip() == "aictl <aictl@localhost>"
    assert f"Aictl-Dependency: {b}" in git(git_project, "log", "-1", "--format=%B", merge)
    diff = run(capsys, "task", "diff", str(c))[1]
    assert "b/both.txt" in diff and "b/a.txt" not in diff and "b/b.txt" not in diff


def test_conflicting_dependencies_fail_the_start_step_naming_the_files(git_project, capsys):
    a = create(capsys, "a", "--command", "echo A > README.md")
    b = create(capsys, "b", "--command", "echo B > README.md")
    c = create(capsys, "c", "--dep", str(a), "--dep", str(b), "--command", "echo ran > ran.txt")
    for tid in (a, b):
        assert execute(capsys, tid)[0] == 0
    code, rep, _ = execute(capsys, c)
    assert code == 1 and rep["outcome"] == "failed" and "README.md" in rep["reason"]
    assert rep["task"]["status"] == "failed"  # not retryable: the same commits conflict again
    assert "start step" in rep["task"]["result"]["error"]
    conflict = evidence(capsys, rep, "start_conflict.json")
    assert conflict["files"] == ["README.md"] and conflict["task_id"] == b
    assert not any(e["name"] == "run.json" for e in rep["evidence"])  # the agent never ran
