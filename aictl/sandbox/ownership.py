"""Who owns a workspace's files, and the files no workspace may keep.

When aictl runs as root, a container never does: it runs as an unprivileged uid
(`sandbox_user`), and the worktree is lent to that uid for the run (`chown_tree`)
and given back to the invoker afterwards, so the agent can write its workspace and
nothing else. Root's chown clears setuid/setgid bits on the way back; `strip_special`
then makes sure of it for every backend: setuid/setgid bits are removed and device
nodes deleted, and what was refused is returned for the evidence. No walk follows a
symbolic link (lchown, lstat, os.walk without followlinks).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["UNPRIVILEGED", "chown_tree", "sandbox_user", "strip_special"]

# nobody:nogroup: owns nothing on the host, so a process running as it can write only what it is lent.
UNPRIVILEGED = (65534, 65534)


def sandbox_user() -> tuple[int, int]:
    """The uid:gid a container runs as: the invoker's, or UNPRIVILEGED when the invoker is root."""
    uid, gid = os.getuid(), os.getgid()
    return UNPRIVILEGED if uid == 0 else (uid, gid)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give `root` and everything under it to uid:gid, links themselves and not their targets."""
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)
    os.chown(root, uid, gid, follow_symlinks=False)


def strip_special(root: Path) -> list[str]:
    """Remove setuid/setgid bits and device nodes under `root`; the refused paths, each with what was done."""
    refused: list[str] = []
    for top, dirs, files in os.walk(root):
        if top == str(root) and ".git" in dirs:
            dirs.remove(".git")  # the main repository's worktree link: not the agent's content
        for name in (*dirs, *files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            try:
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    os.unlink(path)
                    refused.append(f"{rel}: device node removed")
                elif stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
                    refused.append(f"{rel}: setuid/setgid bit removed")
            except FileNotFoundError:
                continue
    return refused
