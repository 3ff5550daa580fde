"""Custom reward functions plugged in by import path in the pool tests."""

from rewards.verify import RewardResult


def length_reward(completion, ground_truth, *, timeout_s, config):
    correct = len(completion) == int(ground_truth)
    return RewardResult(correct, float(correct), True, str(len(completion)), "correct" if correct else "wrong")


def broken_reward(completion, ground_truth, *, timeout_s, config):
    raise RuntimeError("bug in a user's reward function")


def even_length_reward(completion, ground_truth, *, timeout_s, config):
    """About half of a random model's samples are 'correct': every group has a pair, so the
    loop tests exercise the learner and weight sync before any model can solve a problem."""
    correct = len(completion) % 2 == 0
    return RewardResult(correct, float(correct), True, str(len(completion)), "correct" if correct else "wrong")
