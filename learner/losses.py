"""Clipped policy-gradient loss with a KL penalty (docs/design.md §3), pure torch.

Two layers, both public:
- ``token_terms`` gives the per-token pieces (ratio, clipped pg loss, KL) so tests
  and custom algorithms can inspect every intermediate;
- ``aggregate`` reduces a ``[B, T]`` token quantity to a scalar under one of the
  three published normalisations, with normalisers that may belong to the whole
  optimizer step (all micro-batches and data-parallel ranks).
``policy_loss`` is the composition the learner calls.

Nothing here calls ``.item()`` or touches distributed state: metrics are detached
tensors so the caller decides when to synchronise with the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGG_MODES = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")
KL_KINDS = ("k1", "k2", "k3")

# verl's numerical guards. A log-ratio beyond +-20 (a ratio of 5e8) only arises from a token
# the old policy all but never samples; clamping it keeps exp() finite in fp32/bf16 without
# touching any ratio the clip range could let through.
LOG_RATIO_CLAMP = 20.0
# k3 = e^d - d - 1 grows exponentially in d = ref - logp; a few outlier tokens would dominate the
# KL term and its gradient. verl clamps the estimator to [-10, 10] (k3 itself is >= 0).
K3_CLAMP = 10.0


@dataclass(frozen=True)
class LossSettings:
    """The knobs of the clipped policy loss, in one place: ``token_terms`` and ``policy_loss`` take
    this, and the algorithm configs (``learner.algorithms``) build it from their validated fields."""

    clip_low: float = 0.2  # eps_low: the ratio is clipped below at 1 - clip_low
    clip_high: float = 0.2  # eps_high: clipped above at 1 + clip_high (DAPO: 0.28)
    clip_ratio_c: float | None = 3.0  # dual-clip bound c for A < 0; None = off
    agg_mode: str = "seq-mean-token-mean"  # one of AGG_MODES
    kl_coef: float = 0.0  # beta; > 0 needs reference log-probs
    kl_kind: str = "k3"  # one of KL_KINDS
    tis_cap: float | None = 2.0  # truncated importance weight cap (off-policy batches); None = no cap

    def __post_init__(self) -> None:
        if self.clip_ratio_c is not None and self.clip_ratio_c <= 1.0:
            raise ValueError(f"clip_ratio_c must be > 1 (or None), got {self.clip_ratio_c}")
        if self.agg_mode not in AGG_MODES:
            raise ValueError(f"agg_mode must be one of {AGG_MODES}, got {self.agg_mode!r}")
        if self.kl_kind not in KL_KINDS:
            raise ValueError(f"kl kind must be one of {KL_KINDS}, got {self.kl_kind!r}")
        if self.tis_cap is not None and self.tis_cap <= 0:
            raise ValueError(f"tis_cap must be > 0 (or None), got {self.tis_cap}")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Elementwise KL estimator of the policy against the reference (Schulman's k1/k2/k3).

    With d = ref_logprobs - logprobs: k1 = -d, k2 = d^2 / 2, k3 = exp(d) - d - 1.
    k3 is unbiased for KL(policy || ref) under samples of the policy and never negative.
    Like verl, k3's log-ratio is clamped to +-``LOG_RATIO_CLAMP`` and its value to
    ``K3_CLAMP`` (see the constants).
    """
    d = ref_logprobs - logprobs
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d.square()
    if kind == "k3":
        d = d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        return (torch.exp(d) - d - 1.0).clamp(max=K3_CLAMP)
    raise ValueError(f"kl kind must be one of {KL_KINDS}, got {kind!r}")


@dataclass(frozen=True)
class TokenTerms:
    """Per-token pieces of the loss, all ``[B, T]``."""

    ratio: torch.Tensor  # rho = exp(clamp(logprobs - old_logprobs, +-20))
    pg: torch.Tensor  # -min(rho * A, clip(rho) * A), dual-clipped at -c * A where A < 0
    clipped: torch.Tensor  # bool: the clipped branch is the one taken (no gradient)
    dual_clipped: torch.Tensor  # bool: A < 0 and the loss was capped at -c * A (no gradient)
    kl: torch.Tensor | None  # estimator value, before kl_coef


