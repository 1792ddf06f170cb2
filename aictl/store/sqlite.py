"""SQLite backend: WAL, synchronous=NORMAL, busy_timeout, BEGIN IMMEDIATE for every write."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aictl.domain.errors import StoreError
from aictl.store.base import Store, must_row


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self.before_commit: list = []  # callbacks(tx) run just before COMMIT (audit chain)

    def all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._conn.execute(sql, params or {}).fetchall()

    def one(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return self._conn.execute(sql, params or {}).fetchone()

    def row(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return must_row(self.one(sql, params), sql)

    def run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        return self._conn.execute(sql, params or {}).rowcount


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30000):
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN ourselves, so a write starts as
            # IMMEDIATE (a deferred tx that upgrades gets SQLITE_BUSY at once).
            self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout_ms / 1000)
            self._conn.row_factory = _dict_row
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            # The audit chain hashes its first event inside the INSERT (aictl.audit.events).
            self._conn.create_function("sha256_hex", 1, _sha256_hex, deterministic=True)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite store {path}: {e}") from None
        self.journal_mode = next(iter(mode.values())) if mode else None

    @contextlib.contextmanager
    def _tx(self, begin: str) -> Iterator[SqliteTx]:
        try:
            self._conn.execute(begin)
        except sqlite3.OperationalError as e:
            raise StoreError(
                f"SQLite store {self.path} is busy: {e}",
                hint="another process holds a long write transaction; retry, or raise busy_timeout_ms",
            ) from None
        tx = SqliteTx(self._conn)
        try:
            yield tx
            for hook in tx.before_commit:
                hook(tx)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def write(self) -> contextlib.AbstractContextManager[SqliteTx]:
        return self._tx("BEGIN IMMEDIATE")

    def read(self) -> contextlib.AbstractContextManager[SqliteTx]:
        return self._tx("BEGIN DEFERRED")

    def close(self) -> None:
        self._conn.close()
