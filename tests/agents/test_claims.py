"""aictl.tasks.claims on SQLite and PostgreSQL: plain claims, a pinned AI and its limit under racing processes,
routed claims that fall back to the next AI, and waiting through the service clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aictl.agents.router import Router
from aictl.domain.errors import AILimitReached, Conflict, NotFound
from aictl.tasks.claims import ClaimRequest, Claims

REPO = Path(__file__).resolve().parents[2]


def claims(plane, **kw) -> Claims:
    return Claims(plane.store, plane.settings, ranker=Router(plane.store, plane.settings), **kw)


def test_plain_claims_take_the_best_task_and_a_named_ai_is_recorded(plane):
    low, high = plane.task("low"), plane.task("high", priority=5)
    c = claims(plane)
    got = c.claim(ClaimRequest(owner="w"))
    assert got.task.id == high.id and got.ai is None and got.task.owner == "w" and got.task.ai is None
    got = c.claim(ClaimRequest(owner="w", task_id=low.id, ai="someone"))  # not registered: claims for the name
    assert got.task.id == low.id and got.task.ai == "someone" and got.ai is None
    assert c.claim(ClaimRequest(owner="w")) is None
    with pytest.raises(Conflict):
        c.claim(ClaimRequest(owner="w", task_id=low.id))


def test_a_pinned_ai_claims_with_its_labels_capabilities_and_limit(plane):
    plane.ai("a", capabilities=["code"], labels=["fast"], max_concurrency=1)
    other = plane.task("for b", labels=["ai:b"], priority=9)
    docs = plane.task("docs", required_capabilities=["docs"], priority=8)
    fast = plane.task("fast", labels=["ai:fast"])
    more = plane.task("more")
    c = claims(plane)
    got = c.claim(ClaimRequest(owner="w", ai="a"))
    assert got.task.id == fast.id and got.ai.id == "a" and got.task.ai == "a"
    assert c.claim(ClaimRequest(owner="w", ai="a")) is None  # 1/1 held
    with pytest.raises(AILimitReached):
        c.claim(ClaimRequest(owner="w", ai="a", task_id=more.id))
    with pytest.raises(Conflict, match=r"AI a cannot take task .*missing capability docs"):
        c.claim(ClaimRequest(owner="w", ai="a", task_id=docs.id))
    assert plane.svc.store_status(other.id) == "queued"


def test_routed_claim_falls_back_to_the_next_ai_when_the_first_fills_after_ranking(plane):
    plane.ai("a", max_concurrency=1)
    plane.ai("b", max_concurrency=1)
    filler, t = plane.task("filler", priority=-1), plane.task("t")
    router = Router(plane.store, plane.settings)

    class RacedRouter:
        """The real router; between its ranking and the claim, another claimer takes a's only slot."""

        def rank(self, rows, *, ai_ids=None):
            for ranking in router.rank(rows, ai_ids=ai_ids):
                if plane.reg.running("a") == 0:
                    plane.svc.claim("rival", task_id=filler.id, ai="a", ai_limit=1)
                yield ranking

        def find(self, ai_id):
            return router.find(ai_id)

    got = Claims(plane.store, plane.settings, ranker=RacedRouter()).claim(
        ClaimRequest(owner="w", task_id=t.id, routed=True)
    )
    assert got.ai.id == "b" and got.routed and got.task.ai == "b"
    assert plane.reg.running("a") == 1  # a was never pushed past its limit
    with pytest.raises(NotFound, match=r"no AI can take task \d+: a: busy: 1/1 tasks held; b: busy"):
        claims(plane).claim(ClaimRequest(owner="w", task_id=plane.task("u").id, routed=True))


def test_the_next_routed_claim_skips_tasks_no_ai_can_take_and_takes_commands_when_asked(plane):
    plane.ai("a", capabilities=["code"])
    plane.task("train", required_capabilities=["gpu"], priority=9)
    scripted = plane.task("fmt", command="make fmt", priority=5)
    code = plane.task("fix", required_capabilities=["code"])
    c = claims(plane)
    got = c.claim(ClaimRequest(owner="d", routed=True))
    assert got.task.id == code.id and got.ai.id == "a"
    got = c.claim(ClaimRequest(owner="d", routed=True, commands=True))
    assert got.task.id == scripted.id and got.ai is None
    assert c.claim(ClaimRequest(owner="d", routed=True, commands=True)) is None


def test_wait_polls_with_backoff_on_the_service_clock_until_a_task_comes(plane):
    now = {"t": 1_000_000.0}
    naps: list[float] = []
    late = {"after": 4}

    def sleep(s: float) -> None:
        naps.append(s)
        now["t"] += s
        late["after"] -= 1
        if late["after"] == 0:
            plane.task("late")  # another client creates a task while we wait

    c = claims(plane, clock=lambda: now["t"], sleep=sleep)
    got = c.claim(ClaimRequest(owner="w", wait=60))
    assert got.task.title == "late" and naps == [0.05, 0.1, 0.2, 0.4]
    assert got.lease.lease_expires_at == pytest.approx(now["t"] + plane.settings.lease_ttl)
    naps.clear()
    assert c.claim(ClaimRequest(owner="w", wait=5)) is None
    assert sum(naps) == pytest.approx(5) and max(naps) == 1.0  # gave up at the deadline; polls 1 s apart at most
    naps.clear()
    assert c.claim(ClaimRequest(owner="w")) is None and naps == []  # no wait: one try


def test_a_pinned_ai_limit_holds_when_processes_race_through_claims(plane):
    plane.ai("racer", max_concurrency=3)
    for i in range(20):
        plane.task(f"t{i}")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.agents.claims_worker", plane.url, f"w{k}", "racer"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(6)
    ]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert json.loads(line or "{}") == {"ready": True}, p.stderr.read()
        for p in procs:  # the go signal: all of them at once
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    granted = [t for r in results for t in r["claimed"]]
    assert len(granted) == 3 and len(set(granted)) == 3, results
    assert plane.reg.running("racer") == 3
