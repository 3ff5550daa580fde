"""rollout.early_stop: when a group is decided and what is aborted (pure bookkeeping)."""

import pytest

from rollout.early_stop import EarlyStop, GroupTracker
from rollout.engine import _call_slices


def test_a_group_is_decided_by_its_first_correct_and_first_incorrect_finish():
    tracker = GroupTracker(num_groups=2, group_size=4)
    tracker.record(0, 2, correct=True)  # engine step 1
    assert tracker.take_decided() == {}  # only correct so far
    tracker.record(0, 0, correct=True)  # step 2
    tracker.record(1, 3, correct=False)
    assert tracker.take_decided() == {}
    tracker.record(0, 1, correct=False)  # step 3 decides group 0: abort the one still running
    assert tracker.take_decided() == {0: [3]}
    assert tracker.decided == [True, False]
    tracker.record(1, 0, correct=False)
    tracker.record(1, 1, correct=True)
    assert tracker.take_decided() == {1: [2]}
    assert tracker.take_decided() == {}  # decided once
    assert tracker.aborted == 2
    with pytest.raises(ValueError, match="completion 3 of group 0 is not running"):
        tracker.record(0, 3, correct=True)  # aborted completions cannot finish


def test_completions_finishing_in_the_deciding_step_are_all_kept():
    # a tie for shortest: 0 (correct), 1 (wrong) and 2 (correct) all finish in one step
    tracker = GroupTracker(num_groups=2, group_size=4)
    for completion, correct in ((0, True), (1, False), (2, True)):
        tracker.record(0, completion, correct)
    tracker.record(1, 0, correct=True)
    tracker.record(1, 1, correct=True)
    assert tracker.take_decided() == {0: [3]}
    tracker.record(1, 2, correct=True)
    tracker.record(1, 3, correct=True)
    assert tracker.take_decided() == {}  # all correct: ran to the end, nothing aborted
    assert tracker.decided == [True, False] and tracker.aborted == 1


def test_early_stop_slices_with_the_call():
    stop = EarlyStop(answers=("1", "2", "3"), judges=("judge",))
    assert stop.slice(1, 3) == EarlyStop(answers=("2", "3"), judges=("judge",))
    with pytest.raises(ValueError, match="needs reward actors"):
        EarlyStop(answers=("1",), judges=())


def test_call_slices_respect_the_prefill_and_sequence_budgets():
    prompts = [[0] * 10, [0] * 10, [0] * 30, [0] * 10]
    assert _call_slices(prompts, 2, None, None) == [(0, 4)]
    # prefill: 2 x (10 + 10) = 40 fits 50, + 2 x 30 does not
    assert _call_slices(prompts, 2, 50, None) == [(0, 2), (2, 3), (3, 4)]
    # sequences: at most 5 // 2 = 2 prompts of n=2 per slice
    assert _call_slices(prompts, 2, None, 5) == [(0, 2), (2, 4)]
    # a single prompt over both budgets still gets its own slice
    assert _call_slices([[0] * 100], 8, 50, 4) == [(0, 1)]
