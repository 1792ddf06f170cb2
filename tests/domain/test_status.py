from __future__ import annotations

import pytest

from aictl.domain.errors import IllegalTransition
from aictl.domain.status import TERMINAL, TRANSITIONS, TaskStatus, can_transition, check_transition

S = TaskStatus


def test_every_status_has_a_row():
    assert set(TRANSITIONS) == set(TaskStatus)


@pytest.mark.parametrize(
    "src,dst",
    [
        (S.QUEUED, S.CLAIMED),
        (S.CLAIMED, S.RUNNING),
        (S.RUNNING, S.DONE),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.QUEUED),
        (S.BLOCKED, S.QUEUED),
        (S.FAILED, S.QUEUED),
        (S.CANCELLED, S.QUEUED),
        (S.RUNNING, S.AWAITING_APPROVAL),
        (S.AWAITING_APPROVAL, S.RUNNING),
        (S.DONE, S.MERGED),
        (S.DONE, S.QUEUED),
    ],
)
def test_legal(src, dst):
    assert can_transition(src, dst)
    check_transition(1, src, dst, "x")


@pytest.mark.parametrize(
    "src,dst",
    [
        (S.QUEUED, S.DONE),
        (S.QUEUED, S.RUNNING),
        (S.BLOCKED, S.CLAIMED),
        (S.MERGED, S.QUEUED),
        (S.DONE, S.CANCELLED),
        (S.DONE, S.FAILED),
        (S.MERGED, S.DONE),
        (S.FAILED, S.DONE),
        (S.CANCELLED, S.RUNNING),
        (S.QUEUED, S.QUEUED),
    ],
)
def test_illegal_raises_with_allowed_targets(src, dst):
    assert not can_transition(src, dst)
    with pytest.raises(IllegalTransition) as e:
        check_transition(7, src, dst, "frob")
    assert f"cannot frob task 7: it is {src.value}" in e.value.message
    assert e.value.exit_code == 4


def test_done_only_moves_through_the_merge_queue_and_merged_is_final():
    assert TRANSITIONS[S.DONE] == frozenset({S.MERGED, S.QUEUED})
    assert TRANSITIONS[S.MERGED] == frozenset()
    assert {S.DONE, S.MERGED} <= TERMINAL
