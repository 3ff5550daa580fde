"""One answer per held-out problem, scored: the RL loop's evaluation and the warm start's
band check are the same measurement with different sampling."""

from __future__ import annotations

from dataclasses import dataclass

from prompts.problems import Problem
from rollout.types import SamplingSettings


@dataclass(frozen=True)
class AnswerQuality:
    """Per-problem outcomes, in the eval set's order. The report bootstraps over these items
    (the eval set is the same at every evaluation of every run, so resampling it is paired)."""

    correct: list[bool]
    lengths: list[int]
    clipped: list[bool]  # cut by max_tokens

    def metrics(self) -> dict[str, float]:
        """``accuracy``, ``len_mean`` (tokens), ``clip_rate`` and ``problems``."""
        count = max(1, len(self.correct))
        return {
            "accuracy": sum(self.correct) / count,
            "len_mean": sum(self.lengths) / count,
            "clip_rate": sum(self.clipped) / count,
            "problems": float(len(self.correct)),
        }


def answer_quality(
    fleet, rewards, prompts: list[list[int]], problems: list[Problem], sampling: SamplingSettings
) -> AnswerQuality:
    samples = fleet.generate(prompts, sampling)
    results, _ = rewards.score([s.text for s in samples], [p.answer for p in problems])
    return AnswerQuality(
        correct=[bool(r.correct) for r in results],
        lengths=[len(s.response_ids) for s in samples],
        clipped=[s.finish_reason == "length" for s in samples],
    )
