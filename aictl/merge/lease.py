"""The merge queue's lease: one row per queue in `queue_leases`, so one host at a time moves the target.

Taken like a task lease: free or expired rows are taken with the epoch bumped; a live row of
another owner refuses (`QueueBusy`, exit 4). The holder renews before each ref move, with
(owner, epoch) as the fence: a holder whose lease was taken over meanwhile gets LeaseLost and
moves nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aictl.domain.errors import Conflict, LeaseLost

if TYPE_CHECKING:
    from aictl.store.base import Store

__all__ = ["QueueBusy", "QueueLease", "default_owner"]


class QueueBusy(Conflict):
    code = "merge_queue_busy"


def default_owner(actor: str) -> str:
    return f"{actor}/{socket.gethostname()}:{os.getpid()}"


class QueueLease:
    def __init__(self, store: Store, name: str, owner: str, *, ttl: float, clock: Callable[[], float] = time.time):
        self.store, self.name, self.owner, self.ttl, self.clock = store, name, owner, ttl, clock
        self.epoch = 0

    def acquire(self) -> int:
        now = self.clock()
        with self.store.write() as tx:
            row = tx.one("SELECT owner, epoch, expires_at FROM queue_leases WHERE name = :n", {"n": self.name})
            if row is not None and row["expires_at"] > now and row["owner"] != self.owner:
                raise QueueBusy(
                    f"the merge queue for {self.name} is held by {row['owner']} "
                    f"for {row['expires_at'] - now:.0f} more seconds",
                    hint="wait for that merge to finish, then run aictl merge again",
                    details={"owner": row["owner"], "expires_at": row["expires_at"]},
                )
            self.epoch = (row["epoch"] if row else 0) + 1
            params = {"n": self.name, "o": self.owner, "e": self.epoch, "x": now + self.ttl}
            if row is None:
                tx.run("INSERT INTO queue_leases (name, owner, epoch, expires_at) VALUES (:n, :o, :e, :x)", params)
            else:
                tx.run("UPDATE queue_leases SET owner = :o, epoch = :e, expires_at = :x WHERE name = :n", params)
        return self.epoch

    def renew(self) -> None:
        """Extend the lease; LeaseLost when another holder took it over (it expired meanwhile)."""
        with self.store.write() as tx:
            row = tx.one(
                "UPDATE queue_leases SET expires_at = :x WHERE name = :n AND owner = :o AND epoch = :e RETURNING epoch",
                {"n": self.name, "o": self.owner, "e": self.epoch, "x": self.clock() + self.ttl},
            )
        if row is None:
            raise LeaseLost(
                f"lost the merge queue lease for {self.name} (epoch {self.epoch})",
                hint="another host took the queue over; run aictl merge again",
            )

    def release(self) -> None:
        with self.store.write() as tx:
            tx.run(
                "DELETE FROM queue_leases WHERE name = :n AND owner = :o AND epoch = :e",
                {"n": self.name, "o": self.owner, "e": self.epoch},
            )
