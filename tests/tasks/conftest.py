"""Fixtures of the task-plane tests: a service whose clock the test moves (lease expiry without sleeping)."""

from __future__ import annotations

import time

import pytest


class FakeClock:
    """Starts at the real time (so stored timestamps look ordinary) and moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clocked(services):
    """clocked(**settings): like services.make, but TaskService and TaskQueries read `b.clock`."""
    from aictl.tasks.queries import TaskQueries
    from aictl.tasks.service import TaskService

    def make(**settings):
        b = services.make(**settings)
        b.clock = FakeClock()
        b.svc = TaskService(b.store, b.settings, clock=b.clock)
        b.q = TaskQueries(b.store, clock=b.clock)
        return b

    return make
