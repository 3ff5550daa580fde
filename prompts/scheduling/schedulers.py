"""Prompt schedulers: which training prompts the next generation call samples. Each decides
BEFORE generation, from what ``PromptStats`` recorded of earlier groups, and is deterministic
given (run seed, step, round) and its state, so a resumed run draws the same prompts.

The loop calls, per step: ``take`` (one call per generation round), ``observe`` (each round's
pass rates), ``end_step`` (adapts, returns the ``sched/*`` metrics).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from prompts.scheduling.config import CurriculumSched, SkipSched, TargetSched, UniformSched
from prompts.scheduling.stats import PromptStats, pool_indices
from prompts.stream import PromptStream


class Scheduler:
    """The uniform order: every prompt once per epoch in a seeded shuffle. The others build on it."""

    def __init__(self, stats: PromptStats, seed: int) -> None:
        self.stats, self.seed = stats, seed
        self.stream = PromptStream(len(stats), seed)
        self._chosen_estimates: list[float] = []
        self._skipped = 0

    @property
    def epoch(self) -> float:
        return float(self.stream.epoch)

    def take(self, count: int, step: int, round_: int) -> list[int]:
        indices = self._choose(count, step, round_)
        estimates = self.stats.estimates()
        self._chosen_estimates += [float(estimates[i]) for i in indices]
        return indices

    def _choose(self, count: int, step: int, round_: int) -> list[int]:
        return self.stream.take(count)

    def observe(self, indices: Sequence[int], pass_rates: Sequence[float | None], step: int) -> None:
        """Each group's pass rate (None: no finished completion to judge it by)."""
        for index, rate in zip(indices, pass_rates):
            if rate is not None:
                self.stats.record(index, rate, step)

    def end_step(self, step: int) -> dict[str, float]:
        metrics = {
            "sched/skipped": float(self._skipped),
            "sched/pass_rate_mean": sum(self._chosen_estimates) / max(1, len(self._chosen_estimates)),
            "sched/seen_fraction": self.stats.seen_fraction(),
            "sched/stage": 0.0,
        }
        self._chosen_estimates, self._skipped = [], 0
        return metrics

    def state(self) -> dict:
        return {"stream": self.stream.state(), "stats": self.stats.state()}

    def load_state(self, state: dict) -> None:
        self.stream = PromptStream.restore(len(self.stats), self.seed, state["stream"])
        self.stats.load_state(state["stats"])

    def _rng(self, name: str, step: int, round_: int) -> random.Random:
        return random.Random(f"{self.seed}/{name}/{step}/{round_}")


class SkipScheduler(Scheduler):
    """GRESO: walk the uniform order, skipping predicted zero-variance prompts (see SkipSched)."""

    def __init__(self, stats: PromptStats, seed: int, config: SkipSched) -> None:
        super().__init__(stats, seed)
        self.config = config
        self.explore = {"easy": config.explore_init, "hard": config.explore_init}
        self._outcomes = {"easy": 0, "hard": 0, "groups": 0}

    def zero_variance_odds(self, index: int) -> dict[str, float]:
        """Probability the prompt's next group is all correct (easy) / all wrong (hard): its record
        when it has ``window`` visits (certain if they all were), else, never seen, its pool's
        recent shares of such groups."""
        recent = self.stats.pass_rates[index][-self.config.window :]
        if len(recent) == self.config.window:
            return {"easy": float(all(r == 1.0 for r in recent)), "hard": float(all(r == 0.0 for r in recent))}
        if self.stats.visits(index) == 0 and self.config.use_pool:
            return self.stats.pool_zero_variance(index)
        return {"easy": 0.0, "hard": 0.0}

    def _choose(self, count: int, step: int, round_: int) -> list[int]:
        rng = self._rng("skip", step, round_)
        chosen: list[int] = []
        for scanned in range(10 * len(self.stats) + count):
            index = self.stream.take(1)[0]
            # After a whole pass of candidates, take the rest unconditionally: never loop forever.
            odds = self.zero_variance_odds(index) if scanned < len(self.stats) else {}
            skip = sum(p * (1.0 - self.explore[kind]) for kind, p in odds.items())
            if rng.random() < skip:
                self._skipped += 1
                continue
            chosen.append(index)
            if len(chosen) == count:
                break
        return chosen

    def observe(self, indices, pass_rates, step) -> None:
        super().observe(indices, pass_rates, step)
        for rate in pass_rates:
            if rate is not None:
                self._outcomes["groups"] += 1
                self._outcomes["easy"] += rate == 1.0
                self._outcomes["hard"] += rate == 0.0

    def end_step(self, step: int) -> dict[str, float]:
        """GRESO's controller: more zero-variance groups of a kind than its target: explore that
        kind less (skip more); fewer: explore more. Bounded to [min_explore, 1]."""
        groups = max(1, self._outcomes["groups"])
        for kind, target in (("easy", self.config.target_easy), ("hard", self.config.target_hard)):
            move = -self.config.explore_step if self._outcomes[kind] / groups > target else self.config.explore_step
            self.explore[kind] = min(1.0, max(self.config.min_explore, self.explore[kind] + move))
        self._outcomes = {"easy": 0, "hard": 0, "groups": 0}
        return {
            **super().end_step(step),
            "sched/explore_easy": self.explore["easy"],
            "sched/explore_hard": self.explore["hard"],
        }

    def state(self) -> dict:
        return {**super().state(), "explore": self.explore}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.explore = dict(state["explore"])


