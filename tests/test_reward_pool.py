"""The Ray reward worker pool on a local cluster the test starts."""

import pytest

from rewards.config import RewardConfig
from rewards.pool import RewardPool

pytestmark = pytest.mark.slow


def test_pool_keeps_order_and_counts_reasons(ray_local):
    pool = RewardPool(RewardConfig(num_workers=2, timeout_s=2.0), chunk_size=3)
    completions, truths = [], []
    for i in range(20):
        completions.append(f"\\boxed{{{i}}}" if i % 4 else f"\\boxed{{{i + 1}}}")  # every 4th is wrong
        truths.append(str(i))
    completions += ["no answer here", "\\boxed{10^{10^{10^{10}}}}", "\\boxed{" + "1+" * 300 + "1}"]
    truths += ["1", "1", "1"]
    results, metrics = pool.score(completions, truths)
    pool.shutdown()
    assert [r.correct for r in results[:20]] == [i % 4 != 0 for i in range(20)]
    assert [r.answer for r in results[:20]] == [str(i if i % 4 else i + 1) for i in range(20)]
    assert [r.reason for r in results[20:]] == ["no_answer", "timeout", "parse_error"]
    assert metrics["reward/accuracy"] == pytest.approx(15 / 23)
    assert metrics["reward/timeout_rate"] == pytest.approx(1 / 23)
    assert metrics["reward/parse_error_rate"] == pytest.approx(1 / 23)
    assert metrics["reward/no_answer_rate"] == pytest.approx(1 / 23)


def test_custom_reward_function_by_import_path(ray_local):
    pool = RewardPool(RewardConfig(num_workers=1, function="tests.custom_reward:length_reward"))
    results, metrics = pool.score(["abc", "abcd"], ["3", "3"])
    pool.shutdown()
    assert [r.correct for r in results] == [True, False]
    assert metrics["reward/mean"] == 0.5


def test_a_raising_reward_function_scores_parse_error_instead_of_killing_the_batch(ray_local):
    pool = RewardPool(RewardConfig(num_workers=1, function="tests.custom_reward:broken_reward"))
    results, metrics = pool.score(["a", "b"], ["1", "2"])
    pool.shutdown()
    assert [r.reason for r in results] == ["parse_error", "parse_error"]
    assert "bug in a user's reward function" in results[0].detail
    assert metrics["reward/parse_error_rate"] == 1.0


def test_bad_function_path_fails_at_start_up():
    with pytest.raises(ValueError, match="reward.function='tests.nope:f' cannot be imported"):
        RewardPool(RewardConfig(function="tests.nope:f"))


def test_a_custom_reward_function_is_held_to_the_deadline(ray_local):
    import time

    pool = RewardPool(RewardConfig(num_workers=1, timeout_s=1.0, function="tests.slow_reward:spin_reward"))
    started = time.monotonic()
    results, metrics = pool.score(["a", "b"], ["1", "2"])
    elapsed = time.monotonic() - started
    pool.shutdown()
    assert [r.reason for r in results] == ["timeout", "timeout"]
    assert elapsed < 2 * (1.0 + 1.0)  # two items, each within timeout_s + 1 s
    assert metrics["reward/timeout_rate"] == 1.0
