"""safeio against real special files: nothing blocks, nothing outside the root is read, sizes are capped."""

from __future__ import annotations

import os

import pytest

from aictl.sandbox.safeio import Refused, read_dir_regular, read_head, read_regular


def test_regular_files_are_read_and_everything_else_refused(tmp_path):
    root = tmp_path / "ws"
    (root / "d").mkdir(parents=True)
    (root / "d" / "ok.xml").write_bytes(b"<x/>")
    os.symlink("/dev/zero", root / "d" / "zero.xml")
    os.mkfifo(root / "d" / "fifo.xml")
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "h.xml").write_text("host")
    os.symlink(outside, root / "up")
    assert read_regular(root, "d/ok.xml") == b"<x/>"
    for rel, why in (
        ("d/zero.xml", "symbolic link"),
        ("d/fifo.xml", "FIFO"),
        ("up/h.xml", "symbolic link"),
        ("../host/h.xml", "inside the workspace"),
        ("d", "directory"),
    ):
        with pytest.raises(Refused, match=why):
            read_regular(root, rel)
    found, refused = read_dir_regular(root, "d", "*.xml")
    assert found == [("ok.xml", b"<x/>")]
    assert {p for p, _ in refused} == {"d/zero.xml", "d/fifo.xml"}
    assert read_dir_regular(root, "up", "*.xml") == ([], [("up", "refused: a symbolic link")])
    assert read_dir_regular(root, "missing", "*.xml") == ([], [])


def test_size_cap_and_head(tmp_path):
    (tmp_path / "big").write_bytes(b"a" * 1000)
    with pytest.raises(Refused, match="1000 bytes, more than the 10-byte limit"):
        read_regular(tmp_path, "big", limit=10)
    assert read_head(tmp_path, "big", limit=10) == (b"a" * 10, 1000)
    os.chmod(tmp_path / "big", 0o4755)
    with pytest.raises(Refused, match="setuid"):
        read_regular(tmp_path, "big")
