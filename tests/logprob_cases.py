"""Shared by the log-prob tests (tests/test_logprobs.py, tests/test_logprobs_top_p.py): a small
random case, the plain log-softmax they are checked against, and vLLM's top-p rule written out."""

import math

import torch

B, T, V, H = 3, 7, 11, 5  # B*T = 21 positions: chunks of 4 and 5 leave a remainder


def reference(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The old code path: log-softmax over the whole upcast, divided vocabulary."""
    scaled = logits.float() / temperature if logits.dtype != torch.float64 else logits / temperature
    taken = torch.log_softmax(scaled[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.cat([torch.zeros_like(taken[:, :1]), taken], dim=1)  # [B, T]


def random_case(dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=generator, dtype=dtype, requires_grad=True)
    # Unit-variance logits, so log-probs stay near -ln V where fp32 resolves 1e-6.
    weight = (torch.randn(H, V, generator=generator, dtype=dtype) / math.sqrt(H)).requires_grad_()
    input_ids = torch.randint(0, V, (B, T), generator=generator)
    upstream = torch.randn(B, T, generator=generator, dtype=dtype)  # d loss / d logprobs
    return hidden, weight, input_ids, upstream


def vllm_nucleus_mask(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """``[N, V]`` bool, True where vLLM drops the token: ``apply_top_k_top_p_pytorch`` step by
    step on rows of ``z / T`` (sort ascending, cumsum of the sorted softmax, drop mass
    ``<= 1 - p`` with ``p`` in fp32, keep the last position, scatter back)."""
    sorted_scaled, order = scaled.sort(dim=-1)
    dropped_sorted = sorted_scaled.softmax(dim=-1).cumsum(dim=-1) <= 1 - torch.tensor(top_p, dtype=torch.float32)
    dropped_sorted[:, -1] = False
    return torch.zeros_like(dropped_sorted).scatter(-1, order, dropped_sorted)
