"""Split a step's rows over data-parallel ranks and micro-batches by a token budget. Pure python.

Every rank must run the same number of backward passes (ZeRO-2/3 reduce gradients inside
each backward, so a rank with fewer micro-batches would hang the others), so the plan
always gives every rank the same number of micro-batches; a rank with nothing to do gets
empty ones, which the learner runs as a zero-loss pass.
"""

from __future__ import annotations

import math


def plan_micro_batches(lengths: list[int], world_size: int, token_budget: int) -> list[list[list[int]]]:
    """``[rank][micro_batch] -> row indices`` (ascending) for rows of ``lengths`` tokens.

    The fewest micro-batches per rank such that no micro-batch exceeds ``token_budget``
    (a single row longer than the budget goes alone); rows go longest first to the
    lightest micro-batch, which balances tokens across ranks.
    """
    if world_size < 1 or token_budget < 1:
        raise ValueError(f"world_size={world_size} and token_budget={token_budget} must be >= 1")
    by_tokens = math.ceil(sum(lengths) / (world_size * token_budget))
    by_rows = math.ceil(len(lengths) / world_size)  # more bins than rows would only add empty passes
    per_rank = max(1, min(by_tokens, by_rows))
    while True:
        bins = _longest_first(lengths, world_size * per_rank)
        if all(len(rows) <= 1 or sum(lengths[r] for r in rows) <= token_budget for rows in bins):
            break
        per_rank += 1
    # Bin b goes to rank b % world_size, so each rank gets per_rank of them.
    return [[sorted(bins[m * world_size + rank]) for m in range(per_rank)] for rank in range(world_size)]


def _longest_first(lengths: list[int], num_bins: int) -> list[list[int]]:
    bins: list[list[int]] = [[] for _ in range(num_bins)]
    loads = [0] * num_bins
    for row in sorted(range(len(lengths)), key=lambda r: (-lengths[r], r)):
        lightest = min(range(num_bins), key=lambda b: (loads[b], len(bins[b]), b))
        bins[lightest].append(row)
        loads[lightest] += lengths[row]
    return bins
