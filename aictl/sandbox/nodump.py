"""Keep aictl's own environment out of reach of the local backend's commands (Linux).

A local command runs as aictl's user, so `/proc/$PPID/environ` (and /proc/<aictl pid>/mem) would
show it every key aictl holds. PR_SET_DUMPABLE=0 makes those files root-owned and refuses
ptrace: a process of the same, non-root user can no longer read them. It is no boundary when
aictl runs as root (root reads any /proc file), nor for a key that an ancestor process (the
shell that started aictl) also holds in its environment: the local backend is not a sandbox,
see docs/execution.md. Side effect: no core dumps of aictl, and debuggers need root to attach.
"""

from __future__ import annotations

import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
_done = False


def hide_environment() -> bool:
    """Make this process non-dumpable once; True when it is (always False off Linux)."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _done = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc prctl (musl without it, a stripped runtime)
        _done = False
    return _done
