"""Migrations: recorded, upgrade an older store, refuse a newer one; SQLModel tables match them."""

from __future__ import annotations

import dataclasses
import sqlite3

import psycopg
import pytest

from aictl.domain.errors import SchemaTooNew
from aictl.store import open_store, schema


def test_fresh_store_is_at_latest_version(store_url):
    store = open_store(store_url)
    with store.read() as tx:
        assert schema.current_version(tx) == schema.latest_version()
        rows = tx.all("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in schema.MIGRATIONS]
    store.close()


def test_sqlite_pragmas(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with store.read() as tx:
        assert tx.one("PRAGMA journal_mode")["journal_mode"] == "wal"
        assert tx.one("PRAGMA synchronous")["synchronous"] == 1  # NORMAL
        assert tx.one("PRAGMA busy_timeout")["timeout"] == 30000
    store.close()


def test_newer_binary_upgrades_older_store(store_url, monkeypatch):
    store = open_store(store_url)
    with store.write() as tx:
        tx.run("INSERT INTO tasks (title, status, created_at, updated_at) VALUES ('kept', 'queued', 1, 1)")
    store.close()
    extra = schema.Migration(
        schema.latest_version() + 1,
        "test: add a column",
        common=["ALTER TABLE tasks ADD COLUMN estimate INTEGER NOT NULL DEFAULT 5"],
        after=lambda tx: tx.run("UPDATE tasks SET estimate = 8 WHERE title = 'kept'"),
    )
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, extra])
    store = open_store(store_url)
    with store.read() as tx:
        assert schema.current_version(tx) == extra.version
        assert tx.one("SELECT title, estimate FROM tasks")["estimate"] == 8
    assert schema.migrate(store) == []  # idempotent
    store.close()


def test_older_binary_refuses_newer_store(store_url):
    store = open_store(store_url)
    with store.write() as tx:
        tx.run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)")
    store.close()
    with pytest.raises(SchemaTooNew) as e:
        open_store(store_url)
    assert "version 99" in e.value.message and f"up to version {schema.latest_version()}" in e.value.message
    assert "upgrade aictl" in e.value.hint


def test_failed_migration_leaves_store_untouched(store_url, monkeypatch):
    store = open_store(store_url)
    store.close()
    bad = schema.Migration(
        schema.latest_version() + 1, "broken", common=["ALTER TABLE tasks ADD COLUMN half INTEGER", "THIS IS NOT SQL"]
    )
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, bad])
    with pytest.raises((sqlite3.Error, psycopg.Error)):  # each driver's own syntax error
        open_store(store_url)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:-1])
    store = open_store(store_url)
    with store.read() as tx:
        assert schema.current_version(tx) == schema.latest_version()
        cols = [r["title"] for r in tx.all("SELECT title FROM tasks")]
    assert cols == []
    store.close()


def test_events_are_append_only(store_url):
    from aictl.audit.events import append_event

    store = open_store(store_url)
    with store.write() as tx:
        append_event(tx, ts=1.0, actor="a", action="x")
    for sql in ("UPDATE events SET actor = 'b'", "DELETE FROM events"):
        with pytest.raises(Exception, match="append-only"), store.write() as tx:
            tx.run(sql)
    store.close()


def test_sqlmodel_tables_match_the_migrated_schema(tmp_path):
    """aictl.store.tables (SQLModel) and the SQL migrations declare the same columns."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from aictl.store import tables

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    engine = sqlalchemy.create_engine(url)
    insp = sqlalchemy.inspect(engine)
    for table in tables.SQLModel.metadata.sorted_tables:
        actual = {c["name"]: c for c in insp.get_columns(table.name)}
        declared = {c.name: c for c in table.columns}
        assert set(actual) == set(declared), table.name
        for name, col in declared.items():
            if not col.primary_key:  # SQLite reports INTEGER PRIMARY KEY as nullable
                assert actual[name]["nullable"] == col.nullable, f"{table.name}.{name}"
    from sqlmodel import Session, select

    with Session(engine) as s:
        assert s.exec(select(tables.TaskRow)).all() == []
    engine.dispose()


def test_migration_statements_render_for_both_dialects():
    for m in schema.MIGRATIONS:
        for dialect in ("sqlite", "postgresql"):
            stmts = m.statements(dialect)
            assert stmts and all("{" not in s.replace("'{}'", "") or "$$" in s for s in stmts), dataclasses.asdict(m)[
                "name"
            ]
