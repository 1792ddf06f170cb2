"""A store deleted, emptied or replaced under a running daemon stops it; the CLI never silently starts a new one."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.daemon.conftest import make_project, wait_for


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] == "Z"
    except OSError:
        return True


def _db(root):
    return root / ".ai" / "state.db"


def _remove_db(root):
    for suffix in ("", "-wal", "-shm"):
        (root / ".ai" / f"state.db{suffix}").unlink(missing_ok=True)


def _empty_db(root):
    _remove_db(root)
    _db(root).write_bytes(b"")


def _replace_db(root, tmp_path):
    other = make_project(tmp_path / "other")  # a store of its own: another id
    _remove_db(root)
    shutil.copy(_db(other), root / ".ai" / "state.db.new")
    os.replace(root / ".ai" / "state.db.new", _db(root))


@pytest.mark.parametrize("how", ["deleted", "emptied", "replaced"])
def test_daemon_stops_when_its_store_vanishes_or_is_replaced(dproject, tmp_path, how):
    pid = dproject.start("--workers", "1")["pid"]
    assert dproject.create("before") == 1
    {
        "deleted": lambda: _remove_db(dproject.root),
        "emptied": lambda: _empty_db(dproject.root),
        "replaced": lambda: _replace_db(dproject.root, tmp_path),
    }[how]()
    wait_for(lambda: _gone(pid), 30, "the daemon to stop on its own")
    log = (dproject.daemon_dir / "daemon.log").read_text()
    assert "store vanished or replaced; stopping" in log and "aictl init" in log
    if how == "deleted":
        assert not _db(dproject.root).exists()  # nobody recreated an empty store in its place


def test_cli_refuses_to_create_a_new_store_outside_init(dproject):
    dproject.create("before")
    _remove_db(dproject.root)
    r = dproject.cli("task", "list")
    assert r.returncode == 1 and "is gone" in r.stderr and "aictl init" in r.stderr and "Traceback" not in r.stderr
    assert not _db(dproject.root).exists()
    assert dproject.cli("daemon", "start").returncode == 1 and not _db(dproject.root).exists()
    assert dproject.cli("init").returncode == 0  # the one way to start over
    assert dproject.cli("task", "list").returncode == 0


def test_cli_refuses_a_replaced_store(dproject, tmp_path):
    dproject.create("before")
    _replace_db(dproject.root, tmp_path)
    r = dproject.cli("task", "list")
    assert r.returncode == 1 and "not this project's store" in r.stderr
