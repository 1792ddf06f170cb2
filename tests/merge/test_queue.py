"""`aictl merge`: done tasks land on the integration branch, conflicts and failed verifies go back."""

from __future__ import annotations

import json
import time

import pytest

from aictl.cli.main import main
from aictl.domain.errors import LeaseLost
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
    assert code == 0, (out, err)


def merge(capsys, *args):
    code, out, err = run(capsys, "merge", *args, "-o", "json")
    return code, json.loads(out) if out.strip() else None, err


def status(capsys, tid):
    return json.loads(run(capsys, "task", "get", str(tid), "-o", "json")[1])


def test_disjoint_tasks_merge_and_the_clean_worktree_fast_forwards(project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    b = create(capsys, "b", "--command", "echo B > b.txt")
    execute(capsys, a)
    execute(capsys, b)
    before = git(project, "rev-parse", "main").strip()
    code, rep, err = merge(capsys)
    assert code == 0, err
    assert [(e["task_id"], e["outcome"]) for e in rep["entries"]] == [(a, "merged"), (b, "merged")]
    assert git(project, "rev-list", "--count", f"{before}..main").strip() == "2"  # linear: rebased
    assert (project / "a.txt").read_text() == "A\n" and (project / "b.txt").read_text() == "B\n"
    assert rep["worktree"] == "fast_forwarded" and git(project, "status", "--porcelain") == ""
    assert status(capsys, a)["status"] == "merged" and status(capsys, b)["status"] == "merged"
    msg = git(project, "log", "-1", "--format=%B", "main")
    assert f"Aictl-Task: {b}" in msg and "Aictl-Chain-Head: " in msg
    events = json.loads(run(capsys, "audit", "log", "--task", str(b), "-o", "json")[1])
    landed = [e for e in events if e["action"] == "merged"]
    assert landed and landed[0]["data"]["commit"] == git(project, "rev-parse", "main").strip()
    assert merge(capsys)[0] == 0  # nothing left: still 0
    assert run(capsys, "audit", "verify")[0] == 0
    # Their branches and base refs went with the merge: the work is on main now.
    assert git(project, "for-each-ref", "refs/heads/aictl/", "refs/aictl/base/").strip() == ""
    code, out, err = run(capsys, "task", "diff", str(a))  # from the run's evidence now
    assert code == 0 and "+A" in out and "a.txt" in out, err


def test_workspace_prune_branches_deletes_only_merged_tasks_refs(project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    b = create(capsys, "b", "--command", "echo B > b.txt")
    execute(capsys, a)
    execute(capsys, b)
    git(project, "branch", "keep-me", f"aictl/task-{a}")  # a user's own branch is never aictl's to delete
    run(capsys, "merge", str(a), "-o", "json")
    # As if the merge had happened on a machine that could not prune (or before pruning existed):
    git(project, "update-ref", f"refs/heads/aictl/task-{a}", "keep-me")
    git(project, "update-ref", f"refs/aictl/base/task-{a}", "keep-me")
    code, out, err = run(capsys, "workspace", "prune", "--branches", "--dry-run", "-o", "json")
    assert code == 0 and [(r["task_id"], r["kind"]) for r in json.loads(out)] == [(a, "branch")], err
    assert git(project, "rev-parse", "--verify", "-q", f"aictl/task-{a}").strip()  # dry run: still there
    code, out, err = run(capsys, "workspace", "prune", "--branches", "-o", "json")
    assert [(r["task_id"], r["kind"]) for r in json.loads(out)] == [(a, "branch")], err
    refs = git(project, "for-each-ref", "--format=%(refname)", "refs/heads/", "refs/aictl/base/").split()
    assert f"refs/heads/aictl/task-{b}" in refs and f"refs/aictl/base/task-{b}" in refs  # done, not merged: kept
    assert f"refs/heads/aictl/task-{a}" not in refs and f"refs/aictl/base/task-{a}" not in refs
    assert "refs/heads/keep-me" in refs


def test_conflict_sends_the_second_back_target_intact_then_retry_merges(project, capsys):
    a = create(capsys, "a", "--command", "echo A > README.md")
    b = create(capsys, "b", "--command", "echo B >> README.md")
    execute(capsys, a)
    execute(capsys, b)
    code, rep, _ = merge(capsys)
    assert code == 1
    entries = {e["task_id"]: e for e in rep["entries"]}
    assert entries[a]["outcome"] == "merged" and entries[b]["outcome"] == "conflict"
    assert entries[b]["conflicts"] == ["README.md"]
    assert git(project, "show", "main:README.md") == "A\n"  # only A landed
    task_b = status(capsys, b)
    assert task_b["status"] == "queued" and task_b["result"]["merge"]["conflicts"] == ["README.md"]
    assert task_b["result"]["merge"]["onto"] == entries[b]["onto"]
    st = json.loads(run(capsys, "merge", "status", "-o", "json")[1])
    assert [(i["task_id"], i["state"]) for i in st["items"]] == [(b, "sent_back")]
    execute(capsys, b)  # the retry starts from the updated target (the main worktree's HEAD)
    code, rep, err = merge(capsys)
    assert code == 0, err
    assert git(project, "show", "main:README.md") == "A\nB\n"
    assert status(capsys, b)["status"] == "merged"


def test_verify_that_fails_only_on_the_merged_result_is_caught(project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    b = create(capsys, "b", "--command", "echo B > b.txt", "--verify", "test ! -e a.txt")
    execute(capsys, a)
    execute(capsys, b)  # its verify passes on its own branch
    tip_after_a = None
    code, rep, _ = merge(capsys)
    assert code == 1
    entries = {e["task_id"]: e for e in rep["entries"]}
    assert entries[b]["outcome"] == "verify_failed" and entries[b]["evidence"]
    tip_after_a = entries[a]["result_commit"]
    assert git(project, "rev-parse", "main").strip() == tip_after_a  # b never landed
    assert "test ! -e a.txt" in status(capsys, b)["result"]["merge"]["reason"]
    assert run(capsys, "audit", "evidence", entries[b]["evidence"])[1].startswith("$ test ! -e a.txt")


def test_merge_verify_and_dry_run_leave_everything_in_place(project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    execute(capsys, a)
    before = git(project, "rev-parse", "main").strip()
    code, rep, _ = merge(capsys, "--dry-run")
    assert code == 0 and rep["entries"][0]["outcome"] == "would_merge"
    assert git(project, "rev-parse", "main").strip() == before and status(capsys, a)["status"] == "done"
    (project / ".ai" / "config.yaml").write_text(
        "lease_ttl: 30\nheartbeat_interval: 1\nbackoff_base: 0\nmerge_verify: 'test -e nothing-here'\n"
    )
    code, rep, _ = merge(capsys)
    assert code == 1 and rep["entries"][0]["outcome"] == "verify_failed"
    assert git(project, "rev-parse", "main").strip() == before


def test_dirty_worktree_is_left_alone_and_said_so(project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    execute(capsys, a)
    (project / "README.md").write_text("local edit\n")
    code, out, err = run(capsys, "merge")
    assert code == 0 and "local changes: left alone" in err + out
    assert "a.txt" in git(project, "ls-tree", "--name-only", "main")
    assert (project / "README.md").read_text() == "local edit\n" and not (project / "a.txt").exists()


def test_chain_merges_in_dag_order_and_contains_every_change(project, capsys):
    a = create(capsys, "a", "--command", "echo A > log.txt")
    b = create(capsys, "b", "--dep", str(a), "--command", "cat log.txt >/dev/null && echo B >> log.txt")
    c = create(capsys, "c", "--dep", str(b), "--command", "cat log.txt >/dev/null && echo C >> log.txt")
    for tid in (a, b, c):
        execute(capsys, tid)
    code, rep, err = merge(capsys, str(c), str(b), str(a))
    assert code == 0, err
    assert [e["task_id"] for e in rep["entries"]] == [a, b, c]
    assert git(project, "show", "main:log.txt") == "A\nB\nC\n"


def test_policy_denying_merge_exits_5_and_keeps_the_task_done(project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    execute(capsys, a)
    policy = project / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text() + "  - id: no-merges\n    effect: deny\n    match:\n      actions: [merge]\n")
    before = git(project, "rev-parse", "main").strip()
    code, rep, _ = merge(capsys)
    assert code == 5 and rep["entries"][0]["outcome"] == "denied"
    assert status(capsys, a)["status"] == "done" and git(project, "rev-parse", "main").strip() == before


def test_merge_parked_for_approval_lands_after_task_approve(git_project, capsys):
    a = create(capsys, "a", "--command", "echo A > a.txt")
    execute(capsys, a)
    before = git(git_project, "rev-parse", "main").strip()
    code, rep, _ = merge(capsys)  # the template's merge-needs-approval rule
    assert code == 5 and rep["entries"][0]["outcome"] == "awaiting_approval"
    assert git(git_project, "rev-parse", "main").strip() == before and status(capsys, a)["status"] == "done"
    assert merge(capsys)[1]["entries"][0]["outcome"] == "awaiting_approval"  # still parked, not approved
    assert run(capsys, "task", "approve", str(a), "--comment", "ship it")[0] == 0
    assert status(capsys, a)["status"] == "done"
    code, rep, err = merge(capsys)
    assert code == 0, err
    assert rep["entries"][0]["outcome"] == "merged" and status(capsys, a)["status"] == "merged"
    assert git(git_project, "show", "main:a.txt") == "A\n"


def test_another_holder_of_the_queue_lease_makes_merge_exit_4_until_it_expires(project, capsys):
    from aictl.config import load_settings
    from aictl.merge.lease import QueueLease
    from aictl.merge.queue import MergeQueue
    from aictl.store import open_store

    a = create(capsys, "a", "--command", "echo A > a.txt")
    execute(capsys, a)
    settings = load_settings(str(project))
    store = open_store(settings.resolved_database_url)
    now = [time.time()]  # the CLI below reads the real clock
    other = QueueLease(store, "refs/heads/main", "other-host", ttl=30, clock=lambda: now[0])
    other.acquire()
    code, _, err = run(capsys, "merge")
    assert code == 4 and "held by other-host" in err
    assert status(capsys, a)["status"] == "done"
    now[0] += 10_000  # the other host is gone: its lease expired
    queue = MergeQueue(store, settings, clock=lambda: now[0], owner="this-host")
    report = queue.run()
    assert [e.outcome for e in report.entries] == ["merged"]
    with pytest.raises(LeaseLost):
        other.renew()  # fenced: the old holder may not move anything any more


def test_resolve_task_mode_creates_a_follow_up_and_leaves_the_target(project, capsys):
    cfg = project / ".ai" / "config.yaml"
    cfg.write_text(cfg.read_text() + "merge_conflicts: resolve_task\n")
    a = create(capsys, "a", "--command", "echo A > README.md")
    b = create(capsys, "b", "--command", "echo B > README.md", "--verify", "true")
    execute(capsys, a)
    execute(capsys, b)
    code, rep, _ = merge(capsys)
    assert code == 1
    entry = rep["entries"][1]
    assert entry["outcome"] == "conflict" and entry["followup_task"]
    follow = status(capsys, entry["followup_task"])
    assert follow["status"] == "queued" and f"#{b}" in follow["title"] and "README.md" in follow["description"]
    assert follow["verify"] == "true" and status(capsys, b)["status"] == "done"
    assert git(project, "show", "main:README.md") == "A\n"


def _merge_verify(project, command):
    cfg = project / ".ai" / "config.yaml"
    cfg.write_text(cfg.read_text() + f"merge_verify: '{command}'\n")


def test_a_passing_batch_is_verified_once(project, capsys, tmp_path):
    runs = tmp_path / "runs"
    _merge_verify(project, f"echo run >> {runs}")
    ids = [create(capsys, name, "--command", f"echo {name} > {name}.txt") for name in "abcd"]
    for tid in ids:
        execute(capsys, tid)
    code, rep, err = merge(capsys, "--batch", "4")
    assert code == 0, err
    assert [e["outcome"] for e in rep["entries"]] == ["merged"] * 4
    assert runs.read_text().count("run") == 1
    assert all(status(capsys, t)["status"] == "merged" for t in ids)
    assert set("abcd") <= {p[0] for p in git(project, "ls-tree", "--name-only", "main").split()}


def test_a_failing_batch_is_bisected_to_the_culprit(project, capsys, tmp_path):
    runs = tmp_path / "runs"
    _merge_verify(project, f"echo run >> {runs}; test ! -e c.txt")
    ids = {n: create(capsys, n, "--command", f"echo {n} > {n}.txt") for n in "abcd"}
    for tid in ids.values():
        execute(capsys, tid)
    code, rep, _ = merge(capsys, "--batch", "4")
    assert code == 1
    assert {e["task_id"]: e["outcome"] for e in rep["entries"]} == {
        ids["a"]: "merged",
        ids["b"]: "merged",
        ids["c"]: "verify_failed",
        ids["d"]: "merged",
    }
    assert runs.read_text().count("run") == 5  # abcd, ab, cd, c, d
    files = git(project, "ls-tree", "--name-only", "main").split()
    assert {"a.txt", "b.txt", "d.txt"} <= set(files) and "c.txt" not in files
    assert status(capsys, ids["c"])["status"] == "queued"


def test_a_sent_back_task_restarts_from_the_integration_branch_and_is_told_why(project, capsys):
    from aictl.execution.agent import merge_feedback
    from aictl.tasks.queries import TaskQueries

    git(project, "branch", "integration")
    cfg = project / ".ai" / "config.yaml"
    cfg.write_text(cfg.read_text() + "integration_branch: integration\n")
    a = create(capsys, "a", "--command", "echo A > README.md")
    b = create(capsys, "b", "--command", "cat README.md > seen.txt; echo B > README.md")
    execute(capsys, a)
    execute(capsys, b)
    assert merge(capsys)[0] == 1  # b conflicts with a on the integration branch
    assert git(project, "show", "main:README.md") == "hello\n"  # the checked-out branch is not the target
    from aictl.config import load_settings
    from aictl.store import open_store

    settings = load_settings(str(project))
    task_b = TaskQueries(open_store(settings.resolved_database_url)).get(b)
    assert "could not be merged" in merge_feedback(task_b) and "README.md" in merge_feedback(task_b)
    execute(capsys, b)
    assert git(project, "show", f"aictl/task-{b}:seen.txt") == "A\n"  # started from a's landed result
    assert merge(capsys)[0] == 0
    assert git(project, "show", "integration:README.md") == "B\n"
