"""learner.logprobs with top-p: against vLLM's nucleus rule written out plainly
(tests/test_top_p_parity.py checks that rule against vLLM's own function and engine)."""

import math

import pytest
import torch

import learner.logprobs
from learner.logprobs import nucleus_gathered_and_logsumexp, sequence_logprobs
from tests.logprob_cases import B, H, T, random_case, vllm_nucleus_mask


def nucleus_reference(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float, top_p: float):
    """``(ours, vllms)``, each ``[B, T]``: ``z_y / T - logsumexp`` over vLLM's nucleus, and vLLM's
    processed log-prob (``log_softmax`` of the masked logits: ``-inf`` outside the nucleus).
    Differentiable in ``logits`` (the mask is a constant)."""
    scaled = (logits.float() if logits.dtype != torch.float64 else logits)[:, :-1] / temperature  # [B, T-1, V]
    mask = vllm_nucleus_mask(scaled.detach().reshape(-1, scaled.shape[-1]), top_p).view(scaled.shape)
    masked = scaled.masked_fill(mask, float("-inf"))
    targets = input_ids[:, 1:].unsqueeze(-1)
    ours = scaled.gather(-1, targets).squeeze(-1) - torch.logsumexp(masked, dim=-1)
    vllms = torch.log_softmax(masked, dim=-1).gather(-1, targets).squeeze(-1)
    pad = torch.zeros_like(ours[:, :1])
    return torch.cat([pad, ours], dim=1), torch.cat([pad, vllms], dim=1)


