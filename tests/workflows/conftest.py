"""Fixtures for workflow tests: a git project on SQLite or a real PostgreSQL, its engine, and a foreground driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aictl.config import load_settings
from aictl.store import open_store
from tests.daemon.conftest import make_daemon_project, make_project  # noqa: F401 - make_daemon_project is a fixture here too

EXAMPLES = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_env(request) -> dict:
    if request.param == "sqlite":
        return {}
    return {"AICTL_DATABASE_URL": request.getfixturevalue("pg_url")}


class WF:
    """A project with workflows: its settings, store, engine and a driver that runs step tasks here."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.settings = load_settings(root)
        self.store = open_store(self.settings.resolved_database_url)
        from aictl.workflows.engine import WorkflowEngine

        self.engine = WorkflowEngine(self.store, self.settings)
        self.progress: list[dict[str, Any]] = []

    def write(self, name: str, text: str) -> Path:
        p = self.root / ".ai" / "workflows" / f"{name}.yaml"
        p.write_text(text)
        return p

    def load(self, name_or_path: str) -> Any:
        from aictl.workflows.loader import find, load_file

        return load_file(find(self.root, name_or_path))

    def run(self, wf: Any, *, wait: bool = False, policy: bool = False, **inputs: Any) -> Any:
        run = self.engine.start(wf, inputs)
        return self.drive(run.id, wait=wait, policy=policy)

    def drive(self, run_id: int, *, wait: bool = False, policy: bool = False) -> Any:
        import time

        from aictl.execution.executor import Executor
        from aictl.policy.gate import load_gate
        from aictl.workflows.driver import drive

        executor = Executor(self.store, self.settings, policy=load_gate(self.root) if policy else None)
        return drive(
            self.engine,
            run_id,
            executor=executor,
            owner="tester/fg",
            wait=wait,
            on_progress=self.progress.append,
            poll_s=0.1,
            deadline=time.monotonic() + 60,
        )

    def task(self, task_id: int) -> Any:
        from aictl.tasks.queries import TaskQueries

        return TaskQueries(self.store).get(task_id)

    def events(self, action: str) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return tx.all("SELECT * FROM events WHERE action = :a ORDER BY id", {"a": action})


@pytest.fixture
def wf(tmp_path, backend_env, monkeypatch):
    for k, v in backend_env.items():
        monkeypatch.setenv(k, v)
    root = make_project(tmp_path / "repo", extra_env=backend_env)
    monkeypatch.chdir(root)
    w = WF(root, backend_env)
    yield w
    w.store.close()
