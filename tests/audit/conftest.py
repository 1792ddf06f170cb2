"""Fixtures the audit tests share with others."""

from tests.execution.conftest import git_project  # noqa: F401 - a git repository with an aictl project
