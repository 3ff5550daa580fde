"""The algorithms as configs plus pure functions: GRPO-family baselines and BPPO.

Each algorithm is a function ``RolloutGroups -> TrainBatch`` (advantages, selection,
truncation) looked up by name in ``TRAIN_BATCH_BUILDERS``; the loss on the resulting
batch is shared (``algorithm_loss``), because GRPO and BPPO differ only in which
tokens reach the learner and how they are averaged. Selection and truncation happen
here, before the learner runs any forward pass, which is where BPPO's saving comes from.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field

from learner.advantages import group_advantages, informative_groups
from learner.batch import RolloutGroups, TrainBatch, pad_rows
from learner.losses import policy_loss
from learner.selection import divergence_points, prefix_mask, select_pairs, truncation_length

AggMode = Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class _LossSettings(_Strict):
    """Settings every algorithm shares: advantages, clipping, KL, refill."""

    clip_low: float = Field(0.2, ge=0.0, lt=1.0)
    """Lower clip range eps_low: the ratio is clipped below at 1 - clip_low."""
    clip_high: float = Field(0.2, ge=0.0)
    """Upper clip range eps_high: the ratio is clipped above at 1 + clip_high (DAPO: 0.28)."""
    kl_coef: float = Field(0.0, ge=0.0)
    """beta, the KL penalty weight; > 0 loads a frozen reference model on the learner."""
    kl_kind: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator against the reference; k3 = exp(d) - d - 1 is non-negative."""
    norm_by_std: bool = True
    """Divide group-centred rewards by the group std (GRPO); false gives Dr.GRPO's r - mean."""
    adv_eps: float = Field(1e-6, gt=0.0)
    """eps in (r - mean) / (std + eps)."""
    refill_rounds: int = Field(0, ge=0)
    """Extra generation rounds per step to replace groups that carry no signal (DAPO dynamic
    sampling for GRPO with filter_groups; groups without a pair for BPPO). 0 = no refill."""

    def loss_kwargs(self) -> dict:
        """Keyword arguments for ``learner.losses.policy_loss``."""
        return dict(
            clip_low=self.clip_low, clip_high=self.clip_high, agg_mode=self.agg_mode,
            kl_coef=self.kl_coef, kl_kind=self.kl_kind,
        )


class GRPOConfig(_LossSettings):
    """GRPO family: every one of the G completions is trained on in full."""

    name: Literal["grpo"] = "grpo"
    """Algorithm tag (the discriminator of ``algo``)."""
    agg_mode: AggMode = "seq-mean-token-mean"
    """Loss normalisation: seq-mean-token-mean (DeepSeekMath), token-mean (DAPO, verl's
    default), seq-mean-token-sum-norm (Dr.GRPO)."""
    filter_groups: bool = False
    """DAPO's dynamic-sampling filter: drop groups whose G rewards are all equal."""


class PrefixConfig(_Strict):
    """Which response tokens of each selected completion are trained (BPPO's m^(n))."""

    mode: Literal["tokens", "fraction", "full", "divergence"] = "tokens"
    """tokens: the first ``tokens`` (the paper's m^(n)); fraction: the first ceil(fraction x
    length); full: the whole response (BPPO's selection alone, for ablations);
    divergence: OUR EXTENSION, not the paper's: the ``tokens`` tokens starting where the
    pair's two responses first differ (their shared beginning would get +A and -A on
    identical tokens, which cancel)."""
    tokens: int = Field(64, ge=1)
    """n for mode=tokens and mode=divergence."""
    fraction: float = Field(0.5, gt=0.0, le=1.0)
    """f for mode=fraction."""


class BPPOConfig(_LossSettings):
    """BPPO (Ruyi2.5 §3.2.3): one correct and one incorrect completion per group, prefix only."""

    name: Literal["bppo"] = "bppo"
    """Algorithm tag (the discriminator of ``algo``)."""
    agg_mode: AggMode = "seq-mean-token-mean"
    """The paper's objective is seq-mean-token-mean over the pair; others are for ablations."""
    selection: Literal["shortest", "longest", "random"] = "shortest"
    """Which correct and which incorrect completion form the pair (ties: lowest index)."""
    correct_threshold: float = 0.5
    """A completion is positive when its accuracy reward is above this."""
    prefix: PrefixConfig = PrefixConfig()
    """The trained window of each selected completion."""


AlgoConfig = Annotated[Union[BPPOConfig, GRPOConfig], Field(discriminator="name")]


def grpo_train_batch(groups: RolloutGroups, algo: GRPOConfig, *, pad_id: int) -> TrainBatch:
    """All G completions of every group, whole responses, full-group advantages."""
    if groups.finished is not None and not bool(groups.finished.all()):
        raise ValueError("GRPO trains every completion of a group, but some were aborted: "
                         "rollout.early_stop_groups is for BPPO only")
    advantages = group_advantages(groups.rewards, norm_by_std=algo.norm_by_std, eps=algo.adv_eps)
    keep = torch.ones(groups.rewards.shape[0], dtype=torch.bool)  # [num_groups]
    if algo.filter_groups:
        keep = informative_groups(groups.rewards)
    kept_groups = keep.nonzero().flatten().tolist()
    rows = [(g, i) for g in kept_groups for i in range(groups.group_size)]
    batch = _gather_rows(groups, rows, advantages, pad_id=pad_id)
    batch.metrics["grpo/kept_group_rate"] = keep.float().mean()
    return batch


