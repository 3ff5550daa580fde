"""BPPO's binary selection and prefix windows (docs/design.md §3, steps 2-4), pure torch."""

from __future__ import annotations

import torch

SELECTION_RULES = ("shortest", "longest", "random")
PREFIX_MODES = ("tokens", "fraction", "full", "divergence")

# Any real length is below this; used to push ineligible candidates out of argmin.
_NEVER = torch.iinfo(torch.int64).max


def select_pairs(
    correct: torch.Tensor,
    lengths: torch.Tensor,
    rule: str = "shortest",
    generator: torch.Generator | None = None,
    eligible: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one correct (positive) and one incorrect (negative) completion per group.

    Args:
        correct: ``[num_groups, G]`` bool.
        lengths: ``[num_groups, G]`` int, response lengths in tokens.
        rule: ``shortest`` (the paper's choice), ``longest`` or ``random``.
        generator: random source for ``rule="random"``.
        eligible: ``[num_groups, G]`` bool or None (all); completions outside it are never
            picked (those an early-stopped group aborted).

    Returns ``(pos_index, neg_index, has_pair)``, each ``[num_groups]``; indices are
    long, ties go to the lowest index, and rows lacking either class have
    ``has_pair=False`` and both indices 0.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"rule must be one of {SELECTION_RULES}, got {rule!r}")
    if correct.shape != lengths.shape or correct.dim() != 2:
        raise ValueError(
            f"correct and lengths must both be [num_groups, G], got {tuple(correct.shape)} and {tuple(lengths.shape)}"
        )
    if eligible is None:
        eligible = torch.ones_like(correct, dtype=torch.bool)
    elif eligible.shape != correct.shape:
        raise ValueError(f"eligible must be {tuple(correct.shape)}, got {tuple(eligible.shape)}")
    positive = correct.bool() & eligible.bool()  # [num_groups, G]
    negative = ~correct.bool() & eligible.bool()
    has_pair = positive.any(dim=1) & negative.any(dim=1)  # [num_groups]

    if rule == "random":
        # Distinct random keys per candidate; argmin takes a uniform pick among eligible ones.
        key = torch.randperm(correct.numel(), generator=generator).view_as(lengths)
    elif rule == "shortest":
        key = lengths.long()
    else:  # longest
        key = -lengths.long()

    # torch.argmin returns the first minimum, which gives the lowest-index tie-break.
    pos_index = key.masked_fill(~positive, _NEVER).argmin(dim=1)
    neg_index = key.masked_fill(~negative, _NEVER).argmin(dim=1)
    zero = torch.zeros_like(pos_index)
    return (
        torch.where(has_pair, pos_index, zero),
        torch.where(has_pair, neg_index, zero),
        has_pair,
    )


def prefix_keep_counts(
    response_mask: torch.Tensor,
    *,
    mode: str,
    tokens: int | None = None,
    fraction: float | None = None,
) -> torch.Tensor:
    """``[B]`` long: how many leading response tokens each row keeps under ``mode``."""
    counts = response_mask.long().sum(dim=-1)  # [B]
    if mode == "full":
        return counts
    if mode == "tokens":
        if tokens is None or isinstance(tokens, bool) or int(tokens) != tokens or tokens < 1:
            raise ValueError(f"mode='tokens' needs tokens >= 1, got {tokens!r}")
        return counts.clamp(max=int(tokens))
    if mode == "fraction":
        if fraction is None or not 0.0 < fraction <= 1.0:
            raise ValueError(f"mode='fraction' needs 0 < fraction <= 1, got {fraction!r}")
        # ceil(f * count) in float64 with a 1e-9 allowance: the float product
        # 0.3 * 10 = 3.0000000000000004 must give 3, not 4.
        product = counts.double() * fraction
        return torch.ceil(product - 1e-9).long().clamp(min=0)
    raise ValueError(f"mode must be one of {PREFIX_MODES}, got {mode!r}")


def divergence_points(first: list[list[int]], second: list[list[int]]) -> torch.Tensor:
    """``[P]`` long: for each pair of responses, the index of the first token where they differ
    (the shorter length when one is a prefix of the other)."""
    points = []
    for a, b in zip(first, second, strict=True):
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        points.append(k)
    return torch.tensor(points, dtype=torch.long)


def prefix_mask(
    response_mask: torch.Tensor,
    *,
    mode: str,
    tokens: int | None = None,
    fraction: float | None = None,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep a window of the ones of each row of a ``[B, T]`` 0/1 response mask.

    ``mode="tokens"``: the first n = ``tokens``; ``"fraction"``: the first ceil(fraction x
    the row's count of ones); ``"full"``: the mask unchanged. ``"divergence"`` (our
    extension, not in the paper): the ``tokens`` ones starting at response index ``start``
    ([B] long, e.g. from ``divergence_points``), clamped so that the window keeps at least
    the row's last token. Returns the same dtype as the input.
    """
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask must be [B, T], got shape {tuple(response_mask.shape)}")
    is_response = response_mask != 0
    rank = is_response.long().cumsum(dim=-1)  # [B, T]: 1-based index among response tokens
    if mode == "divergence":
        if start is None or start.shape != response_mask.shape[:1]:
            raise ValueError("mode='divergence' needs start, one response index per row")
        counts = is_response.long().sum(dim=-1)  # [B]
        first = torch.minimum(start.long(), (counts - 1).clamp(min=0))  # 0-based first kept index
        last = first + prefix_keep_counts(response_mask, mode="tokens", tokens=tokens).clamp(min=1)
        kept = is_response & (rank > first.unsqueeze(-1)) & (rank <= last.unsqueeze(-1))
        return kept.to(response_mask.dtype)
    keep = prefix_keep_counts(response_mask, mode=mode, tokens=tokens, fraction=fraction)  # [B]
    kept = is_response & (rank <= keep.unsqueeze(-1))
    return kept.to(response_mask.dtype)


def truncation_length(mask: torch.Tensor) -> int:
    """Columns a ``[B, T]`` batch needs so that every row keeps all its masked tokens.

    Slicing a right-padded ``prompt + response`` batch to this many columns is BPPO's
    physical truncation: by causality the log-probs of the kept tokens do not change,
    and every forward pass (policy, old, reference) gets shorter.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be [B, T], got shape {tuple(mask.shape)}")
    if mask.numel() == 0:
        return 0
    columns = torch.arange(1, mask.shape[1] + 1, device=mask.device)  # [T]
    return int((columns * (mask != 0)).max())
