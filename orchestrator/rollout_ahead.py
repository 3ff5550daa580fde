"""One step off policy (``trainer.mode: async``): the batch of step k+1 is generated in a
background thread while step k trains.

The thread runs the trainer's own ``collect`` (generation, early stopping, scoring, the
scheduler's choices and refills: everything a synchronous step does before advantages), so
async and sync steps build their batches the same way. One batch is in flight at a time and the
trainer pushes new weights only after it finished (``wait``): every sample of batch k+1 was drawn
by the weights of step k-1, one version behind the ones that train on it.

A finished in-flight batch is part of a checkpoint (``Rollout.to_json``): a resumed run trains
on exactly the batch the killed one would have, and generates the next one with the same
weights and seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field

import torch

from learner.batch import RolloutGroups
from rewards.verify import RewardResult
from rollout.types import Sample

Group = list[tuple[Sample, RewardResult | None]]  # G samples of one prompt; None: aborted


@dataclass
class Rollout:
    """One step's generated batch, before advantages."""

    step: int
    sampled: list[tuple[int, Group, bool]]  # every group sampled: (problem index, group, trained)
    metrics: dict[str, float]  # the generation's own (rollout/*, response/*, reward/*, data/*)
    seconds: dict[str, float] = field(default_factory=dict)  # its phase times: generate, reward
    # per sampled group, its prompt's pass-rate estimate when it was chosen (before this visit)
    pass_rate_priors: list[float] = field(default_factory=list)

    @property
    def kept(self) -> list[Group]:
        """The groups trained on, in the order they were kept."""
        return [group for _, group, trained in self.sampled if trained]

    def samples(self) -> list[Sample]:
        return [sample for _, group, _ in self.sampled for sample, _ in group]

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "sampled": [
                [index, [[asdict(s), None if r is None else asdict(r)] for s, r in group], trained]
                for index, group, trained in self.sampled
            ],
            "metrics": self.metrics,
            "seconds": self.seconds,
            "pass_rate_priors": self.pass_rate_priors,
        }

    @classmethod
    def from_json(cls, data: dict) -> Rollout:
        sampled = [
            (index, [(Sample(**s), None if r is None else RewardResult(**r)) for s, r in group], trained)
            for index, group, trained in data["sampled"]
        ]
        return cls(
            step=data["step"],
            sampled=sampled,
            metrics=data["metrics"],
            seconds=data["seconds"],
            pass_rate_priors=data.get("pass_rate_priors", []),  # absent from older checkpoints
        )

    def kept_priors(self) -> list[float] | None:
        """The trained groups' pass-rate estimates, in ``kept`` order (None: not recorded)."""
        if len(self.pass_rate_priors) != len(self.sampled):
            return None
        return [p for (_, _, trained), p in zip(self.sampled, self.pass_rate_priors) if trained]


class RolloutAhead:
    """At most one generation in flight, run by ``collect(step) -> Rollout`` in one background
    thread (the engines serve one call at a time anyway)."""

    def __init__(self, collect: Callable[[int], Rollout], *, timeout_s: float) -> None:
        self._collect, self.timeout_s = collect, timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-ahead")
        self._pending: tuple[int, Future] | None = None

    def launch(self, step: int) -> None:
        """Start generating step ``step``'s batch with the weights the engines hold now."""
        if self._pending is not None:
            raise RuntimeError(f"step {self._pending[0]}'s batch is still in flight")
        self._pending = (step, self._executor.submit(self._collect, step))

    def wait(self) -> None:
        """Until the batch in flight (if any) is generated: the engines may then take new weights.
        A generation that failed raises here."""
        if self._pending is not None:
            self._result(self._pending[1])

    def take(self, step: int) -> Rollout | None:
        """Step ``step``'s batch when it was generated ahead (waiting for it if need be); None when
        it was not (the first step, or a resume without a saved batch): the caller generates now."""
        if self._pending is None:
            return None
        pending_step, future = self._pending
        if pending_step != step:
            raise RuntimeError(f"the batch in flight is step {pending_step}'s, step {step} asked for it")
        self._pending = None
        return self._result(future)

    def restore(self, rollout: Rollout) -> None:
        """A batch saved with a checkpoint, as if it had just been generated ahead."""
        future: Future = Future()
        future.set_result(rollout)
        self._pending = (rollout.step, future)

    @property
    def generating(self) -> bool:
        """A batch is being generated right now (the engines are busy with it)."""
        return self._pending is not None and not self._pending[1].done()

    def finished(self) -> Rollout | None:
        """The batch in flight if it is done (what a checkpoint saves), else None."""
        if self._pending is None or not self._pending[1].done():
            return None
        return self._result(self._pending[1])

    def close(self) -> None:
        """Drop the batch in flight; a generation still running finishes on its own (its engine
        calls end with the actors, which the trainer stops next)."""
        self._pending = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _result(self, future: Future) -> Rollout:
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise RuntimeError(
                f"the batch generated ahead took more than {self.timeout_s:g} s (rollout.generate_timeout_s)"
            ) from None


