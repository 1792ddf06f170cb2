"""Fixtures for tests/mcp: the real Claude Code CLI (tests/agents/cli_fixtures.py)."""

from tests.agents.cli_fixtures import claude_bin  # noqa: F401  (fixture)
