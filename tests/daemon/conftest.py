"""Fixtures for daemon tests: a git project, real `aictl daemon` processes, and reading what they did.

`project` and `Running` are the in-process side: a project's settings and store, and a Daemon on a thread.

Every daemon a test starts is SIGKILLed at teardown if it is still alive, and so is
every process group a task command recorded in a pid file (a SIGKILLed daemon
leaves its running commands behind, as a real one would).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aictl.config import load_settings
from aictl.daemon.loop import Daemon
from aictl.store import open_store
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]

CONFIG = "lease_ttl: 2\nheartbeat_interval: 0.5\nbackoff_base: 0\nmax_attempts: 5\ndaemon_grace_s: 20\n"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_project(root: Path, *, config: str = CONFIG, extra_env: dict | None = None) -> Path:
    """A git repository with src/ and docs/, `aictl init` run in it, settings for fast tests, committed."""
    (root / "src").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "src" / "app.py").write_text("print('app')\n")
    (root / "docs" / "index.md").write_text("# docs\n")
    git(root, "init", "-q", "-b", "main")
    r = run_cli("init", "-o", "json", cwd=root, env=extra_env)
    assert r.returncode == 0, r.stderr
    (root / ".ai" / "config.yaml").write_text(config)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until pred() is truthy; a deadline for liveness (a hung daemon), not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for: {what}")
        time.sleep(interval)


class Project:
    """One project directory, its store, and the daemons started in it."""

    def __init__(self, root: Path, env: dict | None = None):
        self.root = root
        self.env = dict(env or {})
        self.pids: list[int] = []
        self.pid_dir = root.parent / f"{root.name}-cmdpids"
        self.pid_dir.mkdir(exist_ok=True)

    @property
    def daemon_dir(self) -> Path:
        return self.root / ".ai" / "daemon"

    def cli(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        r = run_cli(*args, cwd=self.root, env=self.env, timeout=timeout)
        if check:
            assert r.returncode == 0, f"aictl {' '.join(args)} exited {r.returncode}: {r.stderr}"
        return r

    def jcli(self, *args: str, **kw: Any) -> Any:
        r = self.cli(*args, "-o", "json", check=True, **kw)
        return json.loads(r.stdout)

    def start(self, *args: str) -> dict:
        r = self.cli("daemon", "start", *args, "-o", "json")
        assert r.returncode == 0, f"daemon start failed ({r.returncode}): {r.stderr}"
        info = json.loads(r.stdout)
        self.pids.append(info["pid"])
        return info

    def daemon_pid(self) -> int | None:
        try:
            return int((self.daemon_dir / "daemon.pid").read_text())
        except (OSError, ValueError):
            return None

    def create(self, title: str, *args: str) -> int:
        return self.jcli("task", "create", title, *args)["id"]

    def sleeper(self, seconds: float, tag: str = "run") -> str:
        """A command that records its process group (for teardown) and a line per run, then sleeps."""
        marker = self.pid_dir / "runs.log"
        return f"echo $$ > {self.pid_dir}/$$.pid; echo {tag} >> {marker}; sleep {seconds}"

    def runs(self) -> list[str]:
        p = self.pid_dir / "runs.log"
        return p.read_text().split() if p.exists() else []

    def store(self) -> Any:
        from aictl.config import load_settings
        from aictl.store import open_store

        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            settings = load_settings(self.root)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return open_store(settings.resolved_database_url)

    def task(self, task_id: int) -> Any:
        from aictl.tasks.queries import TaskQueries

        with self.store() as store:
            return TaskQueries(store).get(task_id)

    def events(self, task_id: int | None = None, action: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM events WHERE 1 = 1", {}
        if task_id is not None:
            sql += " AND task_id = :t"
            params["t"] = task_id
        if action is not None:
            sql += " AND action = :a"
            params["a"] = action
        with self.store() as store, store.read() as tx:
            rows = tx.all(sql + " ORDER BY id", params)
        for r in rows:
            for k in ("before", "after", "data"):
                r[k] = json.loads(r[k]) if r[k] else None
        return rows

    def kill_leftovers(self) -> None:
        for pid in self.pids:
            _kill(pid)
        pid = self.daemon_pid()
        if pid:
            _kill(pid)
        for f in self.pid_dir.glob("*.pid"):
            try:
                os.killpg(int(f.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


@pytest.fixture
def make_daemon_project(tmp_path):
    made: list[Project] = []

    def make(name: str = "repo", *, config: str = CONFIG, env: dict | None = None, root: Path | None = None) -> Project:
        p = Project(root or make_project(tmp_path / name, config=config, extra_env=env), env)
        made.append(p)
        return p

    yield make
    for p in made:
        p.kill_leftovers()


@pytest.fixture
def dproject(make_daemon_project) -> Project:
    return make_daemon_project()


def start_foreground(project: Project, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aictl", "daemon", "start", "--foreground", *args],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    project.pids.append(proc.pid)
    return proc


class Running:
    """A Daemon on a thread; stops it (and waits) on exit."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.thread = threading.Thread(target=daemon.run, name="test-daemon", daemon=True)

    def __enter__(self) -> Daemon:
        self.daemon.prepare()
        self.thread.start()
        return self.daemon

    def __exit__(self, *exc) -> None:
        self.daemon.request_stop(now=True)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the daemon did not stop"


@pytest.fixture
def loop_project(tmp_path, monkeypatch):
    """(settings, store) of a fresh git project, for a Daemon run in-process."""
    root = make_project(tmp_path / "repo")
    monkeypatch.chdir(root)
    settings = load_settings(root)
    store = open_store(settings.resolved_database_url)
    yield settings, store
    store.close()
