"""Task statuses and the one table of legal transitions."""

from __future__ import annotations

from enum import Enum

from aictl.domain.errors import IllegalTransition


class TaskStatus(str, Enum):
    QUEUED = "queued"
    BLOCKED = "blocked"
    CLAIMED = "claimed"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    DONE = "done"
    MERGED = "merged"  # done, and its commit landed on the integration branch (aictl merge)
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # so f-strings and tables print "queued", not "TaskStatus.QUEUED"
        return self.value


S = TaskStatus

# A lease is held in these states; the reaper returns them to the queue when it expires.
LEASED = frozenset({S.CLAIMED, S.RUNNING})
# A task in these states holds its path locks (only under a lease, so every lock can expire).
HOLDING_LOCKS = LEASED
TERMINAL = frozenset({S.DONE, S.MERGED, S.CANCELLED})
# Dependents wait while a dependency is in any state but done.
FINISHED_OK = frozenset({S.DONE, S.MERGED})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.QUEUED: frozenset({S.CLAIMED, S.BLOCKED, S.CANCELLED}),
    S.BLOCKED: frozenset({S.QUEUED, S.FAILED, S.CANCELLED}),
    S.CLAIMED: frozenset({S.RUNNING, S.DONE, S.FAILED, S.QUEUED, S.AWAITING_APPROVAL, S.CANCELLED}),
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.QUEUED, S.AWAITING_APPROVAL, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.QUEUED, S.RUNNING, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.QUEUED, S.BLOCKED}),
    S.CANCELLED: frozenset({S.QUEUED, S.BLOCKED}),
    # The merge queue lands done work (merged) or sends it back with the conflict or failed verify (queued).
    S.DONE: frozenset({S.MERGED, S.QUEUED}),
    S.MERGED: frozenset(),
}


def can_transition(src: TaskStatus, dst: TaskStatus) -> bool:
    return dst in TRANSITIONS[TaskStatus(src)]


def check_transition(task_id: int, src: TaskStatus, dst: TaskStatus, verb: str) -> None:
    """Raise IllegalTransition unless src -> dst is in the table."""
    src, dst = TaskStatus(src), TaskStatus(dst)
    if can_transition(src, dst):
        return
    allowed = sorted(s.value for s in TRANSITIONS[src])
    hint = None
    if src in (S.FAILED, S.CANCELLED):
        hint = f"retry it first: aictl task retry {task_id}"
    elif src == S.QUEUED and verb in ("complete", "fail", "start", "heartbeat", "release"):
        hint = f"claim it first: aictl task claim --id {task_id}"
    raise IllegalTransition(
        f"cannot {verb} task {task_id}: it is {src.value} (from {src.value} it can go to: "
        f"{', '.join(allowed) or 'nothing, it is final'})",
        hint=hint,
        details={"task_id": task_id, "status": src.value, "wanted": dst.value},
    )
