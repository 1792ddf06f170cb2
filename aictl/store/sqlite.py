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
            raise _no_space(e, path) or StoreError(f"cannot open SQLite store {path}: {e}") from None
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
        except sqlite3.OperationalError as e:
            self._rollback()
            raise _no_space(e, self.path) or e from None
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                self._rollback()
                raise _no_space(e, self.path) or e from None

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # SQLite already rolled back (a full disk or an I/O error ends the transaction)

    def write(self) -> contextlib.AbstractContextManager[SqliteTx]:
        return self._tx("BEGIN IMMEDIATE")

    def read(self) -> contextlib.AbstractContextManager[SqliteTx]:
        return self._tx("BEGIN DEFERRED")

    def close(self) -> None:
        self._conn.close()


def _no_space(e: sqlite3.Error, path: Any) -> StoreError | None:
    """A clear StoreError for a full disk (or an I/O error on one); None for any other error."""
    import os
    import shutil

    code = getattr(e, "sqlite_errorcode", None)
    full = code == sqlite3.SQLITE_FULL or "disk is full" in str(e)
    if not full and (code != sqlite3.SQLITE_IOERR and "disk I/O error" not in str(e)):
        return None
    try:
        free = shutil.disk_usage(os.path.dirname(str(path)) or ".").free
    except OSError:
        free = None
    if not full and (free is None or free > 1 << 20):
        return None  # an I/O error with space left: not ours to explain
    where = os.path.dirname(str(path))
    return StoreError(
        f"SQLite store {path}: the disk is full ({free if free is not None else '?'} bytes free in {where});"
        " nothing was written",
        hint=f"free space on the file system holding {where}, then retry",
    )
