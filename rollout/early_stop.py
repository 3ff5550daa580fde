"""Early-stopped groups (docs/design.md §3.7): our reading of Ruyi2.5's "adaptive completion scheduling".

BPPO trains on the shortest correct and the shortest incorrect completion of each group.
When the G completions of a prompt start decoding together, they finish in order of length,
so the first correct and the first incorrect completion to finish ARE the shortest of their
kind: once both have finished, nothing the rest of the group could produce changes the pair.
The engine then aborts the rest and saves their decoding time, the one cost BPPO's selection
and prefix cannot touch. What does change: the group's advantages are computed over the
completions that finished (``learner.advantages.group_advantages(valid=...)``), i.e. from a
smaller, shorter-biased sample of the group. The trainer reports the accuracy effect instead
of assuming there is none.

"Start together" is made true on the engine side by admitting a whole call at once (a call is
split so that its prompts x G fit the scheduler's sequence and prefill budgets). This module
is the bookkeeping only, free of vLLM and Ray, so it is unit-tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EarlyStop:
    """What an engine needs to stop groups early: each prompt's gold answer and the reward
    actors that judge finished completions (``score_chunk([(text, answer), ...])`` ->
    results with a ``correct`` flag: ``rewards.pool.RewardWorker``)."""

    answers: tuple[str, ...]
    judges: tuple

    def __post_init__(self) -> None:
        if not self.judges:
            raise ValueError("early stopping needs reward actors to judge finished completions")

    def slice(self, start: int, end: int) -> EarlyStop:
        return EarlyStop(self.answers[start:end], self.judges)


class GroupTracker:
    """Per group: which completions are still running, and whether a correct and an incorrect
    one have been judged. A completion is ``finished`` when the engine returns it and
    ``judged`` when its verdict arrives (a step later: judging overlaps the next engine step);
    ``take_decided`` then names the groups that became decided and their completions still
    running, to abort. Completions that finished before the abort are kept: that includes
    every completion tied for shortest (the selection breaks ties by index, so a tie must be
    seen whole)."""

    def __init__(self, num_groups: int, group_size: int) -> None:
        self.running = [set(range(group_size)) for _ in range(num_groups)]
        self.seen_correct = [False] * num_groups
        self.seen_incorrect = [False] * num_groups
        self.decided = [False] * num_groups
        self.aborted = 0

    def finished(self, group: int, completion: int) -> None:
        if completion not in self.running[group]:
            raise ValueError(f"completion {completion} of group {group} is not running")
        self.running[group].discard(completion)

    def judged(self, group: int, correct: bool) -> None:
        if correct:
            self.seen_correct[group] = True
        else:
            self.seen_incorrect[group] = True

    def take_decided(self) -> dict[int, list[int]]:
        """Groups decided since the last call -> their still-running completions (to abort)."""
        decided = {}
        for group, running in enumerate(self.running):
            if not self.decided[group] and self.seen_correct[group] and self.seen_incorrect[group]:
                self.decided[group] = True
                decided[group] = sorted(running)
                self.aborted += len(running)
                running.clear()
        return decided
