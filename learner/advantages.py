"""Group-relative advantages (docs/design.md §3), pure torch.

Both GRPO and BPPO compute advantages over the FULL group of G completions of a
prompt; BPPO selects its pair only afterwards, so the pair's advantages carry the
statistics of the whole group.
"""

from __future__ import annotations

import torch


def group_advantages(
    rewards: torch.Tensor,
    *,
    norm_by_std: bool = True,
    eps: float = 1e-6,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Advantages ``[num_groups, G]`` from rewards ``[num_groups, G]``.

    ``(r - mean) / (std + eps)`` with the Bessel-corrected std of each row
    (DeepSeekMath GRPO), or ``r - mean`` with ``norm_by_std=False`` (Dr.GRPO).
    A row whose rewards are all equal gets advantage 0 everywhere.

    ``valid`` (``[num_groups, G]`` bool) restricts each row's statistics to its valid
    completions and gives the others advantage 0: with ``rollout.early_stop_groups`` a
    group holds only the completions that finished before it was stopped.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    if norm_by_std and rewards.shape[1] < 2:
        # The Bessel-corrected std of one sample is undefined (0/0).
        raise ValueError(f"norm_by_std needs G >= 2 completions per group, got G={rewards.shape[1]}")
    if valid is None:
        valid = torch.ones_like(rewards, dtype=torch.bool)
    elif valid.shape != rewards.shape:
        raise ValueError(f"valid must have the shape of rewards {tuple(rewards.shape)}, got {tuple(valid.shape)}")
    weight = valid.float()  # [num_groups, G]
    count = weight.sum(dim=1, keepdim=True)  # [num_groups, 1]
    if norm_by_std and bool((count < 2).any()):
        row = int((count.flatten() < 2).nonzero()[0])
        raise ValueError(f"norm_by_std needs >= 2 valid completions per group; group {row} has {int(count[row])}")
    rewards = rewards.float() * weight
    mean = rewards.sum(dim=1, keepdim=True) / count.clamp(min=1.0)  # [num_groups, 1]
    centered = (rewards - mean) * weight  # [num_groups, G], 0 on invalid completions
    if not norm_by_std:
        return centered
    std = (centered.pow(2).sum(dim=1, keepdim=True) / (count - 1.0)).sqrt()  # Bessel, [num_groups, 1]
    return centered / (std + eps)


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """DAPO's group filter: ``[num_groups]`` bool, False where all G rewards are equal.

    Such a group has zero advantage everywhere and contributes no policy gradient,
    only normaliser weight (and KL), so DAPO's dynamic sampling drops it.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    return (rewards != rewards[:, :1]).any(dim=1)