class TargetScheduler(Scheduler):
    """Online difficulty filtering / AdaRFT: weighted draws near a target pass rate (see TargetSched)."""

    def __init__(self, stats: PromptStats, seed: int, config: TargetSched) -> None:
        super().__init__(stats, seed)
        self.config = config
        self._taken_this_step: set[int] = set()

    @property
    def epoch(self) -> float:
        return self.stats.total_visits() / max(1, len(self.stats))  # passes over the data, on average

    def weights(self) -> np.ndarray:
        """``[num_prompts]`` draw weights from the estimated pass rates."""
        distance = (self.stats.estimates() - self.config.target) / self.config.width
        return np.maximum(self.config.min_weight, np.exp(-0.5 * distance**2))

    def _choose(self, count: int, step: int, round_: int) -> list[int]:
        last = np.asarray(self.stats.last_step)
        taken = np.zeros(len(self.stats), dtype=bool)
        taken[list(self._taken_this_step)] = True
        eligible = ~taken & ((last < 0) | (step - last > self.config.cooldown_steps))
        if eligible.sum() < count:  # a small set: let cooled-down prompts back in
            eligible = ~taken
        if eligible.sum() < count:
            raise ValueError(
                f"sched: {count} prompts wanted this round, only {int(eligible.sum())} of the "
                f"{len(self.stats)} training prompts are left this step"
            )
        # Weighted sampling without replacement (Efraimidis-Spirakis): the `count` largest u^(1/w).
        uniform = np.random.default_rng([self.seed, step, round_]).random(len(self.stats))
        keys = np.where(eligible, np.log(uniform) / self.weights(), -np.inf)
        chosen = [int(i) for i in np.argsort(-keys, kind="stable")[:count]]
        self._taken_this_step.update(chosen)
        return chosen

    def end_step(self, step: int) -> dict[str, float]:
        self._taken_this_step = set()
        return super().end_step(step)


class CurriculumScheduler(Scheduler):
    """MagicVL-2B's staged curriculum over complexity-score quantiles (see CurriculumSched)."""

    def __init__(self, stats: PromptStats, seed: int, config: CurriculumSched, scores: Sequence[float]) -> None:
        super().__init__(stats, seed)
        self.config = config
        self.stage_pools = stage_pools(scores, config.stages, cumulative=config.cumulative)
        self.stage, self.stage_steps = 0, 0
        self.stage_rates: list[float] = []  # mean observed pass rate per step of this stage
        self._step_rates: list[float] = []
        self.stage_stream = self._stream(0)

    def _stream(self, stage: int, state: dict | None = None) -> PromptStream:
        seed = f"{self.seed}/stage{stage}"
        pool = len(self.stage_pools[stage])
        return PromptStream.restore(pool, seed, state) if state else PromptStream(pool, seed)

    @property
    def epoch(self) -> float:
        return float(self.stage_stream.epoch)

    def _choose(self, count: int, step: int, round_: int) -> list[int]:
        pool = self.stage_pools[self.stage]
        return [pool[i] for i in self.stage_stream.take(count)]

    def observe(self, indices, pass_rates, step) -> None:
        super().observe(indices, pass_rates, step)
        self._step_rates += [rate for rate in pass_rates if rate is not None]

    def end_step(self, step: int) -> dict[str, float]:
        metrics = {**super().end_step(step), "sched/stage": float(self.stage)}
        if self._step_rates:
            self.stage_rates.append(sum(self._step_rates) / len(self._step_rates))
        self._step_rates = []
        self.stage_steps += 1
        if self.stage + 1 < len(self.stage_pools) and (
            self.stage_steps >= self.config.stage_steps
            or (
                self.config.advance == "plateau"
                and plateaued(self.stage_rates, self.config.patience, self.config.min_delta)
            )
        ):
            self.stage, self.stage_steps, self.stage_rates = self.stage + 1, 0, []
            self.stage_stream = self._stream(self.stage)
        return metrics

    def state(self) -> dict:
        return {
            **super().state(),
            "stage": self.stage,
            "stage_steps": self.stage_steps,
            "stage_rates": self.stage_rates,
            "stage_stream": self.stage_stream.state(),
        }

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.stage, self.stage_steps = state["stage"], state["stage_steps"]
        self.stage_rates = list(state["stage_rates"])
        self.stage_stream = self._stream(self.stage, state["stage_stream"])


