"""Reading workspace content on the host: regular files inside the worktree only, bounded in size and time.

Everything an agent leaves in its worktree is hostile input. A path is walked one
component at a time from the worktree's directory descriptor with O_NOFOLLOW, so no
symlink (to /dev/zero, to a host directory) is ever followed; the last component is
opened with O_NONBLOCK, so a FIFO cannot hang the open, and fstat must say S_ISREG
before a byte is read. A read stops at `limit` bytes and at `deadline` (monotonic).

    data = read_regular(root, ".aictl-reports/junit.xml", limit=MB)      # bytes, or Refused
    found, refused = read_dir_regular(root, ".aictl-reports", "*.xml")  # what was read, what was not and why
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from pathlib import Path, PurePosixPath

__all__ = ["DEFAULT_LIMIT", "Refused", "read_dir_regular", "read_head", "read_regular"]

DEFAULT_LIMIT = 8 * 1024 * 1024
CHUNK = 64 * 1024
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """A workspace path the host will not read; `reason` says why, for the evidence."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _parts(rel: str | os.PathLike[str]) -> list[str]:
    p = PurePosixPath(os.fspath(rel))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise Refused(str(rel), "not a path inside the workspace")
    return [x for x in p.parts if x != "."]


def _open_dir(root: Path, parts: list[str], shown: str) -> int:
    """A descriptor of directory root/parts, reached without following any symlink."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in parts:
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise Refused(shown, _why(fd, name, e)) from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _why(dir_fd: int, name: str, err: OSError) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return err.strerror or str(err)
    return f"refused: {_kind(st.st_mode)}" if not stat.S_ISREG(st.st_mode) else (err.strerror or str(err))


def _read_at(dir_fd: int, name: str, shown: str, limit: int, deadline: float | None, *, head: bool = False) -> bytes:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        raise Refused(shown, _why(dir_fd, name, e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(shown, f"refused: {_kind(st.st_mode)}")
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            raise Refused(shown, "refused: a setuid/setgid file")
        if st.st_size > limit and not head:
            raise Refused(shown, f"refused: {st.st_size} bytes, more than the {limit}-byte limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise Refused(shown, "refused: reading it took longer than the run's deadline")
            data = os.read(fd, min(CHUNK, limit + 1 - total))
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            total += len(data)
            if total > limit:  # it grew while we read (or only its head was asked for)
                if head:
                    return b"".join(chunks)[:limit]
                raise Refused(shown, f"refused: more than the {limit}-byte limit")
    finally:
        os.close(fd)


def read_regular(
    root: Path, rel: str | os.PathLike[str], *, limit: int = DEFAULT_LIMIT, deadline: float | None = None
) -> bytes:
    """The bytes of regular file root/rel, or Refused (symlink anywhere on the way, special file, too big, slow)."""
    shown = PurePosixPath(os.fspath(rel)).as_posix()
    *dirs, name = _parts(rel)
    fd = _open_dir(Path(root), dirs, shown)
    try:
        return _read_at(fd, name, shown, limit, deadline)
    finally:
        os.close(fd)


def read_head(
    root: Path, rel: str | os.PathLike[str], *, limit: int, deadline: float | None = None
) -> tuple[bytes, int]:
    """(first `limit` bytes, size) of regular file root/rel, with the checks of `read_regular`."""
    shown = PurePosixPath(os.fspath(rel)).as_posix()
    *dirs, name = _parts(rel)
    fd = _open_dir(Path(root), dirs, shown)
    try:
        data = _read_at(fd, name, shown, limit, deadline, head=True)
        return data, max(len(data), os.stat(name, dir_fd=fd, follow_symlinks=False).st_size)
    finally:
        os.close(fd)


def read_dir_regular(
    root: Path,
    rel_dir: str,
    pattern: str = "*",
    *,
    limit: int = DEFAULT_LIMIT,
    deadline: float | None = None,
    max_files: int = 200,
) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """([(name, bytes)], [(name, reason)]) for the entries of root/rel_dir matching `pattern`, sorted by name.

    A directory that is missing gives ([], []); one that is a symlink or not a directory is itself refused.
    """
    found: list[tuple[str, bytes]] = []
    refused: list[tuple[str, str]] = []
    try:
        fd = _open_dir(Path(root), _parts(rel_dir), rel_dir)
    except Refused as e:
        if e.reason == os.strerror(2):  # ENOENT: nothing was left there
            return found, refused
        return found, [(rel_dir, e.reason)]
    try:
        names = sorted(n for n in os.listdir(fd) if fnmatch.fnmatchcase(n, pattern))
        for name in names[:max_files]:
            shown = f"{rel_dir}/{name}"
            try:
                found.append((name, _read_at(fd, name, shown, limit, deadline)))
            except Refused as e:
                refused.append((shown, e.reason))
        refused += [(f"{rel_dir}/{n}", f"refused: more than {max_files} files") for n in names[max_files:]]
    finally:
        os.close(fd)
    return found, refused
