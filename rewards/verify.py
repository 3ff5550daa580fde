"""The public reward entry point: ``score(completion, ground_truth) -> RewardResult``.

Model output is untrusted text. Extraction is linear-time string work done here; the
only step that can be slow (math-verify/sympy) runs in a child process that is killed
at the deadline, so ``score`` returns within ``timeout_s`` plus process overhead from
any thread or Ray actor, and never raises because of what the model wrote.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from rewards.config import RewardConfig
from rewards.equivalence import UnparsableAnswer, fast_match
from rewards.extract import extract_answer
from rewards.sandbox import check_answer

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
    config = config or RewardConfig()
    if isinstance(completion, bytes):
        completion = completion.decode("utf-8", errors="replace")
    extraction = extract_answer(completion, config.fallback)
    if extraction.answer is None:
        return _result(config, False, extraction.boxed, None, "no_answer")
    try:
        decided = fast_match(extraction.answer, ground_truth, rel_tol=config.rel_tol)
    except UnparsableAnswer as error:
        return _result(config, False, extraction.boxed, extraction.answer, "parse_error", str(error))
    if decided is not None:
        return _result(config, decided, extraction.boxed, extraction.answer, "correct" if decided else "wrong")
    outcome = check_answer(
        extraction.answer, ground_truth,
        timeout_s=timeout_s, rel_tol=config.rel_tol, pi_numeric=config.pi_numeric,
    )
    if outcome.error is not None:
        return _result(config, False, extraction.boxed, extraction.answer, outcome.error, outcome.detail)
    reason = "correct" if outcome.match else "wrong"
    return _result(config, bool(outcome.match), extraction.boxed, extraction.answer, reason)


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
    metrics = {
        "reward/mean": sum(r.score for r in results) / n,
        "reward/accuracy": sum(r.correct for r in results) / n,
        "reward/format": sum(r.format_ok for r in results) / n,
    }
    for reason in ("no_answer", "parse_error", "timeout"):
        metrics[f"reward/{reason}_rate"] = reasons[reason] / n
    return metrics
