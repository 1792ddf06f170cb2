"""What the daemon claims next for an idle worker, as a Job: aictl.tasks.claims decides, the router ranks.

Tasks are tried in claim order, so priorities hold across command and AI tasks; a
command task the policy refused to this worker is skipped until the task or the
policy changes. `ready_now` is a cheap read that lets an idle daemon sleep.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aictl.daemon.worker import Job

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.store.base import Store
    from aictl.tasks.claims import Claims


class Claimer:
    def __init__(self, settings: Settings, *, ttl: float, ai_ids: list[str] | None):
        self.settings, self.ttl, self.ai_ids = settings, ttl, ai_ids
        self.gate: Any = None  # aictl.policy.gate.PolicyGate or None
        self._cached: tuple[Store, Claims] | None = None

    def set_gate(self, gate: Any) -> None:
        self.gate = gate
        self._cached = None

    def ready_now(self, store: Store) -> tuple[bool, float | None]:
        """A cheap read before any write: is some queued task due now? If not, when is the next one due."""
        from aictl.tasks.queries import queued_due

        with store.read() as tx:
            return queued_due(tx, time.time())

    def claim(self, store: Store, owner: str) -> Job | None:
        """The first task in claim order that some AI (or, with a command, the command connector) can take."""
        from aictl.tasks.claims import ClaimRequest

        got = self._claims(store).claim(
            ClaimRequest(owner=owner, routed=True, commands=True, ai_ids=self.ai_ids, ttl=self.ttl)
        )
        if got is None:
            return None
        return Job(
            task_id=got.task.id,
            epoch=got.lease.lease_epoch,
            title=got.task.title,
            owner=owner,
            connector=got.ai.connector if got.ai is not None else "command",
            ai=got.ai.id if got.ai is not None else None,
        )

    def _claims(self, store: Store) -> Claims:
        """One Claims (and router, with its GPU and model-size caches) per store connection and policy."""
        from aictl.agents.router import Router
        from aictl.tasks.claims import Claims

        if self._cached is None or self._cached[0] is not store:
            claims = Claims(
                store, self.settings, policy=self.gate, ranker=Router(store, self.settings, policy=self.gate)
            )
            self._cached = (store, claims)
        return self._cached[1]
