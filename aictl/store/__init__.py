"""State store: `open_store(url)` gives a migrated Store (SQLite or PostgreSQL)."""

from __future__ import annotations

from aictl.domain.errors import UsageError
from aictl.store.base import Store, Tx


def open_store(url: str, *, busy_timeout_ms: int = 30000, migrate: bool = True) -> Store:
    """Open the store named by a SQLAlchemy-style URL and upgrade its schema if needed."""
    from aictl.store import schema

    if url.startswith("sqlite:///"):
        from aictl.store.sqlite import SqliteStore

        store: Store = SqliteStore(url[len("sqlite:///") :], busy_timeout_ms=busy_timeout_ms)
    elif url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        from aictl.store.postgres import PostgresStore

        store = PostgresStore(url)
    else:
        raise UsageError(
            f"unsupported database URL {url.split('://')[0]}://…",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        )
    if migrate:
        try:
            schema.migrate(store)
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["Store", "Tx", "open_store"]
