"""The algorithms as configs plus pure functions: GRPO-family baselines and BPPO.

Each algorithm is a function ``RolloutGroups -> TrainBatch`` (advantages, selection,
truncation) looked up by name in ``TRAIN_BATCH_BUILDERS``; the loss on the resulting
batch is shared (``algorithm_loss``), because GRPO and BPPO differ only in which
tokens reach the learner and how they are averaged. Selection and truncation happen
here, before the learner runs any forward pass, which is where BPPO's saving comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from learner.advantages import estimated_full_group_advantages, group_advantages, informative_groups
from learner.batch import RolloutGroups, TrainBatch, pad_rows
from learner.losses import AGG_MODES, KL_KINDS, LossSettings, policy_loss
from learner.selection import divergence_points, prefix_mask, select_pairs, truncation_length

AggMode = Literal[AGG_MODES]
_LOSS_DEFAULTS = LossSettings()  # the loss's own defaults are the configs' defaults


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class _LossSettings(_Strict):
    """Settings every algorithm shares: advantages, clipping, KL, refill."""

    clip_low: float = Field(_LOSS_DEFAULTS.clip_low, ge=0.0, lt=1.0)
    """Lower clip range eps_low: the ratio is clipped below at 1 - clip_low."""
    clip_high: float = Field(_LOSS_DEFAULTS.clip_high, ge=0.0)
    """Upper clip range eps_high: the ratio is clipped above at 1 + clip_high (DAPO: 0.28)."""
    clip_ratio_c: float | None = Field(_LOSS_DEFAULTS.clip_ratio_c, gt=1.0)
    """Dual-clip bound c (verl's clip_ratio_c, same default): for a negative advantage the
    token's loss is capped at -c A, so a token whose probability rose far above the old
    policy's cannot take an unbounded step. It acts only when the ratio exceeds c, i.e. with
    several optimizer steps per batch or stale behaviour log-probs. null = off."""
    kl_coef: float = Field(_LOSS_DEFAULTS.kl_coef, ge=0.0)
    """beta, the KL penalty weight; > 0 loads a frozen reference model on the learner."""
    kl_kind: Literal[KL_KINDS] = _LOSS_DEFAULTS.kl_kind
    """KL estimator against the reference; k3 = exp(d) - d - 1 is non-negative."""
    norm_by_std: bool = True
    """Divide group-centred rewards by the group std (GRPO); false gives Dr.GRPO's r - mean."""
    adv_eps: float = Field(1e-6, gt=0.0)
    """eps in (r - mean) / (std + eps)."""
    refill_rounds: int = Field(0, ge=0)
    """Extra generation rounds per step when the groups with a signal (a pair for BPPO; unequal
    rewards for GRPO with filter_groups) number fewer than trainer.prompts_per_step; each round
    samples trainer.gen_prompts_per_step prompts in one call (DAPO's max_num_gen_batches - 1)."""
    overlong_buffer: int = Field(0, ge=0)
    """DAPO's soft overlong punishment: the last ``overlong_buffer`` tokens before
    rollout.max_tokens are a buffer where the reward falls linearly, by up to
    ``overlong_penalty`` at max_tokens. 0 = off."""
    overlong_penalty: float = Field(1.0, ge=0.0)
    """The most the overlong punishment subtracts (DAPO's penalty factor)."""
    tis_cap: float | None = Field(_LOSS_DEFAULTS.tis_cap, gt=0.0)
    """Off-policy batches only (trainer.mode async): each token's policy loss is weighted by
    min(pi_old / pi_behaviour, tis_cap), the truncated importance weight between the learner's
    old policy and the engine's that sampled it (verl's and TRL's TIS, decoupled PPO as in
    AReaL). null = the weight uncapped."""

    def loss_settings(self) -> LossSettings:
        """What ``learner.losses.policy_loss`` takes from this config."""
        return LossSettings(
            clip_low=self.clip_low,
            clip_high=self.clip_high,
            clip_ratio_c=self.clip_ratio_c,
            agg_mode=self.agg_mode,
            kl_coef=self.kl_coef,
            kl_kind=self.kl_kind,
            tis_cap=self.tis_cap,
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
    """Which correct and which incorrect completion form the pair (ties: lowest index; random is
    seeded from the run seed and the step, so a resumed run picks the same pairs)."""
    prefix: PrefixConfig = PrefixConfig()
    """The trained window of each selected completion."""
    aborted_advantage: Literal["finished", "pass_rate"] = "pass_rate"
    """Advantages of a group that early stopping cut short (rollout.early_stop_groups): the full
    group's, estimated from the prompt's pass-rate estimate before this visit ('pass_rate': the
    paper normalises over the whole group; learner.advantages.estimated_full_group_advantages),
    or its finished completions' own mean and std ('finished', a sample biased to short
    responses: on the tiny model it lengthened responses and ended 0.07-0.16 lower than plain
    BPPO in both seeds, where 'pass_rate' matched plain BPPO; docs/results/sweep_early_stop/)."""


AlgoConfig = Annotated[BPPOConfig | GRPOConfig, Field(discriminator="name")]


def grpo_train_batch(groups: RolloutGroups, algo: GRPOConfig, *, pad_id: int, seed: int = 0) -> TrainBatch:
    """All G completions of every group, whole responses, full-group advantages."""
    if groups.finished is not None and not bool(groups.finished.all()):
        raise ValueError(
            "GRPO trains every completion of a group, but some were aborted: rollout.early_stop_groups is for BPPO only"
        )
    advantages = group_advantages(groups.rewards, norm_by_std=algo.norm_by_std, eps=algo.adv_eps)
    kept_groups = signal_groups(groups, algo).nonzero().flatten().tolist()
    rows = [(g, i) for g in kept_groups for i in range(groups.group_size)]
    return _gather_rows(groups, rows, advantages, pad_id=pad_id)


def bppo_train_batch(groups: RolloutGroups, algo: BPPOConfig, *, pad_id: int, seed: int = 0) -> TrainBatch:
    """docs/design.md §3, BPPO: full-group advantages, then the pair, then the prefix, cut physically."""
    # With early-stopped groups, "full group" = the completions that finished (the others
    # were aborted once the pair was known: no reward, never selected).
    advantages = group_advantages(groups.rewards, norm_by_std=algo.norm_by_std, eps=algo.adv_eps, valid=groups.finished)
    estimated = torch.zeros(advantages.shape[0], dtype=torch.bool)
    if algo.aborted_advantage == "pass_rate" and groups.finished is not None:
        if groups.pass_rate_prior is None:
            raise ValueError("algo.aborted_advantage=pass_rate needs each group's pass-rate estimate (pass_rate_prior)")
        estimated = ~groups.finished.all(dim=1)  # groups early stopping cut short
        full = estimated_full_group_advantages(
            groups.rewards,
            groups.correct,
            groups.finished,
            groups.pass_rate_prior,
            norm_by_std=algo.norm_by_std,
            eps=algo.adv_eps,
        )
        advantages = torch.where(estimated[:, None], full, advantages)
    # The pair is defined by the verifier's correctness, not by the shaped reward.
    pos, neg, has_pair = select_pairs(
        groups.correct,
        groups.response_lengths(),
        rule=algo.selection,
        eligible=groups.finished,
        generator=torch.Generator().manual_seed(seed),
    )
    pairs = has_pair.nonzero().flatten().tolist()  # groups with a pair
    _check_pair_signs(advantages, pos, neg, pairs, groups.rewards)
    rows = [(g, int(i)) for g in pairs for i in (pos[g], neg[g])]
    batch = _gather_rows(groups, rows, advantages, pad_id=pad_id)
    start = None
    if algo.prefix.mode == "divergence":  # both rows of a pair start where the pair diverges
        points = divergence_points(
            [groups.response_ids[g][int(pos[g])] for g in pairs], [groups.response_ids[g][int(neg[g])] for g in pairs]
        )
        start = points.repeat_interleave(2)  # [B], rows are (pos, neg) per pair
    window = prefix_mask(
        batch.loss_mask,
        mode=algo.prefix.mode,
        tokens=algo.prefix.tokens,
        fraction=algo.prefix.fraction,
        start=start,
    )
    batch.loss_mask = window
    batch = batch.truncate(truncation_length(window))
    # The truncated attention mask must also end where the window ends, so that the
    # forward passes never see the tokens after the prefix.
    batch.attention_mask = batch.attention_mask * _up_to_last(batch.loss_mask)
    batch.metrics["bppo/prefix_tokens"] = window.sum(dim=-1).float().mean() if len(rows) else torch.tensor(0.0)
    if algo.aborted_advantage == "pass_rate":  # pairs whose advantages came from the estimate
        batch.metrics["bppo/estimated_pairs"] = estimated[pairs].float().sum() if pairs else torch.tensor(0.0)
    return batch


def signal_groups(groups: RolloutGroups, algo: BPPOConfig | GRPOConfig) -> torch.Tensor:
    """``[num_groups]`` bool: the groups the algorithm trains on. BPPO: a correct and an incorrect
    finished completion (a pair); GRPO with ``filter_groups`` (DAPO's dynamic sampling): rewards
    not all equal; plain GRPO: every group (an all-equal group still weighs in the normalisers)."""
    if algo.name == "bppo":
        finished = torch.ones_like(groups.correct) if groups.finished is None else groups.finished
        return (groups.correct & finished).any(dim=1) & (~groups.correct & finished).any(dim=1)
    if algo.filter_groups:
        return informative_groups(groups.rewards)
    return torch.ones(groups.rewards.shape[0], dtype=torch.bool)


def _check_pair_signs(
    advantages: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, pairs: list[int], rewards: torch.Tensor
) -> None:
    """BPPO pushes the correct completion up and the incorrect one down: a reward that scores an
    incorrect completion above a correct one (format weight >= accuracy weight, a custom reward)
    would train the pair the wrong way round, and one that scores them equal but away from the
    group mean pushes both the same way. Config validation rules it out for the built-in reward;
    this catches the rest before any update. A pair at the group mean (both advantages 0) only
    carries no signal and passes."""
    for g in pairs:
        p, n = int(pos[g]), int(neg[g])
        a_pos, a_neg = float(advantages[g, p]), float(advantages[g, n])
        if a_pos < a_neg or (a_pos == a_neg != 0.0):
            raise ValueError(
                f"group {g}: the correct completion {p} has reward {float(rewards[g, p]):g} and the incorrect "
                f"completion {n} {float(rewards[g, n]):g}; BPPO needs every correct completion to score above "
                "every incorrect one (raise reward.accuracy_weight above reward.format_weight plus any "
                "overlong penalty, or fix the custom reward)"
            )


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
        images=None if groups.images is None else [groups.images[g] for g, _ in rows],
    )


TRAIN_BATCH_BUILDERS: dict[str, Callable[..., TrainBatch]] = {
    "grpo": grpo_train_batch,
    "bppo": bppo_train_batch,
}


def build_train_batch(
    groups: RolloutGroups, algo: BPPOConfig | GRPOConfig, *, pad_id: int, seed: int = 0
) -> TrainBatch:
    """The one call the learner side makes per step: the algorithm's rows, ready to train.
    ``seed`` drives any random choice (BPPO's ``selection: random``); the loop derives it from
    the run seed and the step."""
    batch = TRAIN_BATCH_BUILDERS[algo.name](groups, algo, pad_id=pad_id, seed=seed)
    batch.metrics.update(advantage_spread(batch.advantages))
    return batch


def advantage_spread(advantages: torch.Tensor) -> dict[str, torch.Tensor]:
    """``adv/*``: mean, standard deviation, min and max of the trained rows' advantages (zeros
    when nothing is trained). GRPO's mean is ~0 by construction; BPPO's pair can be lopsided
    (e.g. +1.57 / -0.84 at a 1-in-8 pass rate), which these show."""
    if advantages.numel() == 0:
        zero = torch.tensor(0.0)
        return {"adv/mean": zero, "adv/std": zero, "adv/min": zero, "adv/max": zero}
    values = advantages.float()
    return {
        "adv/mean": values.mean(),
        "adv/std": values.std(unbiased=False),
        "adv/min": values.min(),
        "adv/max": values.max(),
    }


def overlong_penalty(lengths: torch.Tensor, *, max_tokens: int, buffer: int, penalty: float) -> torch.Tensor:
    """DAPO's soft overlong punishment (eq. 13), ``<= 0``, same shape as ``lengths``.

    With L_max = ``max_tokens`` and L_cache = ``buffer``: 0 up to L_max - L_cache tokens, then
    ``penalty * ((L_max - L_cache) - length) / L_cache``, reaching ``-penalty`` at L_max (a
    completion cut at max_tokens). ``buffer`` 0 gives zeros.
    """
    if buffer == 0:
        return torch.zeros(lengths.shape, dtype=torch.float32)
    if not 0 < buffer <= max_tokens:
        raise ValueError(f"overlong buffer {buffer} must be within 1..max_tokens={max_tokens}")
    excess = (lengths.float() - (max_tokens - buffer)).clamp(min=0.0, max=float(buffer))
    return -penalty * excess / buffer


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
        algo.loss_settings(),
        ref_logprobs=batch.ref_logprobs if algo.kl_coef > 0 else None,
        behavior_logprobs=batch.behavior_logprobs,
        global_tokens=global_tokens,
        global_seqs=global_seqs,
        max_len=max_len,
    )
