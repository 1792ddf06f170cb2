"""`merge: auto`: the daemon lands done tasks on the integration branch itself, a dependent task starts from
the merged result, and the queue's lease keeps a second daemon from merging at the same time."""

from __future__ import annotations

from tests.daemon.conftest import CONFIG, git, wait_for


def test_the_daemon_merges_done_tasks_when_merge_is_auto(make_daemon_project):
    p = make_daemon_project(config=CONFIG + "merge: auto\n")
    policy = p.root / ".ai" / "policy.yaml"
    default_rule = "  - id: merge-needs-approval\n    effect: require_approval\n    match:\n      actions: [merge]\n"
    assert default_rule in policy.read_text()  # aictl init's policy: every merge waits for a person
    policy.write_text(
        policy.read_text().replace(
            default_rule, "  - id: was-merge-needs-approval\n    effect: allow\n    match:\n      actions: [claim]\n"
        )
        + """
  - id: merges-of-docs-need-a-human
    effect: require_approval
    match: {actions: [merge], task_labels: [docs]}
    reason: docs changes are reviewed before they land
  - id: merge-the-rest
    effect: allow
    match: {actions: [merge]}
    reason: the daemon lands verified work
"""
    )
    git(p.root, "commit", "-qam", "policy")
    base = git(p.root, "rev-parse", "main").strip()
    p.start("--workers", "2")
    a = p.create("a", "--lock", "src/a.py", "--command", "echo A > src/a.py")
    b = p.create("b", "-l", "docs", "--lock", "docs/b.md", "--command", "echo B > docs/b.md")
    # c depends on a and reads what a wrote: it starts from a's commit, merged or not.
    c = p.create("c", "--lock", "src/c.py", "--depends-on", str(a), "--command", "cat src/a.py > src/c.py")
    for tid in (a, c):
        wait_for(lambda tid=tid: p.task(tid).status == "merged", 90, f"the daemon to merge task {tid}")
    wait_for(lambda: p.task(b).status == "done", 60, "task b to finish")
    parked = lambda: [d for d in p.jcli("audit", "decisions", "--task", str(b)) if d["action"] == "merge"]  # noqa: E731
    wait_for(parked, 60, "the merge of b to be parked for approval")
    assert p.task(b).status == "done" and [d["effect"] for d in parked()] == ["require_approval"]
    p.cli("task", "approve", str(b), "--comment", "docs read", check=True)
    wait_for(lambda: p.task(b).status == "merged", 90, "the daemon to merge the approved task")
    assert [d["effect"] for d in parked()] == ["require_approval", "allow"]  # parked once, not every sweep
    assert git(p.root, "show", "main:src/c.py") == "A\n" and git(p.root, "show", "main:docs/b.md") == "B\n"
    assert git(p.root, "rev-list", "--count", f"{base}..main").strip() == "3"
    subjects = git(p.root, "log", "--format=%B", f"{base}..main")
    assert all(f"Aictl-Task: {t}" in subjects for t in (a, b, c))
    assert git(p.root, "for-each-ref", "refs/heads/aictl/").strip() == ""  # pruned with the merge
    assert p.cli("daemon", "stop").returncode == 0
    assert p.cli("audit", "verify").returncode == 0


def test_merge_manual_leaves_done_tasks_done(make_daemon_project):
    p = make_daemon_project()
    p.start()
    a = p.create("a", "--lock", "src/a.py", "--command", "echo A > src/a.py")
    wait_for(lambda: p.task(a).status == "done", 60, "the daemon to run the task")
    assert p.cli("daemon", "stop").returncode == 0
    assert p.task(a).status == "done"  # nobody merged it: merge is manual by default
