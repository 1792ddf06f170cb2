"""The next-task pick of `task execute` (routed, no daemon running) takes over a dead holder's expired lease.

Found by the chaos test: the pick reads candidates first and only its claim statement reaped, so a task
whose holder was SIGKILLed (status running, lease expired) and every task behind its locks stayed invisible,
and a queue worked by `task execute` loops without a daemon froze for good.
"""

from __future__ import annotations

from aictl.tasks.claims import ClaimRequest, Claims
from aictl.tasks.spec import TaskSpec


def test_the_routed_next_pick_reaps_an_expired_lease_first(clocked):
    b = clocked(lease_ttl=5)
    held = b.svc.create(TaskSpec(title="held by a dead worker", lock_paths=["src/**"], command="true"))
    behind = b.svc.create(TaskSpec(title="behind its lock", lock_paths=["src/a/**"], command="true"))
    claims = Claims(b.store, b.settings, clock=b.clock)
    first = claims.claim(ClaimRequest(owner="dead", routed=True, commands=True))
    assert first is not None and first.task.id == held.id
    b.svc.start(held.id, "dead", first.lease.lease_epoch)
    assert claims.claim(ClaimRequest(owner="alive", routed=True, commands=True)) is None  # its lock holds: live

    b.clock.advance(6)  # past the dead worker's lease; nobody sweeps (no daemon)
    got = claims.claim(ClaimRequest(owner="alive", routed=True, commands=True))
    assert got is not None and got.task.id == held.id and got.lease.lease_epoch == first.lease.lease_epoch + 1
    assert b.q.get(behind.id).status == "queued"