def stage_pools(scores: Sequence[float], stages: int, *, cumulative: bool = False) -> list[list[int]]:
    """Prompt indices per stage, least complex first. A prompt's bin is
    ``floor(stages * (prompts scoring strictly lower) / n)``: equal-count quantile bins in which
    tied scores stay together (so 3 stages over two levels give 2 stages); empty bins are dropped."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    bins: dict[int, list[int]] = {}
    lower = 0
    for rank, index in enumerate(order):
        if rank and scores[index] != scores[order[rank - 1]]:
            lower = rank
        bins.setdefault(min(stages - 1, stages * lower // len(scores)), []).append(index)
    pools = [sorted(bins[b]) for b in sorted(bins)]
    if cumulative:
        pools = [sorted(sum(pools[: k + 1], [])) for k in range(len(pools))]
    return pools


def plateaued(rates: Sequence[float], patience: int, min_delta: float) -> bool:
    """The mean over the last ``patience`` steps has not beaten the best earlier such mean by
    ``min_delta`` for ``patience`` steps (needs ``2 * patience`` steps of the stage)."""
    if len(rates) < 2 * patience:
        return False
    means = [sum(rates[i - patience : i]) / patience for i in range(patience, len(rates) + 1)]
    best_before = max(means[:-patience])
    return max(means[-patience:]) < best_before + min_delta


def build_scheduler(config, problems: Sequence, *, seed: int) -> Scheduler:
    """The scheduler ``sched`` describes, over the training ``problems``."""

    if isinstance(config, (SkipSched, TargetSched)):  # the schedulers that read pooled estimates
        pools = pool_indices([problem.meta for problem in problems], config.pool_by)
        if config.pool_scores is not None:
            scores = complexity_scores(config.pool_scores, problems, field=config.score_field, key="sched.pool_scores")
            pools = score_bins(pools, scores, config.pool_score_bins)
        stats = PromptStats(pools, memory=config.memory, prior_visits=config.prior_visits, pool_decay=config.pool_decay)
    else:
        stats = PromptStats([0] * len(problems))
    if isinstance(config, UniformSched):
        return Scheduler(stats, seed)
    if isinstance(config, SkipSched):
        return SkipScheduler(stats, seed, config)
    if isinstance(config, TargetSched):
        return TargetScheduler(stats, seed, config)
    return CurriculumScheduler(
        stats, seed, config, complexity_scores(config.scores, problems, field=config.score_field)
    )


def score_bins(pools: Sequence[int], scores: Sequence[float], bins: int) -> list[int]:
    """Each pool cut into ``bins`` equal-count quantile bins of ``scores`` (``stage_pools``' rule:
    tied scores share a bin); the (pool, bin) pairs are numbered in order of first appearance."""
    members: dict[int, list[int]] = {}
    for index, pool in enumerate(pools):
        members.setdefault(pool, []).append(index)
    pool_bin = [(0, 0)] * len(pools)
    for pool, indices in members.items():
        for bin_, positions in enumerate(stage_pools([scores[i] for i in indices], bins)):
            for position in positions:
                pool_bin[indices[position]] = (pool, bin_)
    numbering: dict[tuple[int, int], int] = {}
    return [numbering.setdefault(pair, len(numbering)) for pair in pool_bin]


def complexity_scores(
    source: str, problems: Sequence, *, field: str = "score", key: str = "sched.scores"
) -> list[float]:
    """Each problem's score from ``meta:<key>`` or the ``field`` column of a ``bppo data score``
    file, by problem id; ``key`` names the config entry in errors."""
    if source.startswith("meta:"):
        meta_key = source.removeprefix("meta:")
        scores = []
        for row, problem in enumerate(problems):
            value = problem.meta.get(meta_key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(
                    f"{key}={source}: training problem {row} ({problem.id}) has "
                    f"meta[{meta_key!r}]={value!r}, not a number"
                )
            scores.append(float(value))
        return scores
    from prompts.tools.complexity import load_scores

    by_id = load_scores(source, field)
    missing = [problem.id for problem in problems if problem.id not in by_id]
    if missing:
        raise ValueError(
            f"{key}={source}: no score for {len(missing)} training problems "
            f"(first: {missing[0]!r}); score this prompt set with `bppo data score`"
        )
    return [by_id[problem.id] for problem in problems]
