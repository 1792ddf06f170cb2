"""Shared fixtures: isolated projects, and one store per backend (SQLite, real PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.pg_fixtures", "tests.docker_fixtures", "tests.fakeprovider.plugin"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test sees the developer's AICTL_* settings or user config."""
    for k in list(os.environ):
        if k.startswith("AICTL_") and k not in ("AICTL_REQUIRE_POSTGRES", "AICTL_REQUIRE_DOCKER"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(tmp_path_factory.mktemp("userconf")))
    monkeypatch.setenv("NO_COLOR", "1")
    from aictl.domain import redact

    redact.refresh()  # the secret pattern is cached per process; each test starts from its own env


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An initialised aictl project in a temp dir, made the working directory."""
    from aictl.cli.main import main

    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    assert main(["init", "-o", "json"]) == 0
    return root


@pytest.fixture
def cli(capsys):
    """Run aictl in-process: `cli("task", "list")` -> (exit code, stdout, stderr)."""
    from aictl.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def j(cli):
    """Run aictl in-process with -o json: assert the exit code (0 unless code=) and return the parsed stdout."""
    import json

    def run(*args: str, code: int = 0):
        cut = args.index("--") if "--" in args else len(args)  # options go before a `--`
        got, out, err = cli(*args[:cut], "-o", "json", *args[cut:])
        assert got == code, err
        return json.loads(out) if out.strip() else None

    return run


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    """A fresh store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_settings(tmp_path):
    from aictl.config import Settings

    def make(**kw):
        kw.setdefault("actor", "tester@host")
        kw.setdefault("backoff_base", 0.0)
        return Settings(**kw)

    return make


@pytest.fixture
def services(store_url, make_settings):
    """(TaskService, TaskQueries, store) on a fresh store; `services.make(**settings)` for variants."""
    from aictl.store import open_store
    from aictl.tasks.queries import TaskQueries
    from aictl.tasks.service import TaskService

    store = open_store(store_url)

    class Bundle:
        def __init__(self, **kw):
            self.settings = make_settings(database_url=store_url, **kw)
            self.store = store
            self.svc = TaskService(store, self.settings)
            self.q = TaskQueries(store)

        def make(self, **kw):
            return Bundle(**kw)

    yield Bundle()
    store.close()


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run the real `aictl` in a subprocess (a whole process, as a user runs it)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "aictl", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def proc_cli():
    """run_cli as a fixture, for test modules (which do not import from other test modules)."""
    return run_cli
