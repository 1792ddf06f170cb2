"""Chaos harness: N worker processes (one of them a daemon) run a queue of command tasks, every tenth of them
hostile, while a controller SIGKILLs and SIGSTOPs them.

Used by tests/tasks/test_chaos.py (small) and bench/chaos.py (6 workers x 300 tasks, both backends).

Each worker is a real process looping `aictl task execute` (in-process calls of the CLI's main, one process
per worker) with a short lease. The controller, at random moments, SIGKILLs a worker's whole process group
(worker and its running command) and starts a new worker in its place, or SIGSTOPs one for longer than the
lease and then SIGCONTs it (its lease expires, another worker takes the task over; the frozen one must be
fenced off when it wakes). Afterwards everything is judged from the store and the git repository alone:

- every task is done and was completed exactly once (one `complete` event);
- no two tasks whose lock globs overlap ever held their locks at the same time (claim .. lease end, by
  audit event ids, which are in commit order);
- each task's result commit holds the file its command wrote, and none of the FIFOs and /dev/zero links the
  hostile tasks left behind;
- the secret the hostile tasks printed is in no file aictl wrote (store, evidence, logs);
- the audit chain verifies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PATTERNS = ["src/a/**", "src/a/x/**", "src/b/**", "docs/**", "docs/api/**", "tests/**", "src/c/**", "*.toml"]
LEASE_ENDS = {"complete", "fail", "release", "lease_expired", "await_approval", "cancel"}

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from aictl.cli.main import main
    from aictl.cli.context import state
    owner, ttl, idle_exit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    idle_since = None
    while True:
        code = main(["task", "execute", "--owner", owner, "--ttl", ttl, "-o", "name"])
        state.reset()
        if code == 3:  # nothing ready now: others hold the rest, or all is done
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > idle_exit:
                break
            time.sleep(0.1)
        else:
            idle_since = None
    """
)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=c", "-c", "user.email=c@c", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_project(root: Path, database_url: str | None, ttl: float) -> dict[str, str]:
    """A git repository with aictl initialised; the environment its processes run with."""
    root.mkdir(parents=True)
    (root / "README.md").write_text("chaos\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AICTL_ACTOR": "chaos@test"}
    if database_url:
        env["AICTL_DATABASE_URL"] = database_url
    subprocess.run([sys.executable, "-m", "aictl", "init"], cwd=root, env=env, check=True, capture_output=True)
    (root / ".ai" / "config.yaml").write_text(
        f"lease_ttl: {ttl}\nheartbeat_interval: {ttl / 4}\nbackoff_base: 0\nmax_attempts: 50\n"
        "secret_patterns: ['CHAOS-SECRET-[0-9]+']\n"
    )
    return env


def output_of(k: int, locks: list[str]) -> str:
    """Where task k writes: inside its first lock (a change outside its locks would fail it)."""
    first = locks[0]
    return f"{first[:-3]}/out-{k}.txt" if first.endswith("/**") else f"out-{k}.toml"


SECRET = "CHAOS-SECRET-7001"  # matches the config's secret_patterns: no sink may ever hold it
# Every tenth task is hostile: it prints the secret (made at run time, so the task's command does not hold it),
# leaves a FIFO and a link to /dev/zero in its worktree (the host's collector must neither hang nor read them)
# and still does its work.
HOSTILE = "echo CHAOS-SECRET-$((7000 + 1)); mkdir -p $(dirname {fifo}); mkfifo {fifo}; ln -s /dev/zero {zero}; "


def junk_of(k: int, locks: list[str]) -> tuple[str, str]:
    """Where hostile task k leaves its FIFO and its link to /dev/zero: inside its locks, so only the host's
    handling of them is tested, not the lock check."""
    first = locks[0]
    return (
        (f"{first[:-3]}/trap.fifo", f"{first[:-3]}/zero.bin")
        if first.endswith("/**")
        else (
            f"trap-{k}.toml",
            f"zero-{k}.toml",
        )
    )


