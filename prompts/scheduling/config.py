"""``sched``: which prompts each step generates for, decided before generation.

One section, a discriminated union on ``kind``: ``uniform`` (a seeded shuffle per epoch, the
default), ``skip`` (GRESO), ``target`` (online difficulty filtering / AdaRFT) and
``curriculum`` (MagicVL-2B's stages of increasing complexity).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class _ScoreColumn(_Strict):
    """Which column a score source (``scores``, ``pool_scores``) reads from a scores file."""

    score_field: str = "score"
    """The column of a ``bppo data score`` file that a score source reads: ``score`` (MagicVL's
    combined S), ``text``, ``task``, ``perplexity``, ``length``, ``ttr``, ``loss_small``, ``loss_large``."""


class _Estimates(_ScoreColumn):
    """How a prompt's pass rate is estimated from its visits (shared by skip and target)."""

    pool_by: list[str] = []
    """Problem meta keys whose values pool prompts (e.g. ``[family, level]`` for the synthetic
    data, ``[level]`` for MATH): a prompt never seen takes its pool's recent pass rate, and a seen
    one is shrunk towards it. Empty: one pool, the whole training set."""
    pool_scores: str | None = None
    """A per-prompt score that cuts each ``pool_by`` pool further into ``pool_score_bins``
    equal-count quantile bins (ties kept together), so a never-seen prompt is predicted from
    prompts like it rather than from its whole family: ``meta:<key>`` or the path of a ``bppo
    data score`` output (column ``score_field``). The gold response's perplexity under the
    warm-start policy (``score_field: perplexity``) separates the groups that come back all wrong."""
    pool_score_bins: int = Field(4, ge=1)
    """Quantile bins of ``pool_scores`` per pool."""
    prior_visits: float = Field(1.0, gt=0.0)
    """Weight of the pool's pass rate in a prompt's estimate, in visits: the estimate is
    ``(prior_visits * pool + sum of the prompt's recent pass rates) / (prior_visits + recent visits)``."""
    memory: int = Field(4, ge=1)
    """A prompt's most recent visits its estimate (and skip's zero-variance record) reads."""
    pool_decay: float = Field(0.9, gt=0.0, lt=1.0)
    """A pool's pass rate is an exponential moving average over its groups (this weight on the old
    value per group): the policy learns, so old outcomes should fade."""


class UniformSched(_Strict):
    """Every prompt once per epoch, in a seeded shuffle (the order a resumed run continues)."""

    kind: Literal["uniform"] = "uniform"
    """Scheduler tag (the discriminator of ``sched``)."""


class SkipSched(_Estimates):
    """GRESO (Zheng et al. 2025): a prompt whose last ``window`` groups were all correct ("easy") or
    all wrong ("hard") is skipped before generation with probability ``1 - explore`` (one
    exploration probability per kind, adapted each step towards a target share of zero-variance
    groups, never below ``min_explore``: nothing is skipped forever). A prompt never seen is
    skipped with its pool's recent share of all-correct (easy) or all-wrong (hard) groups times
    the same ``1 - explore`` (our extension: in a short run most prompts are seen once)."""

    kind: Literal["skip"] = "skip"
    """Scheduler tag (the discriminator of ``sched``)."""
    window: int = Field(1, ge=1)
    """Consecutive zero-variance visits that mark a prompt easy or hard."""
    explore_init: float = Field(0.5, gt=0.0, le=1.0)
    """Starting probability of generating for a prompt marked easy or hard anyway."""
    min_explore: float = Field(0.05, gt=0.0, le=1.0)
    """Floor of the exploration probability."""
    explore_step: float = Field(0.05, gt=0.0, le=1.0)
    """How much each step moves an exploration probability (GRESO's Δp)."""
    target_easy: float = Field(0.125, ge=0.0, le=1.0)
    """Share of all-correct groups per step the easy exploration probability aims at."""
    target_hard: float = Field(0.125, ge=0.0, le=1.0)
    """Share of all-wrong groups per step the hard exploration probability aims at."""
    use_pool: bool = True
    """Skip never-seen prompts by their pool's prediction (off: GRESO exactly, history only)."""

    @model_validator(mode="after")
    def _floor(self) -> SkipSched:
        if self.min_explore > self.explore_init:
            raise ValueError(f"sched.min_explore={self.min_explore} is above sched.explore_init={self.explore_init}")
        return self


class TargetSched(_Estimates):
    """Online difficulty filtering / AdaRFT: each step draws prompts (without replacement) with
    weight ``max(min_weight, exp(-((p - target) / width)^2 / 2))`` of their estimated pass rate
    ``p``; a prompt drawn in the last ``cooldown_steps`` steps is not drawn again."""

    kind: Literal["target"] = "target"
    """Scheduler tag (the discriminator of ``sched``)."""
    target: float = Field(0.5, gt=0.0, lt=1.0)
    """Pass rate aimed at (0.5: a group of G most likely holds a correct and an incorrect answer)."""
    width: float = Field(0.2, gt=0.0)
    """Spread of the weight around the target, in pass rate."""
    min_weight: float = Field(0.02, gt=0.0, le=1.0)
    """Weight floor: every prompt keeps a chance, so estimates of far-off prompts can change."""
    cooldown_steps: int = Field(20, ge=0)
    """Steps before a drawn prompt can be drawn again (fresh prompts over repeats)."""


class CurriculumSched(_ScoreColumn):
    """MagicVL-2B's curriculum: prompts ranked by a complexity score and cut into ``stages``
    equal-count quantile bins; training starts on the least complex bin and moves on after
    ``stage_steps`` steps, or earlier when ``advance`` is ``plateau`` and the stage's training
    pass rate stopped improving."""

    kind: Literal["curriculum"] = "curriculum"
    """Scheduler tag (the discriminator of ``sched``)."""
    scores: str = "meta:level"
    """Where each prompt's complexity comes from: ``meta:<key>`` (a numeric meta field, e.g. the
    synthetic ``level``) or the path of a ``bppo data score`` output (``scores.jsonl``, column
    ``score_field``)."""
    stages: int = Field(3, ge=1)
    """Quantile bins of the score, trained in increasing order."""
    stage_steps: int = Field(20, ge=1)
    """Steps per stage at most; the last stage runs until the end."""
    advance: Literal["steps", "plateau"] = "steps"
    """``steps``: move on after ``stage_steps``; ``plateau``: also move on once the stage's pass rate
    (mean over ``patience`` steps) has not beaten its best by ``min_delta`` for ``patience`` steps."""
    patience: int = Field(5, ge=1)
    """Steps per window of the plateau test (it needs two windows of the stage)."""
    min_delta: float = Field(0.02, ge=0.0)
    """Improvement in pass rate that counts as still learning."""
    cumulative: bool = False
    """Keep the earlier (less complex) bins in the pool of later stages."""


SchedConfig = Annotated[UniformSched | SkipSched | TargetSched | CurriculumSched, Field(discriminator="kind")]
