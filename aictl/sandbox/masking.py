"""Masking for the docker backend: the workspace files the policy forbids reading, covered by an empty file.

The executor decides which files (spec.masked_paths, repo-relative); here they become
read-only bind mounts of one empty file, so inside the container each reads as empty
and cannot be written, removed, renamed or hard-linked (EBUSY/EROFS/EXDEV).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from aictl.sandbox.base import SandboxError, SandboxSpec


def mask_targets(spec: SandboxSpec, workdir: Path) -> list[str]:
    """Where inside the container an empty file goes: each masked path that is a regular file of the workspace.

    A symlink is left alone (docker would follow it when mounting; its target, if denied, is masked itself).
    """
    targets = []
    for rel in spec.masked_paths:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            raise SandboxError(f"masked path {rel!r} is not a path inside the workspace")
        path = workdir.joinpath(*parts)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
        except OSError:
            continue  # gone since the policy looked: nothing left to read
        if os.path.realpath(path) != os.path.join(os.path.realpath(workdir), *parts):
            continue  # a symlinked directory on the way: the real file is masked under its own name
        targets.append(f"{spec.mount.rstrip('/')}/{'/'.join(parts)}")
    return targets


def mask_mounts(spec: SandboxSpec, workdir: Path, blank_dir: str) -> list[Any]:
    """One read-only bind of an empty, world-readable file over each masked workspace file."""
    from docker.types import Mount

    targets = mask_targets(spec, workdir)
    if not targets:
        return []
    blank = Path(blank_dir) / "masked"
    blank.write_bytes(b"")
    blank.chmod(0o444)
    return [Mount(target=t, source=str(blank), type="bind", read_only=True) for t in targets]


__all__ = ["mask_mounts", "mask_targets"]