def staleness(rollout: Rollout, version: int) -> dict[str, float]:
    """How many versions the samples lag the weights ``version`` about to train on them (0 in
    sync mode): ``rollout/staleness`` (mean) and ``rollout/staleness_max``."""
    lags = [version - s.policy_version for s in rollout.samples()] or [0]
    return {"rollout/staleness": sum(lags) / len(lags), "rollout/staleness_max": float(max(lags))}


def drop_stale(rollout: Rollout, version: int, bound: int) -> tuple[Rollout, int]:
    """The rollout with every trained group that holds a sample more than ``bound`` versions
    behind ``version`` marked untrained, and how many were."""
    sampled, dropped = [], 0
    for index, group, trained in rollout.sampled:
        stale = trained and any(version - sample.policy_version > bound for sample, _ in group)
        dropped += stale
        sampled.append((index, group, trained and not stale))
    metrics = {**rollout.metrics, "rollout/stale_groups_dropped": float(dropped)}
    if dropped:
        metrics["rollout/groups"] -= dropped
    return Rollout(rollout.step, sampled, metrics, rollout.seconds, rollout.pass_rate_priors), dropped


def to_rollout_groups(groups: list[Group], group_size: int) -> RolloutGroups:
    """Rectangular groups (none when no group had a signal); an aborted completion (reward None)
    gets reward 0 and finished=False."""

    def table(value) -> torch.Tensor:
        return torch.tensor([[value(r) for _, r in g] for g in groups], dtype=torch.float32).view(
            len(groups), group_size
        )

    finished = table(lambda r: r is not None).bool()
    # an aborted completion has [] (nothing decoded is returned); None = the engine was not asked
    with_logprobs = all(s.response_logprobs is not None for g in groups for s, _ in g)
    return RolloutGroups(
        prompt_ids=[g[0][0].prompt_ids for g in groups],
        response_ids=[[s.response_ids for s, _ in g] for g in groups],
        rewards=table(lambda r: 0.0 if r is None else r.score),
        correct=table(lambda r: r is not None and r.correct).bool(),
        response_logprobs=[[s.response_logprobs for s, _ in g] for g in groups] if with_logprobs else None,
        finished=None if bool(finished.all()) else finished,
    )


def rollout_record(step: int, sampled: list[tuple[int, Group, bool]], problems: list) -> dict:
    """One line of ``rollouts.jsonl``: every prompt sampled for the step, its samples' rewards and
    lengths, and whether its group was trained on (false: no signal, beyond prompts_per_step, or
    too stale)."""
    groups = [g for _, g, _ in sampled]
    return {
        "step": step,
        "problem_ids": [problems[i].id for i, _, _ in sampled],
        "trained": [trained for _, _, trained in sampled],
        # null = aborted by an early-stopped group
        "rewards": [[None if r is None else round(r.score, 4) for _, r in g] for g in groups],
        "lengths": [[None if r is None else len(s.response_ids) for s, r in g] for g in groups],
        "example": groups[0][0][0].text if groups else "",
    }
