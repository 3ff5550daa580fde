"""The real verifier as training runs it: ``rewards.verify`` through the Ray reward pool,
with the reward config of the CPU preset, on worked solutions of the training generator.

The loop tests (tests/test_train_e2e.py) score with a stand-in reward so that a random
model has pairs; this test is the one where the real checker (fast path, child processes,
math-verify) scores a batch on real Ray actors in CI. Gold-answer completions, not a
model's: the untrained test model answers nothing, and the warm-started one takes
minutes to build.
"""

import random
from pathlib import Path

import pytest

from orchestrator.config_io import load_config
from prompts.synthetic import generate
from rewards.pool import RewardPool

PRESET = str(Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml")

pytestmark = pytest.mark.slow


def test_the_real_verifier_scores_gold_completions_through_the_pool(ray_local):
    reward = load_config([PRESET], []).reward
    assert reward.function is None  # the preset trains on the real verifier
    train, _ = generate(48, 1, seed=3)
    rng = random.Random(3)
    completions, truths, expected = [], [], []
    for i, problem in enumerate(train):
        solution = problem.solution if i % 2 else problem.meta["verbose_solution"]
        boxed = f"\\boxed{{{problem.answer}}}"
        assert boxed in solution
        if i % 4 == 3:  # a wrong final answer: another problem's, when it differs
            other = rng.choice([p.answer for p in train if p.answer != problem.answer])
            completions.append(solution.replace(boxed, f"\\boxed{{{other}}}"))
            expected.append(False)
        elif i % 4 == 2:  # an equivalent form only the symbolic checker confirms
            completions.append(solution.replace(boxed, f"\\boxed{{\\frac{{2 \\cdot ({problem.answer})}}{{2}}}}"))
            expected.append(True)
        else:
            completions.append(solution)
            expected.append(True)
        truths.append(problem.answer)
    pool = RewardPool(reward.model_copy(update={"num_workers": 2}), chunk_size=8)
    try:
        results, metrics = pool.score(completions, truths)
    finally:
        pool.shutdown()
    assert [r.correct for r in results] == expected
    assert [r.reason for r in results] == ["correct" if e else "wrong" for e in expected]
    assert metrics["reward/accuracy"] == pytest.approx(36 / 48)
    assert metrics["reward/parse_error_rate"] == 0.0
    assert metrics["reward/timeout_rate"] == 0.0
    assert metrics["reward/format"] == 1.0