def create_tasks(root: Path, env: dict[str, str], n: int, rng: random.Random) -> dict[int, list[str]]:
    import yaml

    specs = []
    for k in range(n):
        locks = rng.sample(PATTERNS, rng.choice([1, 1, 2]))
        out = output_of(k, locks)
        fifo, zero = junk_of(k, locks)
        hostile = HOSTILE.format(fifo=fifo, zero=zero) if k % 10 == 9 else ""
        command = f"{hostile}sleep 0.0{rng.randint(1, 9)}; mkdir -p $(dirname {out}); echo {k} > {out}"
        specs.append({"title": f"t{k}", "locks": locks, "command": command})
    batch = root / "tasks.yaml"
    batch.write_text(yaml.safe_dump({"tasks": specs}))
    p = subprocess.run(
        [sys.executable, "-m", "aictl", "task", "create", "-f", str(batch), "-o", "json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {t["id"]: t["lock_paths"] for t in json.loads(p.stdout)}


class Chaos:
    def __init__(self, root: Path, env: dict[str, str], *, workers: int, ttl: float, seed: int):
        self.root, self.env, self.ttl = root, env, ttl
        self.rng = random.Random(seed)
        self.procs: dict[int, subprocess.Popen] = {}
        self.generation = 0
        self.kills = self.stops = 0
        for slot in range(workers):
            self._start(slot)

    def _start(self, slot: int) -> None:
        self.generation += 1
        argv = [sys.executable, "-c", WORKER, f"w{slot}-g{self.generation}", str(self.ttl), str(self.ttl * 3)]
        if slot == 0:  # one of the workers is a daemon (two of its own threads), killed and frozen like the rest
            argv = [sys.executable, "-m", "aictl", "daemon", "start", "--foreground", "--workers", "2"]
        self.procs[slot] = subprocess.Popen(
            argv,
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def strike(self) -> None:
        """One random blow: SIGKILL a worker's process group and replace it, or freeze one past its lease."""
        alive = [s for s, p in self.procs.items() if p.poll() is None]
        if not alive:
            return
        slot = self.rng.choice(alive)
        p = self.procs[slot]
        if self.rng.random() < 0.6:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            self.kills += 1
            self._start(slot)
        else:
            os.killpg(p.pid, signal.SIGSTOP)
            time.sleep(self.ttl * 1.5)  # past the lease: it expires and another worker may take the task
            os.killpg(p.pid, signal.SIGCONT)
            self.stops += 1

    def done(self, store: Any) -> bool:
        with store.read() as tx:
            row = tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status <> 'done'")
        return row["n"] == 0

    def finish(self) -> None:
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()


def lock_intervals(events: list[dict]) -> dict[int, list[tuple[int, int, int]]]:
    """task id -> [(epoch, claim event id, end event id)]; a lease taken over by a newer claim ends there."""
    open_claims: dict[int, tuple[int, int]] = {}
    out: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for e in events:
        t = e["task_id"]
        if e["action"] == "claim":
            if t in open_claims:  # an expired lease reclaimed without a reap event: it ended at the new claim
                epoch, start = open_claims.pop(t)
                out[t].append((epoch, start, e["id"]))
            open_claims[t] = (e["lease_epoch"], e["id"])
        elif e["action"] in LEASE_ENDS and t in open_claims:
            epoch, start = open_claims.pop(t)
            out[t].append((epoch, start, e["id"]))
    for t, (epoch, start) in open_claims.items():
        out[t].append((epoch, start, 1 << 62))
    return out


def overlapping_holds(intervals: dict, locks: dict[int, list[str]]) -> list[tuple]:
    from aictl.tasks.globs import patterns_overlap

    bad = []
    ids = sorted(intervals)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if not patterns_overlap(locks[a], locks[b]):
                continue
            for _, s1, e1 in intervals[a]:
                for _, s2, e2 in intervals[b]:
                    if s1 < e2 and s2 < e1:
                        bad.append((a, b, (s1, e1), (s2, e2)))
    return bad


def judge(root: Path, store: Any, locks: dict[int, list[str]]) -> dict[str, Any]:
    """The invariants; returns figures, raises AssertionError naming the first broken one."""
    with store.read() as tx:
        events = tx.all("SELECT * FROM events WHERE task_id IS NOT NULL ORDER BY id")
        tasks = tx.all("SELECT id, status, result, lease_epoch FROM tasks ORDER BY id")
    completes: dict[int, int] = defaultdict(int)
    claims: dict[int, int] = defaultdict(int)
    for e in events:
        if e["action"] == "complete":
            completes[e["task_id"]] += 1
        elif e["action"] == "claim":
            claims[e["task_id"]] += 1
    assert all(t["status"] == "done" for t in tasks), [t["id"] for t in tasks if t["status"] != "done"]
    twice = {t: n for t, n in completes.items() if n != 1}
    assert sorted(completes) == sorted(locks) and not twice, f"completed other than once: {twice}"
    bad = overlapping_holds(lock_intervals(events), locks)
    assert bad == [], f"overlapping lock holds: {bad[:5]}"
    for t in tasks:
        result, k = json.loads(t["result"]), t["id"] - min(locks)
        assert int(git(root, "show", f"{result['commit']}:{output_of(k, locks[t['id']])}").strip()) == k, t["id"]
    for t in tasks:  # no FIFO reached a result, and /dev/zero was never read: at most a link to it was kept
        k = t["id"] - min(locks)
        fifo, zero = junk_of(k, locks[t["id"]])
        tree = git(root, "ls-tree", "-r", json.loads(t["result"])["commit"])
        assert fifo not in tree, (t["id"], tree)
        kept = [line for line in tree.splitlines() if line.endswith("\t" + zero)]
        assert all(line.startswith("120000 ") for line in kept), kept  # a symlink object, never its target's bytes
    leaks = [
        str(p)
        for p in (root / ".ai").rglob("*")
        if p.is_file() and "workspaces" not in p.parts and SECRET.encode() in p.read_bytes()
    ]
    assert leaks == [], leaks
    from aictl.audit.chain import verify

    report = verify(store)
    assert getattr(report, "ok", None) is True or (isinstance(report, dict) and report.get("ok")), report
    return {
        "tasks": len(tasks),
        "claims": sum(claims.values()),
        "taken_over": sum(n - 1 for n in claims.values()),
        "max_epoch": max(t["lease_epoch"] or 0 for t in tasks),
    }


def run(
    root: Path, database_url: str | None, *, workers: int, tasks: int, ttl: float, strike_every_s: float, seed: int
) -> dict[str, Any]:
    """Build the project, run the chaos until every task is done, judge it; the figures."""
    from aictl.config import load_settings
    from aictl.store import open_store

    rng = random.Random(seed)
    env = make_project(root, database_url, ttl)
    locks = create_tasks(root, env, tasks, rng)
    old = {k: os.environ.get(k) for k in ("AICTL_DATABASE_URL",)}
    if database_url:
        os.environ["AICTL_DATABASE_URL"] = database_url
    try:
        settings = load_settings(root)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    store = open_store(settings.resolved_database_url)
    chaos = Chaos(root, env, workers=workers, ttl=ttl, seed=seed)
    started = time.monotonic()
    deadline = started + 60 + tasks * 2.0  # liveness: a wedged queue fails here instead of hanging
    next_strike = started + strike_every_s * rng.uniform(0.5, 1.5)
    try:
        while not chaos.done(store):
            if time.monotonic() > deadline:
                raise AssertionError("the queue did not drain: wedged")
            time.sleep(0.1)  # how often the queue is looked at, not how often it is struck
            if time.monotonic() >= next_strike and not chaos.done(store):
                chaos.strike()
                next_strike = time.monotonic() + strike_every_s * rng.uniform(0.5, 1.5)
        wall = time.monotonic() - started
    finally:
        chaos.finish()
    figures = judge(root, store, locks)
    store.close()
    return {**figures, "workers": workers, "kills": chaos.kills, "stops": chaos.stops, "wall_s": round(wall, 2)}
