"""Fixtures for tests/agents: the real agent CLIs (see cli_fixtures.py), the executor's git project, a workspace."""

from pathlib import Path

import pytest

from tests.agents.cli_fixtures import claude_bin, codex_bin  # noqa: F401  (fixtures)
from tests.agents.llama_fixtures import llama_server, own_llama_server  # noqa: F401  (fixtures)
from tests.agents.plane import plane  # noqa: F401  (fixture)
from tests.execution.conftest import git_project  # noqa: F401  (fixture)


@pytest.fixture
def ws(tmp_path) -> Path:
    """A plain directory standing in for a task's workspace, with one file in it."""
    path = tmp_path / "ws"
    path.mkdir()
    (path / "README.md").write_text("readme\n")
    return path


def pytest_collection_modifyitems(session, config, items):
    """The tests of the real llama.cpp server run last: under .ci/run its first build (~16 minutes) compiles in
    the background while the rest of the suite runs, instead of holding the suite up at the first such test."""
    needs = {"llama_server", "own_llama_server"}
    items.sort(key=lambda item: bool(needs & set(getattr(item, "fixturenames", ()))))
