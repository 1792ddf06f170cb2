"""Per-invocation state shared by commands: settings, store, output mode.

Built lazily, so `aictl --help` never opens a database.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from aictl.cli.output import FORMATS, Output
from aictl.domain.errors import UsageError


class CliState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything from a previous invocation (tests call main() many times)."""
        self.project: str | None = None
        self.overrides: dict[str, Any] = {}
        self.output_mode: str | None = None
        self._settings = None
        self._store = None

    def settings(self):
        if self._settings is None:
            from aictl.config import load_settings

            self._settings = load_settings(self.project, self.overrides)
            if self._settings.sources.get("log_level", "default") != "default":
                from aictl import logging

                logging.configure(level=self._settings.log_level)
        return self._settings

    def store(self):
        if self._store is None:
            from aictl.store import open_store
            from aictl.store.identity import check_marker, expect_existing

            s = self.settings()
            expect_existing(s.resolved_database_url, s.home)  # only `aictl init` may create the project's store
            self._store = open_store(s.resolved_database_url, busy_timeout_ms=s.busy_timeout_ms)
            check_marker(self._store, s.home)
        return self._store

    def output(self, flag: str | None) -> Output:
        mode = flag or os.environ.get("AICTL_OUTPUT") or None
        if mode is None:
            try:
                mode = self.settings().output
            except Exception:  # a broken config must not hide the real error behind it
                mode = "table"
        if mode not in FORMATS:
            raise UsageError(f"unknown output format {mode!r}", hint=f"use one of: {', '.join(FORMATS)}")
        self.output_mode = mode
        return Output(mode)

    def gate(self):
        """The project's policy gate (None without any policy file): loaded only by commands that enforce."""
        from aictl.policy.gate import load_gate

        settings = self.settings()
        return load_gate(settings.project_dir) if settings.project_dir else None

    def tasks(self, *, enforce: bool = False, dry_run: bool = False):
        """The task service; with dry_run, over a store whose writes roll back (for calls without a dry_run)."""
        from aictl.tasks.service import TaskService

        store = RollbackStore(self.store()) if dry_run else self.store()
        return TaskService(store, self.settings(), policy=self.gate() if enforce else None)

    def queries(self):
        from aictl.tasks.queries import TaskQueries

        return TaskQueries(self.store())

    def evidence(self):
        from aictl.audit.evidence import EvidenceStore

        from aictl.tasks.fence import check_fence

        return EvidenceStore(self.store(), self.settings().home, actor=self.settings().actor, fence=check_fence)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class _Rollback(Exception):
    pass


class RollbackStore:
    """A store whose write transactions do all their work, then roll back: `--dry-run` for a service call
    that has no dry_run of its own (heartbeat, reap, evidence, firing schedules). Reads pass through."""

    def __init__(self, store: Any):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        try:
            with self._store.write() as tx:
                yield tx
                raise _Rollback
        except _Rollback:
            pass


state = CliState()