def test_top_p_by_hand_every_intermediate():
    temperature, top_p = 2.0, 0.6
    # Rows of softmax(z / T), with z = T ln(probs). Row 0, sorted ascending: 0.05 0.1 0.15 0.3 0.4,
    # cumulative 0.05 0.15 0.3 0.6 1.0; 1 - p = 0.4 drops the first three. Nucleus {1 (0.4),
    # 3 (0.3)}, mass 0.7, tau = ln 0.3. Row 1: the same probabilities in another order, nucleus
    # {0 (0.4), 1 (0.3)}. Position 0 predicts token 3 (inside), position 1 token 2 (0.15, outside).
    probs = torch.tensor([[0.15, 0.4, 0.05, 0.3, 0.1], [0.4, 0.3, 0.15, 0.1, 0.05], [0.2] * 5])
    logits = (temperature * probs.log()).unsqueeze(0).requires_grad_()  # [1, 3, 5]
    input_ids = torch.tensor([[0, 3, 2]])
    scaled = logits.detach()[0, :2] / temperature
    sorted_scaled = scaled.sort(dim=-1).values
    torch.testing.assert_close(sorted_scaled.exp(), torch.tensor([[0.05, 0.1, 0.15, 0.3, 0.4]] * 2))
    cumulative = sorted_scaled.softmax(dim=-1).cumsum(dim=-1)
    torch.testing.assert_close(cumulative, torch.tensor([[0.05, 0.15, 0.3, 0.6, 1.0]] * 2))
    assert (cumulative <= 1 - top_p).sum(dim=-1).tolist() == [3, 3]
    assert vllm_nucleus_mask(scaled, top_p).tolist() == [
        [True, False, True, False, True],
        [False, False, True, True, True],
    ]

    gathered, logsumexp, floor, floor_share = nucleus_gathered_and_logsumexp(
        logits.detach()[0, :2], torch.tensor([3, 2]), temperature, top_p, 1
    )
    torch.testing.assert_close(floor, torch.tensor([math.log(0.3)] * 2))  # tau: the smallest kept z / T
    assert floor_share.tolist() == [1.0, 1.0]  # no ties
    torch.testing.assert_close(logsumexp, torch.tensor([math.log(0.7)] * 2))
    torch.testing.assert_close(gathered, torch.tensor([math.log(0.3), math.log(0.15)]))

    logprobs = sequence_logprobs(logits, input_ids, temperature, top_p=top_p, chunk_tokens=2)
    # ln(0.3 / 0.7) as vLLM reports it; the outside token keeps its own weight: ln(0.15 / 0.7),
    # finite, where vLLM's nucleus would give -inf (it never samples it).
    torch.testing.assert_close(logprobs, torch.tensor([[0.0, math.log(3 / 7), math.log(3 / 14)]]))
    # The full softmax gives other numbers: the bug this argument fixes.
    torch.testing.assert_close(
        sequence_logprobs(logits.detach(), input_ids, temperature), torch.tensor([[0.0, math.log(0.3), math.log(0.15)]])
    )

    logprobs.sum().backward()
    # (onehot(y) - softmax_nucleus(z / T)) / T, softmax_nucleus 0 outside: row 0 ([0, 0, 0, 1, 0] -
    # [0, 4, 0, 3, 0] / 7) / 2; row 1 ([0, 0, 1, 0, 0] - [4, 3, 0, 0, 0] / 7) / 2; the last row 0.
    torch.testing.assert_close(
        logits.grad,
        torch.tensor([[[0.0, -2 / 7, 0.0, 2 / 7, 0.0], [-2 / 7, -3 / 14, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]]),
    )


def test_top_p_tie_at_the_boundary_by_hand():
    # Probabilities 0.2 0.2 0.4 0.2, p = 0.7: sorted 0.2 0.2 0.2 0.4, cumulative 0.2 0.4 0.6 1.0,
    # 1 - p = 0.3 drops the first position only. vLLM keeps two of the three tokens tied at
    # tau = ln 0.2 (which two, its unstable sort decides) and 0.4: mass 0.8, whichever two.
    probs = torch.tensor([[0.2, 0.2, 0.4, 0.2]] * 3)
    logits = probs.log().unsqueeze(0).requires_grad_()  # [1, 3, 4], T = 1
    input_ids = torch.tensor([[1, 2, 0]])  # position 0 predicts the 0.4 token, position 1 a tied one
    gathered, logsumexp, floor, floor_share = nucleus_gathered_and_logsumexp(
        logits.detach()[0, :2], torch.tensor([2, 0]), 1.0, 0.7, 2
    )
    torch.testing.assert_close(floor, torch.tensor([math.log(0.2)] * 2))
    torch.testing.assert_close(floor_share, torch.tensor([2 / 3] * 2))  # 2 of the 3 tied tokens
    torch.testing.assert_close(logsumexp, torch.tensor([math.log(0.8)] * 2))
    logprobs = sequence_logprobs(logits, input_ids, top_p=0.7)
    torch.testing.assert_close(logprobs, torch.tensor([[0.0, math.log(0.5), math.log(0.25)]]))
    torch.testing.assert_close(logprobs[:, :2], nucleus_reference(logits.detach(), input_ids, 1.0, 0.7)[1][:, :2])
    logprobs.sum().backward()
    # softmax_nucleus: 0.5 for the 0.4 token, 2/3 x 0.25 = 1/6 for each tied token (its share of
    # the two kept), summing to 1: row 0 [0, 0, 1, 0] - that, row 1 [1, 0, 0, 0] - that.
    torch.testing.assert_close(
        logits.grad,
        torch.tensor([[[-1 / 6, -1 / 6, 0.5, -1 / 6], [5 / 6, -1 / 6, -0.5, -1 / 6], [0.0, 0.0, 0.0, 0.0]]]),
    )


def test_top_p_keeps_at_least_one_token():
    # fp32(1 - 1e-8) == 1: every cumulative mass is <= 1 - p, and vLLM still keeps the last
    # (largest) position. Only the argmax is left: its log-prob is 0, another target's is z_y - z_max.
    logits = torch.tensor([[[0.0, 2.0, 1.0], [0.0, 0.0, 0.0]]])
    assert 1 - torch.tensor(1e-8, dtype=torch.float32) == 1
    logprobs = sequence_logprobs(logits, torch.tensor([[0, 1]]), top_p=1e-8)
    torch.testing.assert_close(logprobs, torch.tensor([[0.0, 0.0]]))
    logprobs = sequence_logprobs(logits, torch.tensor([[0, 2]]), top_p=1e-8)
    torch.testing.assert_close(logprobs, torch.tensor([[0.0, -1.0]]))


@pytest.mark.parametrize("chunk_tokens", [1, 4, 5, 21, 64, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
@pytest.mark.parametrize("top_p", [0.9, 0.5])
def test_top_p_values_match_vllms_rule_for_any_chunking(chunk_tokens, temperature, top_p):
    generator = torch.Generator().manual_seed(2)
    logits = 2 * torch.randn(B, T, 50, generator=generator)  # [B, T, V=50]: peaked enough for a real nucleus
    input_ids = torch.randint(0, 50, (B, T), generator=generator)
    ours, vllms = nucleus_reference(logits, input_ids, temperature, top_p)
    inside = torch.isfinite(vllms)
    # Not vacuous: targets on both sides of the boundary, and nuclei smaller than the vocabulary.
    assert inside[:, 1:].any() and not inside[:, 1:].all()
    assert vllm_nucleus_mask(logits.view(-1, 50) / temperature, top_p).any(dim=-1).all()
    torch.testing.assert_close(ours[inside], vllms[inside])  # the reference is vLLM's value where vLLM has one

    got = sequence_logprobs(logits, input_ids, temperature, top_p=top_p, chunk_tokens=chunk_tokens)
    assert got.shape == (B, T) and got.dtype == torch.float32 and (got[:, 0] == 0).all()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ours, atol=1e-6, rtol=0)
    # Outside the nucleus the value stays below every kept token's log-prob.
    assert (got[~inside] < torch.log_softmax(torch.zeros(1), 0)).all()


def test_top_p_bf16_logits_are_computed_in_fp32():
    generator = torch.Generator().manual_seed(3)
    logits = (2 * torch.randn(B, T, 50, generator=generator)).to(torch.bfloat16)
    input_ids = torch.randint(0, 50, (B, T), generator=generator)
    got = sequence_logprobs(logits, input_ids, 0.7, top_p=0.8, chunk_tokens=4)
    assert got.dtype == torch.float32
    # bf16 logits tie often: here on some boundary, where vLLM keeps only part of the tied tokens.
    _, _, _, floor_share = nucleus_gathered_and_logsumexp(logits.view(-1, 50), input_ids.view(-1), 0.7, 0.8, 4)
    assert (floor_share < 1).any()
    torch.testing.assert_close(got, nucleus_reference(logits, input_ids, 0.7, 0.8)[0], atol=1e-6, rtol=0)


def test_top_p_gradcheck_float64():
    temperature, top_p = 0.6, 0.8
    generator = torch.Generator().manual_seed(1)
    logits = 2 * torch.randn(2, 5, 7, generator=generator, dtype=torch.float64)
    input_ids = torch.randint(0, 7, (2, 5), generator=generator)
    # Finite differences (eps 1e-6) must not move a token across the boundary: every row's
    # cumulative masses stay well away from 1 - p, and the nucleus is a proper subset.
    cumulative = (logits / temperature).sort(dim=-1).values.softmax(dim=-1).cumsum(dim=-1)
    assert (cumulative - (1 - torch.tensor(top_p, dtype=torch.float32).double())).abs().min() > 1e-3
    mask = vllm_nucleus_mask(logits.view(-1, 7)[:-1] / temperature, top_p)
    assert mask.any() and (~mask).sum(dim=-1).gt(1).any()
    logits.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z: sequence_logprobs(z, input_ids, temperature, top_p=top_p, chunk_tokens=3), (logits,)
    )


@pytest.mark.parametrize("chunk_tokens", [1, 4, None])
def test_top_p_gradients_equal_autograd_through_the_reference_float32(chunk_tokens):
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(B, T, H, generator=generator, requires_grad=True)
    weight = (3 * torch.randn(H, 50, generator=generator) / math.sqrt(H)).requires_grad_()
    input_ids = torch.randint(0, 50, (B, T), generator=generator)
    upstream = torch.randn(B, T, generator=generator)
    grads = {}

    logits = hidden @ weight  # [B, T, V]: overwritten by its own gradient
    logits.register_hook(lambda grad: grads.__setitem__("ours", grad))
    (sequence_logprobs(logits, input_ids, 0.7, top_p=0.85, chunk_tokens=chunk_tokens) * upstream).sum().backward()
    assert grads["ours"].data_ptr() == logits.data_ptr()
    ours = hidden.grad.clone(), weight.grad.clone(), grads["ours"].clone()
    hidden.grad = weight.grad = None

    logits = hidden @ weight
    logits.register_hook(lambda grad: grads.__setitem__("reference", grad))
    (nucleus_reference(logits, input_ids, 0.7, 0.85)[0] * upstream).sum().backward()
    outside = vllm_nucleus_mask(logits.detach()[:, :-1].reshape(-1, 50) / 0.7, 0.85)
    assert outside.any()  # not vacuous: some gradients are 0 only because of the nucleus
    torch.testing.assert_close(ours[2], grads["reference"])
    torch.testing.assert_close(ours[0], hidden.grad)
    torch.testing.assert_close(ours[1], weight.grad)


def test_top_p_one_is_the_old_path_bit_for_bit(monkeypatch):
    hidden, weight, input_ids, upstream = random_case()

    def forbidden(*args, **kwargs):
        raise AssertionError("top_p=1 must not sort")

    monkeypatch.setattr(learner.logprobs, "nucleus_gathered_and_logsumexp", forbidden)
    logits = (hidden @ weight).detach()
    assert torch.equal(
        sequence_logprobs(logits, input_ids, 0.7, top_p=1.0, chunk_tokens=4),
        sequence_logprobs(logits, input_ids, 0.7, chunk_tokens=4),
    )
    grads = []
    for kwargs in ({"top_p": 1.0}, {}):
        logits = hidden @ weight
        logits.register_hook(grads.append)
        (sequence_logprobs(logits, input_ids, 0.7, chunk_tokens=4, **kwargs) * upstream).sum().backward()
    assert torch.equal(grads[0], grads[1])


def test_top_p_argument_errors():
    logits, input_ids = torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            sequence_logprobs(logits, input_ids, top_p=bad)
