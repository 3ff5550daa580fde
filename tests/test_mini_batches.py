"""learner.mini_batches: which rows each optimizer step of a rollout batch trains on."""

import pytest

from learner.mini_batches import optimizer_steps, plan_mini_batches


def test_groups_stay_whole_and_epochs_repeat_the_sequence():
    # rows 0-1 group 7, rows 2-3 group 3, row 4 group 9 (BPPO-like pairs, one lone row)
    group_index = [7, 7, 3, 3, 9]
    assert plan_mini_batches(group_index, 2, 1) == [[0, 1, 2, 3], [4]]
    assert plan_mini_batches(group_index, 2, 2) == [[0, 1, 2, 3], [4], [0, 1, 2, 3], [4]]
    assert plan_mini_batches(group_index, None, 3) == [[0, 1, 2, 3, 4]] * 3
    assert plan_mini_batches(group_index, 10, 1) == [[0, 1, 2, 3, 4]]
    assert optimizer_steps(3, 2, 2) == 4 == len(plan_mini_batches(group_index, 2, 2))
    assert optimizer_steps(3, None, 1) == 1 and optimizer_steps(0, 2, 3) == 0


def test_rows_of_a_group_need_not_be_adjacent():
    assert plan_mini_batches([0, 1, 0, 1, 2], 1, 1) == [[0, 2], [1, 3], [4]]


@pytest.mark.parametrize("size, epochs", [(0, 1), (2, 0)])
def test_bad_sizes_are_refused(size, epochs):
    with pytest.raises(ValueError, match="must be >= 1"):
        plan_mini_batches([0], size, epochs)
