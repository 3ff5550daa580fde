"""Optimizer steps of one rollout batch: mini-batches of whole prompt groups, several epochs. Pure python.

verl's ``ppo_mini_batch_size`` / ``ppo_epochs``: the batch's prompt groups, in order, are cut
into mini-batches of ``mini_batch_size`` groups, and each mini-batch is one optimizer step;
the whole sequence repeats ``epochs`` times. A group's rows always stay together, so every
step sees complete groups (GRPO's G completions, BPPO's pair) and its loss normalisers are
its own. With more than one step, the policy moves between steps and the old log-probs
(taken once, before the first) make the ratio differ from 1, which is what the clip range
is for.
"""

from __future__ import annotations

import math


def optimizer_steps(num_groups: int, mini_batch_size: int | None, epochs: int) -> int:
    """How many optimizer steps a batch of ``num_groups`` prompt groups makes."""
    if num_groups == 0:
        return 0
    per_epoch = 1 if mini_batch_size is None else math.ceil(num_groups / mini_batch_size)
    return epochs * per_epoch


def plan_mini_batches(group_index: list[int], mini_batch_size: int | None, epochs: int) -> list[list[int]]:
    """``[optimizer step] -> row indices`` for rows whose prompt groups are ``group_index``.

    Groups are taken in order of first appearance; ``mini_batch_size`` None = one mini-batch
    of every group. Raises on a size or epoch count below 1.
    """
    if epochs < 1 or (mini_batch_size is not None and mini_batch_size < 1):
        raise ValueError(f"mini_batch_size={mini_batch_size} and epochs={epochs} must be >= 1")
    rows_of: dict[int, list[int]] = {}
    for row, group in enumerate(group_index):
        rows_of.setdefault(group, []).append(row)
    groups = list(rows_of)
    size = len(groups) if mini_batch_size is None else mini_batch_size
    epoch = [
        [row for g in groups[start : start + size] for row in rows_of[g]]
        for start in range(0, len(groups), max(1, size))
    ]
    return [rows for _ in range(epochs) for rows in epoch]
