"""The data that crosses from rollout to learner, and its padded tensor layout. Pure torch.

Layout of a ``TrainBatch`` (every tensor ``[B, T]``): each row is ``prompt + response``,
right-padded. Position t of a log-prob tensor holds ``log p(input_ids[t] | input_ids[:t])``
(position 0, having no context, holds 0), so ``loss_mask`` and every log-prob tensor
line up with ``input_ids`` column by column and can be sliced together.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class RowImages:
    """The images of one row's prompt, as a Qwen2-VL-style processor gives them: their patches
    ``[num_patches, channels x temporal x patch x patch]`` and each image's ``(t, h, w)`` patch
    grid ``[num_images, 3]``; the row's prompt holds one image token per merged patch."""

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor


@dataclass
class RolloutGroups:
    """G completions for each of ``num_groups`` prompts, with their rewards."""

    prompt_ids: list[list[int]]  # [num_groups][prompt_len]
    response_ids: list[list[list[int]]]  # [num_groups][G][response_len]
    rewards: torch.Tensor  # [num_groups, G] float: the reward advantages are computed from
    correct: torch.Tensor  # [num_groups, G] bool: the verifier's verdict (BPPO's pair is defined by it)
    # Per-token log-probs the engine sampled with, same nesting as response_ids; used when
    # old log-probs are taken from the engine instead of recomputed on the learner.
    response_logprobs: list[list[list[float]]] | None = None
    # [num_groups, G] bool, or None when every completion finished. False marks a completion
    # that ``rollout.early_stop_groups`` aborted: it has no reward and is never trained on.
    finished: torch.Tensor | None = None
    # Per group, its prompt's images (a vision-language policy; prompt_ids then hold one image
    # token per merged patch, as expand_image_pads makes them); None: text only.
    images: list[RowImages | None] | None = None
    # [num_groups] float: each prompt's pass-rate estimate from before this visit (the
    # scheduler's), for BPPO's algo.aborted_advantage: pass_rate; None: not known
    pass_rate_prior: torch.Tensor | None = None

    def __post_init__(self) -> None:
        num_groups = len(self.prompt_ids)
        if self.pass_rate_prior is not None and tuple(self.pass_rate_prior.shape) != (num_groups,):
            raise ValueError(f"pass_rate_prior must be [{num_groups}], got {list(self.pass_rate_prior.shape)}")
        if self.images is not None and len(self.images) != num_groups:
            raise ValueError(f"{len(self.images)} image entries for {num_groups} prompts")
        if len(self.response_ids) != num_groups:
            raise ValueError(f"{len(self.response_ids)} response groups for {num_groups} prompts")
        sizes = {len(g) for g in self.response_ids}
        if len(sizes) > 1:
            raise ValueError(f"every group needs the same G, got group sizes {sorted(sizes)}")
        shape = (num_groups, sizes.pop() if sizes else self.rewards.shape[-1])  # no groups: G from the rewards
        for name in ("rewards", "correct", "finished"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(value.shape)}")

    @property
    def group_size(self) -> int:
        return self.rewards.shape[1]

    def pass_rates(self) -> list[float | None]:
        """Per group: the share of its finished completions the verifier judged correct (None when
        none finished)."""
        finished = torch.ones_like(self.correct) if self.finished is None else self.finished
        counts = finished.sum(dim=1)
        hits = (self.correct & finished).sum(dim=1)
        return [None if int(n) == 0 else int(h) / int(n) for h, n in zip(hits, counts)]

    def response_lengths(self) -> torch.Tensor:
        """``[num_groups, G]`` long."""
        return torch.tensor([[len(r) for r in group] for group in self.response_ids], dtype=torch.long).view(
            self.rewards.shape
        )


def expand_image_pads(prompt: list[int], pad_id: int, tokens_per_image: list[int]) -> list[int]:
    """``prompt`` with its k-th ``pad_id`` repeated ``tokens_per_image[k]`` times: the prompt the
    engine sampled from (vLLM expands each pad itself) as the learner's forward sees it."""
    pads = prompt.count(pad_id)
    if pads != len(tokens_per_image):
        raise ValueError(f"the prompt holds {pads} image pad tokens for {len(tokens_per_image)} images")
    expanded, image = [], 0
    for token in prompt:
        if token == pad_id:
            expanded += [pad_id] * tokens_per_image[image]
            image += 1
        else:
            expanded.append(token)
    return expanded


