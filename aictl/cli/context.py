"""Per-invocation state shared by commands: settings, store, output mode.

Built lazily, so `aictl --help` never opens a database.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aictl.cli.output import FORMATS, Output
from aictl.domain.errors import UsageError
from aictl.store.base import Store

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.store.base import Tx


class CliState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything from a previous invocation (tests call main() many times)."""
        self.project: str | None = None
        self.overrides: dict[str, Any] = {}
        self.output_mode: str | None = None
        self._settings: Settings | None = None
        self._store: Store | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from aictl.config import load_settings

            self._settings = load_settings(self.project, self.overrides)
            if self._settings.sources.get("log_level", "default") != "default":
                from aictl import logging

                logging.configure(level=self._settings.log_level)
        return self._settings

    def store(self) -> Store:
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
            except Exception:  # noqa: BLE001 - a broken config must not hide the real error behind it
                mode = "table"
        if mode not in FORMATS:
            raise UsageError(f"unknown output format {mode!r}", hint=f"use one of: {', '.join(FORMATS)}")
        self.output_mode = mode
        return Output(mode)

    def gate(self):
        """The project's policy gate (None without any policy file): loaded only by commands that enforce."""
        from aictl.policy.gate import load_gate

        settings = self.settings()
        return load_gate(settings.project_dir, state_dir=settings.home) if settings.project_dir else None

    def tasks(self, *, enforce: bool = False, dry_run: bool = False):
        """The task service; with dry_run, over a store whose writes roll back (for calls without a dry_run)."""
        from aictl.tasks.service import TaskService

        store = RollbackStore(self.store()) if dry_run else self.store()
        return TaskService(store, self.settings(), policy=self.gate() if enforce else None)

    def queries(self):
        from aictl.tasks.queries import TaskQueries

        return TaskQueries(self.store())

    def evidence(self):

        from aictl.tasks.fence import fenced_evidence

        return fenced_evidence(self.store(), self.settings().home, actor=self.settings().actor)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class _Rollback(Exception):
    pass


class RollbackStore(Store):
    """A store whose write transactions do all their work, then roll back: `--dry-run` for a service call
    that has no dry_run of its own (heartbeat, reap, evidence, firing schedules). Reads pass through."""

    def __init__(self, store: Store):
        self._store = store
        self.dialect = store.dialect
        self.url = store.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._store.read()

    def close(self) -> None:
        self._store.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        try:
            with self._store.write() as tx:
                yield tx
                raise _Rollback
        except _Rollback:
            pass


state = CliState()
