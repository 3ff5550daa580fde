"""One answer per held-out problem, scored: the RL loop's evaluation and the warm start's
band check are the same measurement with different sampling."""

from __future__ import annotations

from dataclasses import dataclass

from prompts.images import prompt_images
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


MAX_SOURCES = 20  # more distinct sources than this: no per-source breakdown (one metric each would flood wandb)


def source_of(problem: Problem) -> str | None:
    """Where a held-out problem comes from: its dataset (verl's ``data_source``) or its
    synthetic family; None when neither is known."""
    return problem.meta.get("data_source") or problem.meta.get("family")


def accuracy_by_source(correct: list[bool], sources: list[str | None]) -> dict[str, float]:
    """Accuracy per source (problems without one left out); empty for a single source or
    more than ``MAX_SOURCES``."""
    totals: dict[str, list[int]] = {}
    for ok, source in zip(correct, sources, strict=True):
        if source is not None:
            tally = totals.setdefault(source, [0, 0])
            tally[0] += int(ok)
            tally[1] += 1
    if not 1 < len(totals) <= MAX_SOURCES:
        return {}
    return {source: right / count for source, (right, count) in sorted(totals.items())}


def answer_quality(
    fleet, rewards, prompts: list[list[int]], problems: list[Problem], sampling: SamplingSettings
) -> AnswerQuality:
    samples = fleet.generate(prompts, sampling, images=prompt_images(problems))
    results, _ = rewards.score([s.text for s in samples], [p.answer for p in problems])
    return AnswerQuality(
        correct=[bool(r.correct) for r in results],
        lengths=[len(s.response_ids) for s in samples],
        clipped=[s.finish_reason == "length" for s in samples],
    )


def pass_at_k(correct_by_problem: list[list[bool]]) -> dict[str, float]:
    """``pass@k`` (the share of problems with at least one of their k samples right) and
    ``mean@k`` (the share of all samples right: pass@1 estimated from k samples), for k samples
    of every problem (verl's ``best@k`` and ``mean@k``). With n = k samples the unbiased
    estimator of pass@k (Chen et al. 2021) is exactly "any of them right"."""
    sizes = {len(samples) for samples in correct_by_problem}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"pass@k needs the same k >= 1 samples for every problem, got sizes {sorted(sizes)}")
    (k,) = sizes
    problems = len(correct_by_problem)
    return {
        f"pass@{k}": sum(any(samples) for samples in correct_by_problem) / problems,
        f"mean@{k}": sum(sum(samples) for samples in correct_by_problem) / (problems * k),
    }


def sampled_correct(
    fleet, rewards, prompts: list[list[int]], problems: list[Problem], sampling: SamplingSettings
) -> list[list[bool]]:
    """``sampling.n`` samples of every problem, scored: ``[problem][sample]`` correct."""
    samples = fleet.generate(prompts, sampling, images=prompt_images(problems))
    results, _ = rewards.score([s.text for s in samples], [problems[s.prompt_index].answer for s in samples])
    correct: list[list[bool]] = [[] for _ in problems]
    for sample, result in zip(samples, results, strict=True):
        correct[sample.prompt_index].append(bool(result.correct))
    return correct
