"""Training prompts in a seeded order, epoch after epoch. Its position is checkpointed, so a
resumed run continues with the next unseen prompt and never replays one it trained on."""

from __future__ import annotations

import random


class PromptStream:
    def __init__(self, num_problems: int, seed: int | str, *, epoch: int = 0, index: int = 0) -> None:
        if num_problems < 1:
            raise ValueError("the training split is empty: nothing to sample prompts from")
        self.num_problems, self.seed = num_problems, seed
        self.epoch, self.index = epoch, index
        self._order = self._shuffled(epoch)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(self.num_problems))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)  # a fresh, reproducible order per epoch
        return order

    def take(self, count: int) -> list[int]:
        """The next ``count`` problem indices (crossing into the next epoch when needed)."""
        taken = []
        while len(taken) < count:
            if self.index == self.num_problems:
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            step = min(count - len(taken), self.num_problems - self.index)
            taken += self._order[self.index : self.index + step]
            self.index += step
        return taken

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    @classmethod
    def restore(cls, num_problems: int, seed: int | str, state: dict) -> PromptStream:
        return cls(num_problems, seed, epoch=state["epoch"], index=state["index"])
