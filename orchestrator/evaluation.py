"""One answer per held-out problem, scored: the RL loop's evaluation and the warm start's
band check are the same measurement with different sampling."""

from __future__ import annotations

from orchestrator.data.problems import Problem
from rollout.types import SamplingSettings


def answer_quality(fleet, rewards, prompts: list[list[int]], problems: list[Problem],
                   sampling: SamplingSettings) -> dict[str, float]:
    """``accuracy``, ``len_mean`` (tokens), ``clip_rate`` (cut by max_tokens) and ``problems``."""
    samples = fleet.generate(prompts, sampling)
    results, _ = rewards.score([s.text for s in samples], [p.answer for p in problems])
    count = max(1, len(samples))
    return {
        "accuracy": sum(r.correct for r in results) / count,
        "len_mean": sum(len(s.response_ids) for s in samples) / count,
        "clip_rate": sum(s.finish_reason == "length" for s in samples) / count,
        "problems": float(len(samples)),
    }
