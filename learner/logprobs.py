"""Token log-probs from a causal LM's logits, in the ``TrainBatch`` layout. Pure torch.

Memory is the point of this module. With Qwen's 151,936-token vocabulary one fp32
``[tokens x vocab]`` tensor is 2.5 GB at 4,096 tokens, and a plain
``log_softmax(logits.float() / T)`` makes several of them (the upcast, the division, the
log-softmax, then as many again in backward). Here no tensor of that size is made beyond
the model's own logits:

- forward: ``log p(y) = z_y / T - logsumexp(z / T)``, computed a chunk of tokens at a time;
  only the chunk is upcast to fp32. Saved for backward: the logits themselves (no copy)
  and one logsumexp per token.
- backward: ``d log p(y) / d z = (onehot(y) - softmax(z / T)) / T``, recomputed per chunk
  from the saved logits and logsumexp and written into the logits' own buffer, chunk by
  chunk, which is then returned as their gradient (Liger-Kernel's trick). Nothing else
  needs the logits by then: the ``Linear`` that made them reads its input and weight in
  backward, not its output. Should something else have saved them after all, autograd's
  version counter makes its backward fail loudly instead of reading overwritten values.
  A leaf or a view is never overwritten (the caller's data); it gets a fresh buffer.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Elements of one fp32 chunk (256 MB): ~440 tokens at a 151,936-token vocabulary. A few of
# these alive at once stay well under one [4,096 x vocab] tensor, and a chunk is still
# large enough to keep an accelerator busy.
CHUNK_ELEMENTS = 2**26


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    temperature: float = 1.0,
    *,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """``[B, T]``: position t holds ``log p(input_ids[t] | input_ids[:t])`` under
    ``softmax(logits / temperature)``; position 0 holds 0. fp32 (fp64 for fp64 logits).

    ``logits`` is ``[B, T, V]`` (any float dtype, as the model made them) from one forward
    pass over ``input_ids`` ``[B, T]``. ``chunk_tokens``: tokens per fp32 chunk (default:
    ``CHUNK_ELEMENTS // V``). When ``logits`` carry a gradient and are neither a leaf nor
    a view, backward overwrites them with their gradient (see the module docstring).
    """
    if logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    chunk = chunk_tokens if chunk_tokens is not None else max(1, CHUNK_ELEMENTS // logits.shape[-1])
    if chunk < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if torch.is_grad_enabled() and logits.requires_grad:
        overwrite = logits.grad_fn is not None and logits._base is None
        return _SequenceLogprobs.apply(logits, input_ids, float(temperature), chunk, overwrite)
    # No gradient wanted (old / reference log-probs): the same chunks, nothing saved.
    targets = _next_tokens(input_ids).reshape(-1)  # [B*T]
    gathered, logsumexp = gathered_and_logsumexp(
        logits.reshape(-1, logits.shape[-1]), targets, float(temperature), chunk
    )
    return _to_layout(gathered - logsumexp, input_ids.shape)


def gathered_and_logsumexp(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, chunk_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits`` ``[N, V]``, ``targets`` ``[N]`` -> ``(z_target / T, logsumexp(z / T))``,
    each ``[N]`` fp32 (fp64 for fp64 logits); their difference is the target's log-prob.
    One fp32 chunk of ``chunk_tokens`` rows (and logsumexp's one temporary of that size)
    alive at a time."""
    gathered = torch.empty(logits.shape[0], dtype=_compute_dtype(logits), device=logits.device)  # [N]
    logsumexp = torch.empty_like(gathered)  # [N]
    for start in range(0, logits.shape[0], chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        scaled = _scaled(logits[rows], temperature)  # [C, V] fp32 (fp64 for fp64)
        torch.logsumexp(scaled, dim=-1, out=logsumexp[rows])
        gathered[rows] = scaled.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)
    return gathered, logsumexp


class _SequenceLogprobs(torch.autograd.Function):
    """``sequence_logprobs`` with the chunked, in-place backward of the module docstring."""

    @staticmethod
    def forward(ctx, logits, input_ids, temperature, chunk_tokens, overwrite):
        batch, length, vocab = logits.shape
        flat_logits = logits.contiguous()  # a copy only if not contiguous: then ours to overwrite
        targets = _next_tokens(input_ids).reshape(-1)  # [B*T]
        gathered, logsumexp = gathered_and_logsumexp(
            flat_logits.view(-1, vocab), targets, temperature, chunk_tokens
        )
        ctx.save_for_backward(flat_logits, targets, logsumexp)
        ctx.temperature, ctx.chunk_tokens = temperature, chunk_tokens
        ctx.overwrite = overwrite or flat_logits is not logits
        return _to_layout(gathered - logsumexp, (batch, length))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logprobs):
        logits, targets, logsumexp = ctx.saved_tensors
        batch, length, vocab = logits.shape
        # Logits at (b, t) made logprobs[b, t + 1]; the last position's made nothing.
        upstream = torch.cat([grad_logprobs[:, 1:], torch.zeros_like(grad_logprobs[:, :1])], dim=1)
        scale = (upstream.to(logsumexp.dtype) / ctx.temperature).reshape(-1, 1)  # [B*T, 1]
        flat_logits = logits.view(-1, vocab)  # [B*T, V]
        grad_logits = flat_logits if ctx.overwrite else torch.empty_like(flat_logits)  # [B*T, V]
        for start in range(0, flat_logits.shape[0], ctx.chunk_tokens):
            rows = slice(start, start + ctx.chunk_tokens)
            # (onehot(y) - softmax(z / T)) * upstream / T, built in the one fp32 chunk.
            grad = _scaled(flat_logits[rows], ctx.temperature)  # [C, V] fp32 (fp64 for fp64)
            grad.sub_(logsumexp[rows].unsqueeze(-1)).exp_().mul_(-scale[rows])
            grad.scatter_add_(-1, targets[rows].unsqueeze(-1), scale[rows])
            grad_logits[rows] = grad  # cast to the logits' dtype
        # Exactly 0 there even where those logits are not finite (0 * nan would be nan).
        grad_logits.view(batch, length, vocab)[:, -1].zero_()
        return grad_logits.view(batch, length, vocab), None, None, None, None


def _scaled(chunk: torch.Tensor, temperature: float) -> torch.Tensor:
    """A copy of ``chunk`` in ``_compute_dtype`` divided by ``temperature``; a copy even if
    ``chunk`` already has that dtype, so the in-place division never touches the logits."""
    scaled = chunk.to(_compute_dtype(chunk), copy=True)
    if temperature != 1.0:
        scaled.div_(temperature)
    return scaled


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """fp32 for bf16 / fp16 / fp32 logits; fp64 stays fp64 (gradcheck)."""
    return torch.promote_types(logits.dtype, torch.float32)


def _next_tokens(input_ids: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: the token each position predicts, ``input_ids[:, t + 1]``; the last
    position predicts nothing and gets token 0, a placeholder whose value is dropped."""
    return torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)


def _to_layout(per_position: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Per-position values ``[B*T]`` (position t predicting t + 1) -> ``[B, T]`` log-probs of
    the tokens themselves: shifted right by one, 0 at position 0."""
    predicted = per_position.view(shape)  # [B, T]
    return torch.cat([torch.zeros_like(predicted[:, :1]), predicted[:, :-1]], dim=1)  # [B, T]
