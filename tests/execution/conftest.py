from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def git_project(tmp_path, monkeypatch) -> Path:
    """A git repository with a few files and an initialised aictl project, as the working directory."""
    from aictl.cli.main import main

    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "src" / "app.py").write_text("print('old')\n")
    (root / "docs" / "index.md").write_text("# docs\n")
    (root / "README.md").write_text("hello\n")
    git(root, "init", "-q", "-b", "main")
    monkeypatch.chdir(root)
    assert main(["init", "-o", "json"]) == 0
    (root / ".ai" / "config.yaml").write_text("lease_ttl: 30\nheartbeat_interval: 1\nbackoff_base: 0\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root
