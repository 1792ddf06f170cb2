import pytest

from tests.execution.conftest import git, git_project  # noqa: F401 - the same project fixture

PARKED = "effect: require_approval\n    match:\n      actions: [merge]"


@pytest.fixture
def project(git_project):  # noqa: F811 - the imported fixture, extended
    """The project with merges allowed (the template parks every merge for a human)."""
    policy = git_project / ".ai" / "policy.yaml"
    text = policy.read_text()
    assert PARKED in text
    policy.write_text(text.replace(PARKED, "effect: allow\n    match:\n      actions: [merge]"))
    git(git_project, "commit", "-qam", "allow merges")  # a clean main worktree
    return git_project