def token_terms(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    settings: LossSettings = LossSettings(),
    *,
    ref_logprobs: torch.Tensor | None = None,
) -> TokenTerms:
    """Per-token clipped surrogate and KL; ``advantages`` is ``[B]`` or ``[B, T]``.

    ``settings.clip_ratio_c`` is dual-clip PPO's bound (Ye et al. 2020, verl's ``clip_ratio_c``):
    for A < 0 the clipped surrogate ``max(-A rho, -A clip(rho))`` grows without bound in rho, so
    a token whose probability rose far above the old policy's could take an arbitrarily large
    step; dual-clip caps that loss at ``-c A``. None switches it off.
    """
    clip_low, clip_high, clip_ratio_c = settings.clip_low, settings.clip_high, settings.clip_ratio_c
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or logprobs.dim() != 2:
        raise ValueError(
            "logprobs, old_logprobs and mask must share one [B, T] shape, got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(mask.shape)}"
        )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # [B, 1], broadcast over tokens
    is_token = mask != 0
    # Padding may hold arbitrary log-probs; zero the log-ratio there so exp() stays finite
    # and masked positions contribute exactly 0 (with a zero, not NaN, gradient).
    log_ratio = torch.where(is_token, logprobs - old_logprobs, torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))  # [B, T]
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(unclipped, clipped)  # = -min(rho A, clip(rho) A)
    dual_clipped = torch.zeros_like(is_token)
    if clip_ratio_c is not None:
        cap = -advantages * clip_ratio_c  # [B, 1] or [B, T]
        dual_clipped = (advantages < 0) & (pg > cap) & is_token
        pg = torch.where(advantages < 0, torch.minimum(pg, cap), pg)
    kl = None
    if ref_logprobs is not None:
        zero = torch.zeros_like(logprobs)
        kl = kl_penalty(
            torch.where(is_token, logprobs, zero), torch.where(is_token, ref_logprobs, zero), settings.kl_kind
        )
    return TokenTerms(ratio=ratio, pg=pg, clipped=(clipped > unclipped) & is_token, dual_clipped=dual_clipped, kl=kl)


def truncated_importance_weights(
    old_logprobs: torch.Tensor, behavior_logprobs: torch.Tensor, mask: torch.Tensor, cap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``w = min(pi_old / pi_behaviour, cap)`` and where the cap cut it, both ``[B, T]``.

    Decoupled PPO (Hilton et al. 2021; AReaL): when the batch was sampled by weights a step or
    more behind the ones being trained (``trainer.mode: async``), the clipped ratio is taken
    against the learner's old policy (the proximal one) and each token's loss is weighted by
    the importance ratio between that policy and the one that sampled it, truncated at ``cap``
    as verl's and TRL's TIS do (an unbounded ratio from a token the sampler all but never drew
    would dominate the step). No gradient flows through ``w``. Off the trained tokens w = 1,
    never clipped; the log-ratio is clamped like the PPO ratio's."""
    if old_logprobs.shape != behavior_logprobs.shape or old_logprobs.shape != mask.shape:
        raise ValueError(
            "old_logprobs, behavior_logprobs and mask must share one [B, T] shape, got "
            f"{tuple(old_logprobs.shape)}, {tuple(behavior_logprobs.shape)}, {tuple(mask.shape)}"
        )
    is_token = mask != 0
    with torch.no_grad():
        log_weight = torch.where(is_token, old_logprobs - behavior_logprobs, torch.zeros_like(old_logprobs))
        weights = torch.exp(log_weight.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))  # [B, T]
        if cap is None:
            return weights, torch.zeros_like(is_token)
        return weights.clamp(max=cap), (weights > cap) & is_token


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    agg_mode: str,
    *,
    global_tokens: torch.Tensor | float | None = None,
    global_seqs: torch.Tensor | float | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """Reduce ``[B, T]`` token values to a scalar.

    - ``token-mean``: sum over all tokens / ``global_tokens``.
    - ``seq-mean-token-mean``: sum over sequences of each sequence's token mean / ``global_seqs``.
    - ``seq-mean-token-sum-norm``: sum over all tokens / (``global_seqs`` x ``max_len``).

    Normalisers default to this batch's own: tokens = ones in ``mask``, sequences =
    rows with at least one token, ``max_len`` = T. Passing the whole optimizer step's
    counts makes the losses of its micro-batches add up to the full-batch loss.
    Empty denominators count as 1, so an all-masked batch gives a finite 0.
    """
    mask = mask.to(values.dtype)
    masked = values * mask
    if agg_mode == "token-mean":
        tokens = mask.sum() if global_tokens is None else global_tokens
        return masked.sum() / _at_least_one(tokens, values)
    seqs = (mask.sum(dim=-1) > 0).sum() if global_seqs is None else global_seqs
    if agg_mode == "seq-mean-token-mean":
        per_seq = masked.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)  # [B]
        return per_seq.sum() / _at_least_one(seqs, values)
    if agg_mode == "seq-mean-token-sum-norm":
        length = values.shape[-1] if max_len is None else max_len
        return masked.sum() / (_at_least_one(seqs, values) * length)
    raise ValueError(f"agg_mode must be one of {AGG_MODES}, got {agg_mode!r}")


