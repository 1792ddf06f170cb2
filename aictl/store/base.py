"""The Store: one connection, explicit write/read transactions, two dialects.

Services write SQL once with `:name` parameters; the PostgreSQL side rewrites
them to psycopg's `%(name)s`. Hot paths use the DB-API drivers directly
(stdlib sqlite3, psycopg 3) because importing SQLAlchemy/SQLModel costs more
than a whole CLI command is allowed to take; `aictl.store.tables` declares the
same schema in SQLModel for Python users and a test keeps the two in step.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Protocol


class Tx(Protocol):
    dialect: str
    before_commit: list  # callables(tx) run just before COMMIT, in order

    def all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def one(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None: ...

    def row(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A statement that always yields a row (e.g. RETURNING of a row this transaction holds); StoreError if not."""
        ...

    def run(self, sql: str, params: dict[str, Any] | None = None) -> int: ...


class Store(abc.ABC):
    """Base class; see SqliteStore and PostgresStore."""

    dialect: str = ""
    url: str = ""

    @abc.abstractmethod
    def write(self) -> contextlib.AbstractContextManager[Tx]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on success."""

    @abc.abstractmethod
    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A read-only transaction with one consistent snapshot."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def must_row(row: dict[str, Any] | None, sql: str) -> dict[str, Any]:
    """The row a statement had to yield; its absence means the store is not what aictl wrote (or a bug)."""
    if row is None:
        from aictl.domain.errors import StoreError

        raise StoreError(f"the store returned no row where one must exist: {' '.join(sql.split())[:120]}")
    return row


def is_store_error(e: BaseException) -> bool:
    """The database or the way to it failed (worth retrying as is), as opposed to a bug or a bad input."""
    import sqlite3

    from aictl.domain.errors import StoreError

    if isinstance(e, (StoreError, sqlite3.OperationalError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError))
