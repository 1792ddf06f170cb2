"""Fixture for the AI registry and router tests (imported by them): a registry and a task service per backend."""

from __future__ import annotations

import pytest


@pytest.fixture
def plane(store_url, make_settings):
    """(registry, task service, store) on a fresh store of each backend."""
    from aictl.agents.registry import Registry
    from aictl.store import open_store
    from aictl.tasks.service import TaskService

    store = open_store(store_url)

    class Plane:
        url = store_url

        def __init__(self):
            self.store = store
            self.settings = make_settings(database_url=store_url)
            self.reg = Registry(store, actor="tester@host")
            self.svc = TaskService(store, self.settings)

        def ai(self, ai_id, connector="command", **kw):
            from aictl.domain.models import AIRecord

            return self.reg.register(AIRecord(id=ai_id, connector=connector, **kw))

        def task(self, title="t", **kw):
            from aictl.tasks.service import TaskSpec

            return self.svc.create(TaskSpec(title=title, **kw))

        def events(self, action_prefix="ai_"):
            import json

            with store.read() as tx:
                rows = tx.all("SELECT action, before, after, data FROM events ORDER BY id")
            return [
                {k: (json.loads(v) if k != "action" and v else v) for k, v in r.items()}
                for r in rows
                if r["action"].startswith(action_prefix)
            ]

    yield Plane()
    store.close()
