"""Custom reward functions that misbehave, for the isolation tests (imported in the checker child)."""

from rewards.verify import RewardResult


def spin_reward(completion, ground_truth, *, timeout_s, config):
    """Never returns: the child must be killed at the deadline."""
    while True:
        pass


def not_a_result_reward(completion, ground_truth, *, timeout_s, config):
    return 1.0


def exact_reward(completion, ground_truth, *, timeout_s, config):
    correct = completion.strip() == ground_truth
    return RewardResult(correct, float(correct), False, completion.strip(), "correct" if correct else "wrong")
