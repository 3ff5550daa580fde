"""rollout.early_stop: when a group is decided and what is aborted (pure bookkeeping)."""

import pytest

from rollout.early_stop import EarlyStop, GroupTracker
from rollout.engine import _call_slices


def _step(tracker, *finishes):
    """One engine step whose verdicts arrive at once: (group, completion, correct) each."""
    for group, completion, correct in finishes:
        tracker.finished(group, completion)
        tracker.judged(group, correct)
    return tracker.take_decided()


def test_a_group_is_decided_by_its_first_correct_and_first_incorrect_verdict():
    tracker = GroupTracker(num_groups=2, group_size=4)
    assert _step(tracker, (0, 2, True)) == {}  # only correct so far
    assert _step(tracker, (0, 0, True), (1, 3, False)) == {}
    assert _step(tracker, (0, 1, False)) == {0: [3]}  # decided: abort the one still running
    assert tracker.decided == [True, False]
    assert _step(tracker, (1, 0, False), (1, 1, True)) == {1: [2]}
    assert tracker.take_decided() == {}  # decided once
    assert tracker.aborted == 2
    with pytest.raises(ValueError, match="completion 3 of group 0 is not running"):
        tracker.finished(0, 3)  # aborted completions cannot finish


def test_completions_finishing_before_the_verdict_arrives_are_kept():
    tracker = GroupTracker(num_groups=2, group_size=4)
    # step t: a tie for shortest, 0 (correct) and 1 (wrong); verdicts not back yet
    tracker.finished(0, 0)
    tracker.finished(0, 1)
    tracker.finished(1, 0)
    # step t + 1 finishes completion 2 of group 0; then step t's verdicts arrive
    tracker.finished(0, 2)
    tracker.judged(0, True)
    tracker.judged(0, False)
    tracker.judged(1, True)
    assert tracker.take_decided() == {0: [3]}  # 2 finished during the lag: kept, not aborted
    assert _step(tracker, (1, 1, True), (1, 2, True), (1, 3, True)) == {}  # all correct: ran to the end
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
