"""Group-relative advantages (DESIGN §3), pure torch.

Both GRPO and BPPO compute advantages over the FULL group of G completions of a
prompt; BPPO selects its pair only afterwards, so the pair's advantages carry the
statistics of the whole group.
"""

from __future__ import annotations

import torch


def group_advantages(
    rewards: torch.Tensor, *, norm_by_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """Advantages ``[num_groups, G]`` from rewards ``[num_groups, G]``.

    ``(r - mean) / (std + eps)`` with the Bessel-corrected std of each row
    (DeepSeekMath GRPO), or ``r - mean`` with ``norm_by_std=False`` (Dr.GRPO).
    A row whose rewards are all equal gets advantage 0 everywhere.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    if norm_by_std and rewards.shape[1] < 2:
        # The Bessel-corrected std of one sample is undefined (0/0).
        raise ValueError(f"norm_by_std needs G >= 2 completions per group, got G={rewards.shape[1]}")
    rewards = rewards.float()
    centered = rewards - rewards.mean(dim=1, keepdim=True)  # [num_groups, G]
    if not norm_by_std:
        return centered
    std = rewards.std(dim=1, unbiased=True, keepdim=True)  # [num_groups, 1]
    return centered / (std + eps)


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """DAPO's group filter: ``[num_groups]`` bool, False where all G rewards are equal.

    Such a group has zero advantage everywhere and contributes no policy gradient,
    only normaliser weight (and KL), so DAPO's dynamic sampling drops it.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    return (rewards != rewards[:, :1]).any(dim=1)
