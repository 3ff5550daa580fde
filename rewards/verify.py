"""The public reward entry point: ``score(completion, ground_truth) -> RewardResult``.

Model output is untrusted text. Extraction and the fast deciders are linear-time string
work done here; the only step that can be slow (math-verify/sympy) runs in a child
process that is killed at the deadline. One deadline covers the whole call: the time
spent here is taken from what the child gets, so ``score`` returns within ``timeout_s``
plus process overhead (~10 ms; warming a cold checker is not charged, see
``rewards.sandbox.warm_up``) from any thread or Ray actor, and never raises because of
what the model wrote.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from rewards.config import RewardConfig
from rewards.equivalence import UnparsableAnswer, fast_match
from rewards.extract import extract_answer
from rewards.sandbox import check_answer, run_reward_function

Reason = Literal["correct", "wrong", "no_answer", "parse_error", "timeout"]
REASONS: tuple[str, ...] = ("correct", "wrong", "no_answer", "parse_error", "timeout")


@dataclass(frozen=True)
class RewardResult:
    correct: bool
    score: float  # accuracy_weight * correct + format_weight * format_ok
    format_ok: bool  # the answer was given in \boxed{} / \fbox{}
    answer: str | None  # the extracted answer, None when there was none
    reason: Reason
    detail: str = ""  # why a parse error or timeout happened, for logs


def score(
    completion: str | bytes,
    ground_truth: str,
    *,
    timeout_s: float = 5.0,
    config: RewardConfig | None = None,
) -> RewardResult:
    """Score one completion against its gold answer (see ``RewardConfig`` for the knobs)."""
    started = time.monotonic()
    config = config or RewardConfig()
    if isinstance(completion, bytes):
        completion = completion.decode("utf-8", errors="replace")
    extraction = extract_answer(completion, config.fallback)
    if extraction.answer is None:
        return _result(config, False, extraction.boxed, None, "no_answer")
    try:
        decided = fast_match(extraction.parts, ground_truth, rel_tol=config.rel_tol)
    except UnparsableAnswer as error:
        return _result(config, False, extraction.boxed, extraction.answer, "parse_error", str(error))
    if decided is not None:
        return _result(config, decided, extraction.boxed, extraction.answer, "correct" if decided else "wrong")
    remaining = timeout_s - (time.monotonic() - started)
    if remaining <= 0:
        return _result(
            config, False, extraction.boxed, extraction.answer, "timeout", f"no verdict within {timeout_s:g} s"
        )
    outcome = check_answer(
        list(extraction.parts),
        ground_truth,
        timeout_s=remaining,
        rel_tol=config.rel_tol,
        pi_numeric=config.pi_numeric,
    )
    if outcome.error is not None:
        return _result(config, False, extraction.boxed, extraction.answer, outcome.error, outcome.detail)
    reason = "correct" if outcome.match else "wrong"
    return _result(config, bool(outcome.match), extraction.boxed, extraction.answer, reason)


def score_with_function(
    function: str,
    completion: str | bytes,
    ground_truth: str,
    *,
    timeout_s: float = 5.0,
    config: RewardConfig | None = None,
) -> RewardResult:
    """A custom reward function (``reward.function``, ``'pkg.mod:fn'``) run like the built-in
    checker: in a child process, killed at ``timeout_s``, under the same memory and CPU
    limits. Its exceptions and timeouts score 0 with the reason ``parse_error``/``timeout``."""
    config = config or RewardConfig()
    if isinstance(completion, bytes):
        completion = completion.decode("utf-8", errors="replace")
    outcome = run_reward_function(
        function, completion, ground_truth, timeout_s=timeout_s, config=config.model_dump(mode="json")
    )
    if outcome.result is None:
        return _result(config, False, False, None, outcome.error or "parse_error", outcome.detail)
    return RewardResult(**outcome.result)


def _result(
    config: RewardConfig, correct: bool, format_ok: bool, answer: str | None, reason: str, detail: str = ""
) -> RewardResult:
    value = config.accuracy_weight * float(correct) + config.format_weight * float(format_ok)
    return RewardResult(correct, value, format_ok, answer, reason, detail)  # type: ignore[arg-type]


def reward_metrics(results: list[RewardResult]) -> dict[str, float]:
    """``reward/*`` metrics of a batch: mean score, accuracy, format rate, and the rate of
    each failure reason (a parse-error rate near 1 means the verifier, not the model, broke)."""
    n = max(len(results), 1)
    reasons = Counter(r.reason for r in results)
    mean = sum(r.score for r in results) / n
    metrics = {
        "reward/mean": mean,
        "reward/std": (sum((r.score - mean) ** 2 for r in results) / n) ** 0.5,
        "reward/accuracy": sum(r.correct for r in results) / n,
        "reward/format": sum(r.format_ok for r in results) / n,
    }
    for reason in ("no_answer", "parse_error", "timeout"):
        metrics[f"reward/{reason}_rate"] = reasons[reason] / n
    return metrics
