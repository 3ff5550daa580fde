"""Custom reward functions plugged in by import path in the pool tests."""

from rewards.verify import RewardResult


def length_reward(completion, ground_truth, *, timeout_s, config):
    correct = len(completion) == int(ground_truth)
    return RewardResult(correct, float(correct), True, str(len(completion)), "correct" if correct else "wrong")


def broken_reward(completion, ground_truth, *, timeout_s, config):
    raise RuntimeError("bug in a user's reward function")
