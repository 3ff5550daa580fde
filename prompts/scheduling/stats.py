"""What the run has seen of each training prompt: its pass rate at every visit and the step of
its last visit, plus a recency-weighted pass rate per pool of similar prompts. JSON-exact, so
a checkpoint restores it bit for bit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PromptStats:
    def __init__(
        self, pool_of: Sequence[int], *, memory: int = 4, prior_visits: float = 1.0, pool_decay: float = 0.9
    ) -> None:
        """``pool_of[i]``: the pool index of prompt ``i`` (0 for every prompt when unpooled)."""
        self.pool_of = np.asarray(pool_of, dtype=np.int64)
        self.memory, self.prior_visits, self.pool_decay = memory, prior_visits, pool_decay
        self.pass_rates: list[list[float]] = [[] for _ in range(len(self.pool_of))]  # every visit, in order
        self.last_step: list[int] = [-1] * len(self.pool_of)  # -1: never visited
        self.pool_rate: list[float | None] = [None] * (int(self.pool_of.max(initial=-1)) + 1)
        self.overall_rate: float | None = None  # None until the first group
        # per pool, moving shares of all-correct and all-wrong groups: prompts differ within a pool,
        # so these run far above the pool's p^G and (1-p)^G (the demo: 35% all wrong vs 10%)
        self.pool_easy: list[float | None] = [None] * len(self.pool_rate)
        self.pool_hard: list[float | None] = [None] * len(self.pool_rate)
        self._recent_sum = np.zeros(len(self.pool_of))  # over each prompt's last `memory` visits
        self._recent_count = np.zeros(len(self.pool_of))

    def __len__(self) -> int:
        return len(self.pool_of)

    def record(self, index: int, pass_rate: float, step: int) -> None:
        """One visit: the share of the group's finished completions that were correct."""
        self.pass_rates[index].append(pass_rate)
        self.last_step[index] = step
        self._refresh_recent(index)
        pool = int(self.pool_of[index])
        self.pool_rate[pool] = _moving(self.pool_rate[pool], pass_rate, self.pool_decay)
        self.pool_easy[pool] = _moving(self.pool_easy[pool], float(pass_rate == 1.0), self.pool_decay)
        self.pool_hard[pool] = _moving(self.pool_hard[pool], float(pass_rate == 0.0), self.pool_decay)
        self.overall_rate = _moving(self.overall_rate, pass_rate, self.pool_decay)

    def visits(self, index: int) -> int:
        return len(self.pass_rates[index])

    def recent(self, index: int) -> list[float]:
        return self.pass_rates[index][-self.memory :]

    def estimates(self) -> np.ndarray:
        """``[num_prompts]``: each prompt's recent pass rates shrunk towards its pool's, a posterior
        mean with the pool's rate as a prior worth ``prior_visits`` visits:
        ``(prior_visits * pool + sum(recent)) / (prior_visits + len(recent))``. A pool without
        groups yet takes the run's rate, and 0.5 before the first group."""
        fallback = 0.5 if self.overall_rate is None else self.overall_rate
        pools = np.array([fallback if rate is None else rate for rate in self.pool_rate])
        prior = pools[self.pool_of] if len(pools) else np.full(len(self), fallback)
        return (self.prior_visits * prior + self._recent_sum) / (self.prior_visits + self._recent_count)

    def pool_zero_variance(self, index: int) -> dict[str, float]:
        """The prompt's pool's recent shares of all-correct ("easy") and all-wrong ("hard")
        groups (0 before the pool has any)."""
        pool = int(self.pool_of[index])
        return {"easy": self.pool_easy[pool] or 0.0, "hard": self.pool_hard[pool] or 0.0}

    def seen_fraction(self) -> float:
        return sum(step >= 0 for step in self.last_step) / max(1, len(self))

    def total_visits(self) -> int:
        return sum(len(rates) for rates in self.pass_rates)

    def state(self) -> dict:
        return {
            "pass_rates": self.pass_rates,
            "last_step": self.last_step,
            "pool_rate": self.pool_rate,
            "overall_rate": self.overall_rate,
            "pool_easy": self.pool_easy,
            "pool_hard": self.pool_hard,
        }

    def load_state(self, state: dict) -> None:
        if len(state["pass_rates"]) != len(self) or len(state["pool_rate"]) != len(self.pool_rate):
            raise ValueError(
                f"the checkpoint's prompt statistics cover {len(state['pass_rates'])} prompts in "
                f"{len(state['pool_rate'])} pools, this run has {len(self)} in {len(self.pool_rate)}: "
                "the training set or sched.pool_by changed since it was saved"
            )
        self.pass_rates = [list(rates) for rates in state["pass_rates"]]
        self.last_step = list(state["last_step"])
        self.pool_rate = list(state["pool_rate"])
        self.overall_rate = state["overall_rate"]
        self.pool_easy, self.pool_hard = list(state["pool_easy"]), list(state["pool_hard"])
        for index in range(len(self)):
            self._refresh_recent(index)

    def _refresh_recent(self, index: int) -> None:
        recent = self.recent(index)
        self._recent_sum[index], self._recent_count[index] = sum(recent), len(recent)


def _moving(old: float | None, value: float, decay: float) -> float:
    return value if old is None else decay * old + (1.0 - decay) * value


def pool_indices(metas: Sequence[dict], keys: Sequence[str]) -> list[int]:
    """Pool index per prompt from its meta values under ``keys`` (pools numbered in order of first
    appearance, so the numbering is the same every run). A key a prompt lacks is an error."""
    numbering: dict[tuple, int] = {}
    pools = []
    for row, meta in enumerate(metas):
        missing = [key for key in keys if key not in meta]
        if missing:
            raise ValueError(
                f"sched.pool_by: training prompt {row} has no meta key {missing[0]!r} "
                f"(its meta keys: {', '.join(sorted(meta)) or 'none'})"
            )
        pools.append(numbering.setdefault(tuple(str(meta[key]) for key in keys), len(numbering)))
    return pools