def _at_least_one(count: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(count, dtype=like.dtype, device=like.device).clamp(min=1.0)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    settings: LossSettings = LossSettings(),
    *,
    ref_logprobs: torch.Tensor | None = None,
    behavior_logprobs: torch.Tensor | None = None,
    global_tokens: torch.Tensor | float | None = None,
    global_seqs: torch.Tensor | float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped policy loss: per token ``-min(rho A, clip(rho, 1-clip_low, 1+clip_high) A) + kl_coef k``,
    dual-clipped at ``-clip_ratio_c A`` for A < 0 (see ``token_terms``), aggregated by
    ``settings.agg_mode``. With ``behavior_logprobs`` (a batch sampled off-policy) the policy
    term of each token is weighted by ``truncated_importance_weights`` (the KL term is not).

    Tensors are ``[B, T]`` (``advantages`` may be ``[B]``); ``mask`` is 1 on trained tokens.
    Returns ``(loss, metrics)``; each metric is a detached tensor aggregated with the
    same normalisers as the loss (``loss/clip_frac`` always per token), so summing the
    metrics of an optimizer step's micro-batches gives the full-batch value.
    """
    if settings.kl_coef != 0.0 and ref_logprobs is None:
        raise ValueError("kl_coef != 0 needs ref_logprobs")
    terms = token_terms(logprobs, old_logprobs, advantages, mask, settings, ref_logprobs=ref_logprobs)
    agg_mode = settings.agg_mode
    norms = dict(global_tokens=global_tokens, global_seqs=global_seqs, max_len=max_len)
    pg = terms.pg
    metrics = {}
    if behavior_logprobs is not None:
        weights, cut = truncated_importance_weights(old_logprobs, behavior_logprobs, mask, settings.tis_cap)
        pg = pg * weights
        per_token = dict(global_tokens=global_tokens)
        metrics["offpolicy/is_weight_mean"] = aggregate(weights, mask, "token-mean", **per_token)
        metrics["offpolicy/is_clip_frac"] = aggregate(cut.to(weights.dtype), mask, "token-mean", **per_token)
        # before the cap: how far off-policy the batch really was (a max: reduced by max, not summed)
        raw = torch.where(cut, torch.exp((old_logprobs - behavior_logprobs).clamp(max=LOG_RATIO_CLAMP)), weights)
        metrics["offpolicy/is_weight_max"] = torch.where(mask != 0, raw, torch.zeros_like(raw)).max().detach()
    pg_loss = aggregate(pg, mask, agg_mode, **norms)
    loss = pg_loss
    metrics["loss/pg"] = pg_loss.detach()
    if terms.kl is not None:
        kl_loss = aggregate(terms.kl, mask, agg_mode, **norms)
        loss = pg_loss + settings.kl_coef * kl_loss
        metrics["loss/kl"] = kl_loss.detach()
    with torch.no_grad():
        metrics["loss/clip_frac"] = aggregate(
            terms.clipped.to(logprobs.dtype), mask, "token-mean", global_tokens=global_tokens
        )
        metrics["loss/dual_clip_frac"] = aggregate(
            terms.dual_clipped.to(logprobs.dtype), mask, "token-mean", global_tokens=global_tokens
        )
        metrics["loss/ratio_mean"] = aggregate(terms.ratio, mask, "token-mean", global_tokens=global_tokens)
        # how far the update has moved from the policy that the ratio starts at, per token (k3,
        # unbiased and >= 0: ratio - 1 - log ratio); 0 on a batch's first optimizer step
        ratio = torch.where(mask != 0, terms.ratio.detach(), torch.ones_like(terms.ratio))  # (the clamped ratio)
        metrics["loss/old_new_kl"] = aggregate(
            ratio - 1 - torch.log(ratio), mask, "token-mean", global_tokens=global_tokens
        )
    metrics["loss/total"] = loss.detach()
    return loss, metrics