@dataclass
class TrainBatch:
    """Rows the learner trains on; see the module docstring for the layout."""

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, 1 on prompt + response tokens
    loss_mask: torch.Tensor  # [B, T] float, 1 on the response tokens that are trained
    advantages: torch.Tensor  # [B] float
    group_index: torch.Tensor  # [B] long: the prompt group each row came from
    old_logprobs: torch.Tensor | None = None  # [B, T], from the engine or the learner
    ref_logprobs: torch.Tensor | None = None  # [B, T], from the frozen reference
    # [B, T], the engine's, when they differ from the old policy's (trainer.mode async: sampled
    # with weights one or more updates behind): the loss then weights each token by the
    # truncated importance ratio old / behaviour (learner.losses.truncated_importance_weights)
    behavior_logprobs: torch.Tensor | None = None
    # one entry per row (None: a text-only prompt) for a vision-language policy; None: no images
    images: list[RowImages | None] | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)

    def image_inputs(self) -> dict[str, torch.Tensor]:
        """The rows' images as one forward takes them (rows in order, each row's images in
        order: the model fills the image tokens of the flattened batch in that order); empty
        without images."""
        rows = [images for images in (self.images or []) if images is not None]
        if not rows:
            return {}
        return {
            "pixel_values": torch.cat([r.pixel_values for r in rows]),
            "image_grid_thw": torch.cat([r.image_grid_thw for r in rows]),
        }

    @property
    def num_tokens(self) -> int:
        """Tokens the forward passes see (prompt + response, padding excluded)."""
        return int(self.attention_mask.sum())

    def select(self, rows: list[int]) -> TrainBatch:
        """The given rows, cut to the longest of them. No rows gives one inert row (a single
        attended pad token, nothing trained): a data-parallel rank with no work still has to
        join every collective of the step."""
        if not rows:
            inert = replace(self, images=None).truncate(1).select([0]) if self.input_ids.shape[0] else None
            if inert is None:
                raise ValueError("cannot select from an empty batch")
            inert.loss_mask = torch.zeros_like(inert.loss_mask)
            inert.advantages = torch.zeros_like(inert.advantages)
            return inert
        index = torch.tensor(rows, dtype=torch.long)
        images = None if self.images is None else [self.images[row] for row in rows]
        chosen = self._map(_PER_ROW, lambda t: t[index], metrics={}, images=images)
        return chosen.truncate(max(1, int(chosen.attention_mask.sum(dim=-1).max())))

    def truncate(self, columns: int) -> TrainBatch:
        """Keep the first ``columns`` positions of every ``[B, T]`` tensor."""
        return self._map(_PER_TOKEN, lambda t: t[:, :columns].contiguous())

    def _map(self, names: tuple[str, ...], fn, **changes) -> TrainBatch:
        """A copy with ``fn`` applied to each named tensor that is set."""
        mapped = {name: None if getattr(self, name) is None else fn(getattr(self, name)) for name in names}
        return replace(self, **mapped, **changes)


_PER_TOKEN = ("input_ids", "attention_mask", "loss_mask", "old_logprobs", "ref_logprobs", "behavior_logprobs")  # [B, T]
_PER_ROW = _PER_TOKEN + ("advantages", "group_index")  # everything indexed by row first


def pad_rows(
    prompts: list[list[int]],
    responses: list[list[int]],
    *,
    pad_id: int,
    response_logprobs: list[list[float]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Right-pad ``prompt + response`` rows.

    Returns ``input_ids`` [B, T] long, ``attention_mask`` [B, T] long, ``response_mask``
    [B, T] float and, when given, the response log-probs placed at their response
    columns (0 elsewhere) as ``[B, T]`` float.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    width = max((len(p) + len(r) for p, r in zip(prompts, responses)), default=0)
    rows = len(prompts)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)
    response_mask = torch.zeros((rows, width), dtype=torch.float32)
    logprobs = None if response_logprobs is None else torch.zeros((rows, width), dtype=torch.float32)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        start, end = len(prompt), len(prompt) + len(response)
        input_ids[row, :end] = torch.tensor(prompt + response, dtype=torch.long)
        attention_mask[row, :end] = 1
        response_mask[row, start:end] = 1.0
        if logprobs is not None:
            values = response_logprobs[row]
            if len(values) != len(response):
                raise ValueError(f"row {row}: {len(values)} log-probs for {len(response)} response tokens")
            logprobs[row, start:end] = torch.tensor(values, dtype=torch.float32)
    return input_ids, attention_mask, response_mask, logprobs
