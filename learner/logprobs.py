"""Token log-probs from a causal LM's logits, in the ``TrainBatch`` layout. Pure torch."""

from __future__ import annotations

import torch


def sequence_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: position t holds ``log p(input_ids[t] | input_ids[:t])``; position 0 holds 0.

    ``logits`` is ``[B, T, V]`` from one forward pass over ``input_ids`` ``[B, T]``.
    """
    if logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}")
    # Log-softmax of the predictions for tokens 1..T-1, gathered at the tokens that came.
    predicted = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    taken = predicted.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    return torch.cat([torch.zeros_like(taken[:, :1]), taken], dim=1)  # [B, T]