def bppo_train_batch(groups: RolloutGroups, algo: BPPOConfig, *, pad_id: int) -> TrainBatch:
    """DESIGN §3 BPPO: full-group advantages, then the pair, then the prefix, cut physically."""
    # With early-stopped groups, "full group" = the completions that finished (the others
    # were aborted once the pair was known: no reward, never selected).
    advantages = group_advantages(groups.rewards, norm_by_std=algo.norm_by_std, eps=algo.adv_eps,
                                  valid=groups.finished)
    correct = groups.accuracy > algo.correct_threshold  # [num_groups, G]
    pos, neg, has_pair = select_pairs(correct, groups.response_lengths(), rule=algo.selection,
                                      eligible=groups.finished)
    pairs = has_pair.nonzero().flatten().tolist()  # groups with a pair
    rows = [(g, int(i)) for g in pairs for i in (pos[g], neg[g])]
    batch = _gather_rows(groups, rows, advantages, pad_id=pad_id)
    start = None
    if algo.prefix.mode == "divergence":  # both rows of a pair start where the pair diverges
        points = divergence_points([groups.response_ids[g][int(pos[g])] for g in pairs],
                                   [groups.response_ids[g][int(neg[g])] for g in pairs])
        start = points.repeat_interleave(2)  # [B], rows are (pos, neg) per pair
    window = prefix_mask(
        batch.loss_mask, mode=algo.prefix.mode, tokens=algo.prefix.tokens, fraction=algo.prefix.fraction,
        start=start,
    )
    batch.loss_mask = window
    batch = batch.truncate(truncation_length(window))
    # The truncated attention mask must also end where the window ends, so that the
    # forward passes never see the tokens after the prefix.
    batch.attention_mask = batch.attention_mask * _up_to_last(batch.loss_mask)
    batch.metrics["bppo/pair_rate"] = has_pair.float().mean()
    batch.metrics["bppo/prefix_tokens"] = window.sum(dim=-1).float().mean() if len(rows) else torch.tensor(0.0)
    return batch


def _up_to_last(mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` long: 1 on every column up to and including each row's last nonzero."""
    reversed_cummax = mask.flip(-1).cummax(dim=-1).values.flip(-1)
    return (reversed_cummax != 0).long()


def _gather_rows(
    groups: RolloutGroups, rows: list[tuple[int, int]], advantages: torch.Tensor, *, pad_id: int
) -> TrainBatch:
    """Pad the (group, completion) ``rows`` into a ``TrainBatch``."""
    logprobs = groups.response_logprobs
    input_ids, attention_mask, response_mask, old_logprobs = pad_rows(
        [groups.prompt_ids[g] for g, _ in rows],
        [groups.response_ids[g][i] for g, i in rows],
        pad_id=pad_id,
        response_logprobs=None if logprobs is None else [logprobs[g][i] for g, i in rows],
    )
    group_index = torch.tensor([g for g, _ in rows], dtype=torch.long)  # [B]
    completion_index = torch.tensor([i for _, i in rows], dtype=torch.long)  # [B]
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=response_mask,
        advantages=advantages[group_index, completion_index].float(),
        group_index=group_index,
        old_logprobs=old_logprobs,
    )


TRAIN_BATCH_BUILDERS: dict[str, Callable[..., TrainBatch]] = {
    "grpo": grpo_train_batch,
    "bppo": bppo_train_batch,
}


def build_train_batch(groups: RolloutGroups, algo: BPPOConfig | GRPOConfig, *, pad_id: int) -> TrainBatch:
    """The one call the learner side makes per step: the algorithm's rows, ready to train."""
    return TRAIN_BATCH_BUILDERS[algo.name](groups, algo, pad_id=pad_id)


def algorithm_loss(
    logprobs: torch.Tensor,
    batch: TrainBatch,
    algo: BPPOConfig | GRPOConfig,
    *,
    global_tokens: torch.Tensor | float | None = None,
    global_seqs: torch.Tensor | float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The algorithm's loss on (a micro-batch of) a ``TrainBatch``; ``logprobs`` is ``[B, T]``."""
    if batch.old_logprobs is None:
        raise ValueError("batch.old_logprobs is not set: compute them before the loss")
    if algo.kl_coef > 0 and batch.ref_logprobs is None:
        raise ValueError("kl_coef > 0 but batch.ref_logprobs is not set")
    return policy_loss(
        logprobs,
        batch.old_logprobs,
        batch.advantages,
        batch.loss_mask,
        ref_logprobs=batch.ref_logprobs if algo.kl_coef > 0 else None,
        global_tokens=global_tokens,
        global_seqs=global_seqs,
        max_len=max_len,
        **algo.loss_kwargs(),
    )
