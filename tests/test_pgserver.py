"""Proves the pg_server / pg_url fixtures give real, isolated PostgreSQL databases."""

import psycopg

from tests.pgserver import to_libpq

# Normally registered by tests/conftest.py; repeating it is a no-op there and
# lets this file run on its own.
pytest_plugins = ["tests.pg_fixtures"]


def test_server_answers(pg_server):
    with psycopg.connect(pg_server.dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
    assert version.startswith("PostgreSQL ")


def test_pg_urls_are_distinct_isolated_databases(pg_server, request):
    url_a = pg_server.create_database()
    url_b = request.getfixturevalue("pg_url")
    try:
        assert url_a.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert url_a != url_b
        with (
            psycopg.connect(to_libpq(url_a), autocommit=True) as a,
            psycopg.connect(to_libpq(url_b), autocommit=True) as b,
        ):
            assert (
                a.execute("SELECT current_database()").fetchone() != b.execute("SELECT current_database()").fetchone()
            )
            a.execute("CREATE TABLE only_in_a (x int)")
            a.execute("INSERT INTO only_in_a VALUES (1)")
            assert a.execute("SELECT x FROM only_in_a").fetchall() == [(1,)]
            assert b.execute("SELECT to_regclass('only_in_a')").fetchone() == (None,)
    finally:
        pg_server.drop_database(url_a)


def test_drop_database_ends_open_connections(pg_server):
    # pg_url's teardown relies on this: a test may leave connections open.
    url = pg_server.create_database()
    leftover = psycopg.connect(to_libpq(url))
    leftover.execute("SELECT 1")
    pg_server.drop_database(url)
    leftover.close()
    with psycopg.connect(pg_server.dsn) as admin:
        name = url.rsplit("/", 1)[-1]
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
