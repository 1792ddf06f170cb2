"""PostgreSQL backend (psycopg 3): the same SQL as SQLite, `:name` rewritten to `%(name)s`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from aictl.domain.errors import StoreError
from aictl.store.base import Store, must_row

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def libpq_url(url: str) -> str:
    """postgresql+psycopg://… (SQLAlchemy style) → postgresql://… (libpq style)."""
    _scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep else url


class PgTx:
    dialect = "postgresql"

    def __init__(self, conn: Any):
        self._conn = conn
        self.before_commit: list = []  # callbacks(tx) run just before COMMIT (audit chain)

    def all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self._conn.execute(to_pyformat(sql), params or {})
        return cur.fetchall() if cur.description else []

    def one(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        cur = self._conn.execute(to_pyformat(sql), params or {})
        return cur.fetchone() if cur.description else None

    def row(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return must_row(self.one(sql, params), sql)

    def run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        return self._conn.execute(to_pyformat(sql), params or {}).rowcount


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str, *, connect_timeout: float = 10):
        import psycopg
        from psycopg.rows import dict_row

        self.url = url
        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(
                libpq_url(url), autocommit=True, row_factory=dict_row, connect_timeout=int(connect_timeout)
            )
        except psycopg.Error as e:
            raise StoreError(
                f"cannot connect to PostgreSQL at {_redact(url)}: {str(e).strip()}",
                hint="check AICTL_DATABASE_URL and that the server is running",
            ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[PgTx]:
        try:
            with self._conn.transaction():
                tx = PgTx(self._conn)
                yield tx
                for hook in tx.before_commit:
                    hook(tx)
        except self._psycopg.OperationalError as e:
            raise StoreError(f"PostgreSQL error: {str(e).strip()}", hint="retry; check the server") from None

    def write(self) -> contextlib.AbstractContextManager[PgTx]:
        return self._tx()

    def read(self) -> contextlib.AbstractContextManager[PgTx]:
        return self._tx()

    def close(self) -> None:
        self._conn.close()


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
