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
