"""Bad input is a usage error (exit 2) naming the valid range or file:line, or a clear store error; never
"internal error", and never a value that one command accepts and another then chokes on.

Each case runs `aictl` as a real process in a real git project, and then checks that `task list` still works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aictl.domain import limits


def _aictl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aictl.cli.main", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AICTL_DEBUG": ""},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert _aictl(root, "init").returncode == 0
    return root


def _usage(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


@pytest.mark.parametrize("ttl", ["inf", "1e300", "nan", "-inf", "0", "-5", "0.5", str(limits.TTL_MAX * 2)])
def test_a_lease_ttl_outside_its_range_is_refused_and_nothing_breaks(project, ttl):
    assert _aictl(project, "task", "create", "t").returncode == 0
    for cmd in (["task", "claim", "--ttl", ttl], ["task", "execute", "--command", "true", "--ttl", ttl]):
        _usage(_aictl(project, *cmd), "--ttl", "1.0 to 604800.0")
    assert _aictl(project, "task", "list").returncode == 0
    assert "queued" in _aictl(project, "task", "get", "1").stdout  # nothing was claimed


def test_the_task_plane_refuses_a_ttl_outside_its_range(project):
    from aictl.config import load_settings
    from aictl.domain.errors import UsageError
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    settings = load_settings(project)
    store = open_store(settings.resolved_database_url)
    svc = TaskService(store, settings)
    svc.create_many([TaskSpec(title="t")])
    for ttl in (float("inf"), float("nan"), 1e300, 0.5, -1.0):
        with pytest.raises(UsageError, match="must be 1 to 604800"):
            svc.claim("w", ttl=ttl)
    store.close()


def test_huge_integers_are_refused_with_their_range(project):
    _usage(_aictl(project, "task", "create", "t", "--priority", str(2**63)), "--priority", "-1000000 to 1000000")
    _usage(_aictl(project, "task", "create", "t", "--priority", str(2**40)), "-1000000 to 1000000")
    _usage(_aictl(project, "task", "get", str(2**63)), "9223372036854775807")
    _usage(_aictl(project, "task", "complete", "1", "--epoch", str(2**64)), "--epoch")
    missing = _aictl(project, "task", "get", str(2**63 - 1))
    assert missing.returncode == 3 and "internal error" not in missing.stderr
    assert _aictl(project, "task", "list").returncode == 0


def test_titles_are_checked_against_named_limits(project):
    _usage(_aictl(project, "task", "create", "   "), "title", "only spaces")
    _usage(_aictl(project, "task", "create", "x" * 100_000), "title", str(limits.TITLE_MAX))  # argv holds 128 KB
    _usage(
        _aictl(project, "task", "create", "t", "-d", "d" * (limits.DESCRIPTION_MAX + 1)),
        "description",
        str(limits.DESCRIPTION_MAX),
    )
    _usage(_aictl(project, "task", "create", "t", "-l", "l" * (limits.LABEL_MAX + 1)), str(limits.LABEL_MAX))
    batch = project / "tasks.yaml"
    batch.write_text(f"- title: ok\n- title: '{'y' * (1 << 20)}'\n")  # a 1 MB title
    _usage(_aictl(project, "task", "create", "-f", str(batch)), "tasks.yaml: task 2: title", str(limits.TITLE_MAX))
    created = _aictl(project, "task", "create", "  padded  ", "-o", "json")
    assert created.returncode == 0 and '"title": "padded"' in created.stdout
    assert _aictl(project, "task", "list").returncode == 0


def test_a_duplicate_key_in_a_batch_names_the_file_and_line(project):
    batch = project / "tasks.yaml"
    batch.write_text("- title: first\n  priority: 1\n  title: second\n")
    _usage(_aictl(project, "task", "create", "-f", str(batch)), "tasks.yaml:3:", "duplicate key 'title'", "line 1")
    assert _aictl(project, "task", "list", "-o", "json").stdout.strip() == "[]"


def test_a_duplicate_key_in_config_yaml_names_the_file_and_line(project):
    (project / ".ai" / "config.yaml").write_text("lease_ttl: 30\nlease_ttl: 0.01\n")
    _usage(_aictl(project, "task", "list"), "config.yaml:2:", "duplicate key 'lease_ttl'")


def test_an_unclosed_bracket_in_a_policy_path_glob_names_the_file_and_line(project):
    policy = project / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text().replace('paths: [".env",', 'paths: ["[unclosed", ".env",'))
    line = next(i for i, t in enumerate(policy.read_text().splitlines(), 1) if "[unclosed" in t)
    _usage(_aictl(project, "policy", "validate"), f"policy.yaml:{line}:", "'[unclosed'", "unclosed '['")


def test_a_nonfinite_setting_is_refused(project):
    (project / ".ai" / "config.yaml").write_text("lease_ttl: .inf\n")
    _usage(_aictl(project, "task", "list"), "lease_ttl", "finite")


def test_a_full_disk_is_a_clear_store_error(tmp_path):
    # A real full file system: a 3 MB tmpfs (needs root); the store is filled until SQLite says SQLITE_FULL.
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        subprocess.run(["git", "init", "-q", str(mnt)], check=True)
        assert _aictl(mnt, "init").returncode == 0
        assert _aictl(mnt, "task", "create", "before").returncode == 0
        free = os.statvfs(mnt)
        with open(mnt / "fill", "wb") as f:  # leave ~100 KB: the next big write cannot fit
            f.write(b"\0" * max(0, free.f_bavail * free.f_frsize - 100_000))
        outcomes = [_aictl(mnt, "task", "create", f"big {i}", "-d", "x" * 60_000) for i in range(3)]
        failed = [p for p in outcomes if p.returncode != 0]
        assert failed, "the disk never filled"
        for p in failed:
            assert p.returncode == 1 and "the disk is full" in p.stderr and "internal error" not in p.stderr
        (mnt / "fill").unlink()
        assert _aictl(mnt, "task", "create", "after").returncode == 0
        assert "before" in _aictl(mnt, "task", "list").stdout
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
