"""Fixtures for tests/agents: the real agent CLIs (see cli_fixtures.py) and the executor's git project."""

from tests.agents.cli_fixtures import claude_bin, codex_bin  # noqa: F401  (fixtures)
from tests.execution.conftest import git_project  # noqa: F401  (fixture)
