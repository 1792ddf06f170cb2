"""Fixtures for tests/mcp: the real Claude Code CLI (tests/agents/cli_fixtures.py) and the executor's git project."""

from tests.agents.cli_fixtures import claude_bin  # noqa: F401  (fixture)
from tests.execution.conftest import git_project  # noqa: F401  (fixture)
