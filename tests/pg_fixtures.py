"""pytest fixtures for a real, throwaway PostgreSQL server (see tests/pgserver.py).

Enabled from the top-level conftest with ``pytest_plugins = ["tests.pg_fixtures"]``.

- ``pg_server`` (session): one server for the whole run.  If PostgreSQL can't
  be started the tests that need it are skipped -- except in CI
  (``CI=true``) or with ``AICTL_REQUIRE_POSTGRES=1``, where they fail, so a
  broken CI machine can never pass by skipping.
- ``pg_url`` (function): SQLAlchemy URL of a fresh, empty database, dropped
  after the test.
- ``own_pg_server`` (function): a server of the test's own, for tests that stop
  and start it (an outage must not disturb the session's shared server).
"""

from __future__ import annotations

import os

import pytest

from tests.pgserver import PgServer, PgUnavailable


def _postgres_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("AICTL_REQUIRE_POSTGRES") == "1"


def _started_server():
    """A started PgServer; skip (or fail, where PostgreSQL is required) when it cannot start."""
    try:
        server = PgServer().start()
    except PgUnavailable as exc:
        if _postgres_required():
            pytest.fail(f"PostgreSQL is required here but unavailable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server():
    yield from _started_server()


@pytest.fixture
def own_pg_server():
    yield from _started_server()


@pytest.fixture
def pg_url(pg_server: PgServer):
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)  # terminates leftover connections first
