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


def estimated_full_group_advantages(
    rewards: torch.Tensor,
    correct: torch.Tensor,
    finished: torch.Tensor,
    pass_rate: torch.Tensor,
    *,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Advantages ``[num_groups, G]`` of early-stopped groups as the full group's would be, from the
    prompt's pass-rate estimate ``pass_rate`` ``[num_groups]`` (made before this visit).

    A stopped group shows a correct and an incorrect completion but not how many of G would
    have been right; its finished completions' own mean and std say 1 in 2 whatever the prompt.
    Here the full group is the two-point mixture of its finished correct completions' mean
    reward r_c and incorrect ones' r_w with weight p (the estimate, kept within [1/G, 1 - 1/G]:
    this group has both): mean p r_c + (1 - p) r_w and, Bessel-corrected for G samples,
    variance G/(G - 1) p (1 - p) (r_c - r_w)^2 -- exactly the full group's statistics when p is
    its pass rate and rewards are binary. Finished completions get (r - mean) / (std + eps)
    (``norm_by_std=False``: r - mean), aborted ones 0; a group without both classes gets 0s.
    """
    if rewards.shape != correct.shape or rewards.shape != finished.shape or pass_rate.shape != rewards.shape[:1]:
        raise ValueError(
            f"rewards, correct and finished must be [num_groups, G] and pass_rate [num_groups]; got "
            f"{tuple(rewards.shape)}, {tuple(correct.shape)}, {tuple(finished.shape)}, {tuple(pass_rate.shape)}"
        )
    G = rewards.shape[1]
    rewards = rewards.float()
    right, wrong = (correct & finished).float(), (~correct & finished).float()
    n_right, n_wrong = right.sum(dim=1), wrong.sum(dim=1)  # [num_groups]
    both = (n_right > 0) & (n_wrong > 0)
    r_right = (rewards * right).sum(dim=1) / n_right.clamp(min=1.0)
    r_wrong = (rewards * wrong).sum(dim=1) / n_wrong.clamp(min=1.0)
    p = pass_rate.float().clamp(1.0 / G, 1.0 - 1.0 / G)
    mean = p * r_right + (1.0 - p) * r_wrong  # [num_groups]
    centered = (rewards - mean[:, None]) * finished.float()
    if norm_by_std:
        std = (G / (G - 1) * p * (1.0 - p)).sqrt() * (r_right - r_wrong).abs()
        centered = centered / (std[:, None] + eps)
    return centered * both[:, None].float()


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """DAPO's group filter: ``[num_groups]`` bool, False where all G rewards are equal.

    Such a group has zero advantage everywhere and contributes no policy gradient,
    only normaliser weight (and KL), so DAPO's dynamic sampling drops it.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    return (rewards != rewards[:, :1]).any(dim=1)
