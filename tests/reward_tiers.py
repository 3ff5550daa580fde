"""Which verifier cases reach the checker child process (the slow tier) and which the in-process fast
path decides (the unit tier): decided by running the fast path itself, so a case moves tier when
the code does."""

import pytest

from rewards.config import RewardConfig
from rewards.equivalence import UnparsableAnswer, fast_match
from rewards.extract import extract_answer


def needs_checker(completion: str, gold: str, config: RewardConfig | None = None) -> bool:
    config = config or RewardConfig()
    extraction = extract_answer(completion, config.fallback)
    if extraction.answer is None:
        return False
    try:
        return fast_match(extraction.parts, gold, rel_tol=config.rel_tol) is None
    except UnparsableAnswer:
        return False


def tiered(cases, completion) -> list:
    """``cases`` (tuples whose first two items are the answer and the gold) as pytest params, the
    ones the checker child decides marked slow; ``completion(answer)`` is the text the test scores."""
    return [
        pytest.param(*case, marks=pytest.mark.slow) if needs_checker(completion(case[0]), case[1]) else case
        for case in cases
    ]
