"""Split a step's rows over data-parallel ranks and micro-batches by a token budget. Pure python.

A micro-batch is padded to its longest row, so what it costs (activations, logits,
compute) is ``rows x longest row``, its padded size, not the tokens it holds; the budget
bounds that. Rows of similar length therefore go together: sorted longest first, each
micro-batch takes as many of the next rows as fit the budget at its first row's length.
Planned by tokens instead, one long response would pad a dozen short ones to its length
(a long-tailed 512-row GRPO batch padded to 2.2x its tokens, a micro-batch to twice the
budget).

Every rank must run the same number of backward passes (ZeRO-2/3 reduce gradients inside
each backward, so a rank with fewer micro-batches would hang the others), so the plan
always gives every rank the same number of micro-batches; a rank with nothing to do gets
empty ones, which the learner runs as a zero-loss pass.

Padding-free (``learner.padding_free``, ``learner.varlen``) a micro-batch's rows run as one
packed row, so it costs the tokens it holds and the budget bounds their sum instead; the
rows still go longest first, which keeps rows of similar length together (the packed
attention pads each row to the micro-batch's longest, see ``packed_attention``).
"""

from __future__ import annotations

import math


def plan_micro_batches(
    lengths: list[int], world_size: int, token_budget: int, *, padding_free: bool = False
) -> list[list[list[int]]]:
    """``[rank][micro_batch] -> row indices`` (ascending) for rows of ``lengths`` tokens.

    Each micro-batch's size stays within ``token_budget`` (a single row longer than the
    budget goes alone): its padded size (rows x its longest row), or with ``padding_free``
    its tokens (the sum of its rows' lengths). Padded, the plan has the fewest
    micro-batches per rank any such plan can have; padding-free, it fills micro-batches in
    order (next fit), each left at most one row short of the budget. Micro-batches are
    listed heaviest first; a rank's tokens are balanced against the others'.
    """
    if world_size < 1 or token_budget < 1:
        raise ValueError(f"world_size={world_size} and token_budget={token_budget} must be >= 1")
    size = real_size if padding_free else padded_size
    cost = lambda rows: size(rows, lengths)  # noqa: E731
    longest_first = sorted(range(len(lengths)), key=lambda r: (-lengths[r], r))
    # Packing longest first makes the fewest micro-batches in total, hence per rank.
    per_rank = max(1, math.ceil(len(_pack(longest_first, lengths, token_budget, padding_free)) / world_size))
    slots = world_size * per_rank
    # Then the smallest budget that still packs into those slots (fewer micro-batches as the
    # budget grows, so bisect): evener micro-batches, easier to balance over ranks, and a
    # lower peak, at no extra pass.
    low, high = 1, token_budget
    while low < high:
        middle = (low + high) // 2
        fits = len(_pack(longest_first, lengths, middle, padding_free)) <= slots
        low, high = (low, middle) if fits else (middle + 1, high)
    micro = _split_to_fill(_pack(longest_first, lengths, low, padding_free), cost, slots)
    return _assign_to_ranks(micro, cost, world_size, per_rank)


def padded_size(rows: list[int], lengths: list[int]) -> int:
    """Tokens a micro-batch of ``rows`` occupies once padded to its longest row (at least 1
    per row: an empty row still takes a position)."""
    return len(rows) * max(1, max((lengths[r] for r in rows), default=0)) if rows else 0


def real_size(rows: list[int], lengths: list[int]) -> int:
    """Tokens a micro-batch of ``rows`` holds: what it costs packed (at least 1 per row)."""
    return sum(max(1, lengths[r]) for r in rows)


def _pack(longest_first: list[int], lengths: list[int], token_budget: int, padding_free: bool) -> list[list[int]]:
    """Rows, taken longest first, filled greedily into micro-batches of consecutive lengths.
    Padded, this makes the fewest micro-batches: whichever one holds the longest row has
    room for at most ``max(1, budget // longest)`` rows, and taking the longest rows for it
    leaves the rest no harder to pack. Each row costs O(1) (the size of a micro-batch with
    one more row), as this runs once per bisection step."""
    micro: list[list[int]] = []
    tokens = 0  # the last micro-batch's, at least 1 per row as in real_size
    for row in longest_first:
        length = max(1, lengths[row])
        if micro:
            # Rows come longest first, so a micro-batch's first row sets its width.
            grown = tokens + length if padding_free else (len(micro[-1]) + 1) * max(1, lengths[micro[-1][0]])
            if grown <= token_budget:
                micro[-1].append(row)
                tokens += length
                continue
        micro.append([row])
        tokens = length
    return micro


def _split_to_fill(micro: list[list[int]], cost, slots: int) -> list[list[int]]:
    """Halve the heaviest splittable micro-batch until there are ``slots``: a slot that
    would otherwise run an empty pass takes half of the largest one instead."""
    micro = list(micro)
    while len(micro) < slots:
        splittable = [i for i, rows in enumerate(micro) if len(rows) > 1]
        if not splittable:
            break  # fewer rows than slots: the rest stay empty
        heaviest = max(splittable, key=lambda i: (cost(micro[i]), -i))
        rows = micro.pop(heaviest)
        micro[heaviest:heaviest] = [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
    return micro


def _assign_to_ranks(micro: list[list[int]], cost, world_size: int, per_rank: int) -> list[list[list[int]]]:
    """Heaviest micro-batch first to the least-loaded rank (by ``cost``) that still has a
    free slot; free slots left at the end become empty micro-batches."""
    plan: list[list[list[int]]] = [[] for _ in range(world_size)]
    loads = [0] * world_size
    for rows in sorted(micro, key=lambda rows: (-cost(rows), min(rows))):
        rank = min((r for r in range(world_size) if len(plan[r]) < per_rank), key=lambda r: (loads[r], r))
        plan[rank].append(sorted(rows))
        loads[rank] += cost(rows)
    for rank_plan in plan:
        rank_plan.extend([] for _ in range(per_rank - len(rank_plan)))
    return plan
