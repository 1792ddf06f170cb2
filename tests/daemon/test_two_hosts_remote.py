"""Several machines: two clones of one bare remote, one PostgreSQL database, `remote: origin`.

A host that finishes a task pushes its branch; a host that starts a dependent task fetches what it needs; the
merge queue runs on one host at a time and pushes the target. First by hand (so each crossing happens for
sure), then two daemons with `merge: auto` run a DAG of 20 tasks whose later tasks read earlier tasks' files.
"""

from __future__ import annotations

import pytest

from tests.daemon.conftest import CONFIG, git, make_project, wait_for

N_TASKS = 20
MERGE_NEEDS_APPROVAL = "  - id: merge-needs-approval\n    effect: require_approval\n"


def deps_of(k: int) -> list[int]:
    """Two chains (even, odd) that read each other every fourth task."""
    return [d for d in (k - 2, k - 1 if k % 4 == 3 else -1) if d >= 0]


def command_of(k: int) -> str:
    reads = " ".join(f"f{d}.txt" for d in deps_of(k))
    return f"{{ cat {reads} 2>/dev/null; echo {k}; }} > f{k}.txt" if reads else f"echo {k} > f{k}.txt"


def expected(k: int, memo: dict[int, str]) -> str:
    if k not in memo:
        memo[k] = "".join(expected(d, memo) for d in deps_of(k)) + f"{k}\n"
    return memo[k]


@pytest.mark.postgres
@pytest.mark.slow
def test_two_hosts_share_work_through_the_remote_and_the_merge_queue(tmp_path, pg_url, make_daemon_project):
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = make_project(tmp_path / "seed", config=CONFIG + "remote: origin\nmerge: auto\n")
    policy = seed / ".ai" / "policy.yaml"
    assert MERGE_NEEDS_APPROVAL in policy.read_text()  # aictl init's policy: merges wait for a person
    policy.write_text(
        policy.read_text().replace(MERGE_NEEDS_APPROVAL, "  - id: merge-allowed\n    effect: allow\n")
        + "  - id: share-task-branches\n    effect: allow\n    match: {actions: [push]}\n"
        "    reason: the hosts of this project share results through origin\n"
    )
    git(seed, "commit", "-qam", "merges and pushes are allowed here")
    git(seed, "push", "-q", str(bare), "main")
    hosts = []
    for name in ("alpha", "beta"):
        git(tmp_path, "clone", "-q", str(bare), str(tmp_path / name))
        env = {"AICTL_DATABASE_URL": pg_url, "AICTL_ACTOR": f"{name}@{name}-host"}
        hosts.append(make_daemon_project(root=tmp_path / name, env=env))
    alpha, beta = hosts

    # By hand: a on alpha; b (needs a) on beta fetches a's branch; beta merges both and pushes main;
    # c (needs b, merged) on alpha starts from the remote's main, which alpha never had.
    a = alpha.create("a", "--lock", "a.txt", "--command", "echo A > a.txt")
    b = alpha.create("b", "--lock", "b.txt", "--depends-on", str(a), "--command", "cat a.txt > b.txt; echo B >> b.txt")
    c = alpha.create("c", "--lock", "c.txt", "--depends-on", str(b), "--command", "cat b.txt > c.txt; echo C >> c.txt")
    assert alpha.cli("task", "execute", str(a), check=True)
    assert git(bare, "rev-parse", f"aictl/task-{a}").strip()  # pushed before it completed
    assert alpha.task(a).result["published"] == {"remote": "origin", "branch": f"aictl/task-{a}", "pushed": True}
    assert beta.cli("task", "execute", str(b), check=True)
    assert git(bare, "show", f"aictl/task-{b}:b.txt") == "A\nB\n"
    merged = beta.jcli("merge")
    assert [(e["task_id"], e["outcome"]) for e in merged["entries"]] == [(a, "merged"), (b, "merged")]
    assert git(bare, "show", "main:b.txt") == "A\nB\n"
    assert git(bare, "for-each-ref", "refs/heads/aictl/").strip() == ""  # merged branches leave the remote too
    assert alpha.cli("task", "execute", str(c), check=True)
    assert git(bare, "show", f"aictl/task-{c}:c.txt") == "A\nB\nC\n"
    pushes = [d for d in alpha.jcli("audit", "decisions", "--task", str(c)) if d["action"] == "push"]
    assert [d["effect"] for d in pushes] == ["allow"]

    # Two daemons, merge: auto on both: a DAG of 20 tasks across the hosts.
    ids = {}
    for k in range(N_TASKS):
        after = [x for d in deps_of(k) for x in ("--depends-on", str(ids[d]))]
        ids[k] = alpha.create(f"f{k}", "--lock", f"f{k}.txt", *after, "--command", command_of(k))
    for h in hosts:
        h.start("--workers", "2")
    try:

        def merged_all() -> bool:
            with alpha.store() as store, store.read() as tx:
                n = tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status = 'merged'")["n"]
            return n == N_TASKS + 3

        wait_for(merged_all, 300, "both daemons to run and merge every task", interval=0.5)
    finally:
        for h in hosts:
            h.cli("daemon", "stop")
    memo: dict[int, str] = {}
    for k in range(N_TASKS):
        assert git(bare, "show", f"main:f{k}.txt") == expected(k, memo), k
    assert git(bare, "show", "main:c.txt") == "A\nB\nC\n"
    ran_on = {e["actor"].split("@")[0] for e in alpha.events(action="complete")}
    assert ran_on == {"alpha", "beta"}
    assert alpha.cli("audit", "verify").returncode == 0
