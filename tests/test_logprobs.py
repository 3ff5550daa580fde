"""learner.logprobs: the chunked log-probs and their in-place backward against the plain
log-softmax, by hand and by autograd; with top-p, against vLLM's nucleus rule written out
plainly (tests/test_top_p_parity.py checks that rule against vLLM's own function and engine)."""

import math

import pytest
import torch

import learner.logprobs
from learner.logprobs import gathered_and_logsumexp, nucleus_gathered_and_logsumexp, sequence_logprobs

B, T, V, H = 3, 7, 11, 5  # B*T = 21 positions: chunks of 4 and 5 leave a remainder


def reference(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The old code path: log-softmax over the whole upcast, divided vocabulary."""
    scaled = logits.float() / temperature if logits.dtype != torch.float64 else logits / temperature
    taken = torch.log_softmax(scaled[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.cat([torch.zeros_like(taken[:, :1]), taken], dim=1)  # [B, T]


def _case(dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=generator, dtype=dtype, requires_grad=True)
    # Unit-variance logits, so log-probs stay near -ln V where fp32 resolves 1e-6.
    weight = (torch.randn(H, V, generator=generator, dtype=dtype) / math.sqrt(H)).requires_grad_()
    input_ids = torch.randint(0, V, (B, T), generator=generator)
    upstream = torch.randn(B, T, generator=generator, dtype=dtype)  # d loss / d logprobs
    return hidden, weight, input_ids, upstream


def test_by_hand_one_row_every_intermediate():
    temperature = 2.0
    # Position 0 predicts token 2 from z / T = [0, ln 3, ln 4]; position 1 predicts token 0
    # from z / T = [ln 2, ln 2, 0]; the last position predicts nothing.
    logits = torch.tensor(
        [[[0.0, 2 * math.log(3), 2 * math.log(4)], [2 * math.log(2), 2 * math.log(2), 0.0], [1.0, 2.0, 3.0]]],
        requires_grad=True,
    )
    input_ids = torch.tensor([[1, 2, 0]])
    torch.testing.assert_close(
        logits.detach()[0, :2] / temperature,
        torch.tensor([[0.0, math.log(3), math.log(4)], [math.log(2), math.log(2), 0.0]]),
    )

    gathered, logsumexp = gathered_and_logsumexp(logits.detach()[0, :2], torch.tensor([2, 0]), temperature, 1)
    torch.testing.assert_close(logsumexp, torch.tensor([math.log(1 + 3 + 4), math.log(2 + 2 + 1)]))
    torch.testing.assert_close(gathered, torch.tensor([math.log(4), math.log(2)]))

    logprobs = sequence_logprobs(logits, input_ids, temperature, chunk_tokens=2)
    # ln 4 - ln 8 = -ln 2; ln 2 - ln 5 = ln 0.4; position 0 has no context.
    torch.testing.assert_close(logprobs, torch.tensor([[0.0, -math.log(2), math.log(0.4)]]))

    logprobs.sum().backward()
    # (onehot(y) - softmax(z / T)) / T: ([0, 0, 1] - [1, 3, 4] / 8) / 2 and ([1, 0, 0] - [2, 2, 1] / 5) / 2.
    torch.testing.assert_close(
        logits.grad, torch.tensor([[[-1 / 16, -3 / 16, 1 / 4], [0.3, -0.2, -0.1], [0.0, 0.0, 0.0]]])
    )


@pytest.mark.parametrize("chunk_tokens", [1, 4, 5, 7, 21, 64, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_values_match_log_softmax_for_any_chunking(chunk_tokens, temperature):
    hidden, weight, input_ids, _ = _case()
    logits = (hidden @ weight).detach()  # [B, T, V]
    got = sequence_logprobs(logits, input_ids, temperature, chunk_tokens=chunk_tokens)
    assert got.shape == (B, T) and got.dtype == torch.float32
    assert (got[:, 0] == 0).all()
    torch.testing.assert_close(got, reference(logits, input_ids, temperature), atol=1e-6, rtol=0)


def test_bf16_logits_values_are_computed_in_fp32():
    hidden, weight, input_ids, _ = _case()
    logits = (hidden @ weight).detach().to(torch.bfloat16)  # [B, T, V]
    got = sequence_logprobs(logits, input_ids, 0.7, chunk_tokens=4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, reference(logits, input_ids, 0.7), atol=1e-6, rtol=0)


def test_gradcheck_float64():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    input_ids = torch.randint(0, 7, (2, 5), generator=generator)
    assert torch.autograd.gradcheck(lambda z: sequence_logprobs(z, input_ids, 0.6, chunk_tokens=3), (logits,))


@pytest.mark.parametrize("chunk_tokens", [1, 4, None])
def test_gradients_equal_autograd_through_log_softmax_float32(chunk_tokens):
    hidden, weight, input_ids, upstream = _case()
    grads = {}

    def capture(grad):
        grads["logits"] = grad

    logits = hidden @ weight  # [B, T, V], a model output: overwritten by its own gradient
    logits.register_hook(capture)
    (sequence_logprobs(logits, input_ids, 0.7, chunk_tokens=chunk_tokens) * upstream).sum().backward()
    # The gradient handed to the matmul is the logits' own buffer: no second [B, T, V] tensor.
    assert grads["logits"].data_ptr() == logits.data_ptr()
    got = hidden.grad.clone(), weight.grad.clone(), grads["logits"].clone()
    hidden.grad = weight.grad = None

    logits = hidden @ weight
    logits.register_hook(capture)
    (reference(logits, input_ids, 0.7) * upstream).sum().backward()
    torch.testing.assert_close(got[2], grads["logits"])
    torch.testing.assert_close(got[0], hidden.grad)
    torch.testing.assert_close(got[1], weight.grad)


def test_bf16_gradient_comes_back_in_bf16():
    hidden, weight, input_ids, upstream = _case()
    grads = {}
    logits = (hidden @ weight).to(torch.bfloat16)  # [B, T, V] bf16, as a bf16 model makes them
    logits.register_hook(lambda grad: grads.setdefault("ours", grad))
    (sequence_logprobs(logits, input_ids, 0.7, chunk_tokens=4) * upstream).sum().backward()
    assert grads["ours"].dtype == torch.bfloat16 and grads["ours"].data_ptr() == logits.data_ptr()
    ours_hidden = hidden.grad.clone()
    hidden.grad = weight.grad = None

    logits = (hidden @ weight).to(torch.bfloat16)
    logits.register_hook(lambda grad: grads.setdefault("reference", grad))
    (reference(logits, input_ids, 0.7) * upstream).sum().backward()
    assert grads["reference"].dtype == torch.bfloat16
    torch.testing.assert_close(grads["ours"], grads["reference"])
    torch.testing.assert_close(ours_hidden, hidden.grad)


def test_no_grad_path_saves_nothing_and_leaves_logits_alone():
    hidden, weight, input_ids, _ = _case()
    logits = hidden @ weight
    before = logits.detach().clone()
    with torch.no_grad():
        got = sequence_logprobs(logits, input_ids, 0.7, chunk_tokens=4)
    assert not got.requires_grad and got.grad_fn is None
    torch.testing.assert_close(got, reference(before, input_ids, 0.7), atol=1e-6, rtol=0)
    assert torch.equal(logits.detach(), before)
    # Logits that need no gradient take the same path with grad mode on.
    assert sequence_logprobs(before, input_ids, 0.7).grad_fn is None


def test_a_leaf_or_a_view_is_never_overwritten():
    hidden, weight, input_ids, upstream = _case()
    leaf = (hidden @ weight).detach().requires_grad_()
    kept = leaf.detach().clone()
    (sequence_logprobs(leaf, input_ids) * upstream).sum().backward()
    assert torch.equal(leaf.detach(), kept) and leaf.grad.data_ptr() != leaf.data_ptr()

    base = hidden @ weight
    kept = base.detach().clone()
    (sequence_logprobs(base[:, :], input_ids) * upstream).sum().backward()
    assert torch.equal(base.detach(), kept)


def test_another_backward_that_needs_the_logits_fails_loudly():
    hidden, weight, input_ids, upstream = _case()
    logits = hidden @ weight
    other = (logits**2).sum()  # saves the logits; its backward runs after ours
    loss = (sequence_logprobs(logits, input_ids) * upstream).sum() + other
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_shape_and_argument_errors():
    logits = torch.zeros(1, 3, 4)
    with pytest.raises(ValueError, match="do not match"):
        sequence_logprobs(logits, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        sequence_logprobs(logits, torch.zeros(1, 3, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        sequence_logprobs(logits, torch.zeros(1, 3, dtype=torch.long), chunk_tokens=0)


# ---- top-p ---------------------------------------------------------------------------------


def vllm_nucleus_mask(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """``[N, V]`` bool, True where vLLM drops the token: ``apply_top_k_top_p_pytorch`` step by
    step on rows of ``z / T`` (sort ascending, cumsum of the sorted softmax, drop mass
    ``<= 1 - p`` with ``p`` in fp32, keep the last position, scatter back)."""
    sorted_scaled, order = scaled.sort(dim=-1)
    dropped_sorted = sorted_scaled.softmax(dim=-1).cumsum(dim=-1) <= 1 - torch.tensor(top_p, dtype=torch.float32)
    dropped_sorted[:, -1] = False
    return torch.zeros_like(dropped_sorted).scatter(-1, order, dropped_sorted)


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
    hidden, weight, input_ids, upstream = _case()

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


@pytest.mark.gpu
def test_cuda_peak_memory_of_a_qwen_vocab_micro_batch_stays_under_one_and_a_half_fp32_logits():
    """On the GPU the allocator's own peak counter is exact: forward + backward of 4,096 tokens
    at Qwen's 151,936-token vocabulary, bf16 logits as the GPU presets make them."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from learner.logprobs import sequence_logprobs

    tokens, vocab = 4096, 151_936
    fp32_logits_bytes = tokens * vocab * 4
    generator = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(tokens, 64, device="cuda", dtype=torch.bfloat16, generator=generator, requires_grad=True)
    head = torch.randn(vocab, 64, device="cuda", dtype=torch.bfloat16, generator=generator) * 0.05
    input_ids = torch.randint(0, vocab, (1, tokens), device="cuda", generator=generator)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    logits = (hidden @ head.T).view(1, tokens, vocab)  # [1, T, V] bf16, as the model returns them
    logprobs = sequence_logprobs(logits, input_ids, temperature=0.7)
    logprobs.sum().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - baseline
    assert hidden.grad is not None and torch.isfinite(hidden.grad.float()).all()
    assert peak <= 1.5 * fp32_logits_bytes, f"{peak / 2**30:.2f} GiB > 1.5 x {fp32_logits_bytes / 2**30:.2f} GiB"


# ---- entropy (the policy/entropy metric) --------------------------------------------------


def test_entropy_by_hand_every_intermediate_and_no_gradient():
    temperature = 2.0
    # The rows of test_by_hand_one_row_every_intermediate: softmax(z / T) = [1, 3, 4] / 8 and
    # [2, 2, 1] / 5. H = -sum p ln p = logsumexp - sum p z / T:
    # ln 8 - (3/8 ln 3 + 4/8 ln 4) and ln 5 - (2/5 ln 2 + 2/5 ln 2 + 0).
    logits = torch.tensor(
        [[[0.0, 2 * math.log(3), 2 * math.log(4)], [2 * math.log(2), 2 * math.log(2), 0.0], [1.0, 2.0, 3.0]]],
        requires_grad=True,
    )
    input_ids = torch.tensor([[1, 2, 0]])
    first = math.log(8) - (3 / 8 * math.log(3) + 0.5 * math.log(4))
    second = math.log(5) - 0.8 * math.log(2)
    assert first == pytest.approx(-(1 / 8 * math.log(1 / 8) + 3 / 8 * math.log(3 / 8) + 0.5 * math.log(0.5)))
    assert second == pytest.approx(-(0.8 * math.log(0.4) + 0.2 * math.log(0.2)))
    entropy = torch.empty(2)
    gathered_and_logsumexp(logits.detach()[0, :2], torch.tensor([2, 0]), temperature, 1, entropy)
    torch.testing.assert_close(entropy, torch.tensor([first, second]))

    # In the log-probs' layout (position t: the distribution token t was drawn from), from the
    # training path and from the no-gradient path alike.
    logprobs, by_position = sequence_logprobs(logits, input_ids, temperature, chunk_tokens=2, with_entropy=True)
    torch.testing.assert_close(by_position, torch.tensor([[0.0, first, second]]))
    assert not by_position.requires_grad
    with torch.no_grad():
        _, again = sequence_logprobs(logits, input_ids, temperature, with_entropy=True)
    torch.testing.assert_close(again, by_position)
    # The entropy changes nothing about the gradient: the by-hand one of the log-probs' test.
    logprobs.sum().backward()
    torch.testing.assert_close(
        logits.grad, torch.tensor([[[-1 / 16, -3 / 16, 1 / 4], [0.3, -0.2, -0.1], [0.0, 0.0, 0.0]]])
    )


def test_top_p_entropy_is_the_nucleus_distributions_by_hand():
    # test_top_p_by_hand_every_intermediate's row 0: the nucleus {0.4, 0.3} renormalised to
    # [4/7, 3/7]; H = -(4/7 ln 4/7 + 3/7 ln 3/7). The tie case: kept 0.4 and two of three 0.2s,
    # renormalised 0.5, 0.25, 0.25 (whichever two): H = 1.5 ln 2.
    temperature, top_p = 2.0, 0.6
    probs = torch.tensor([[0.15, 0.4, 0.05, 0.3, 0.1], [0.2, 0.2, 0.4, 0.2, 1e-9]])
    logits = (temperature * probs.log()).unsqueeze(0)  # [1, 2, 5]
    _, entropy = sequence_logprobs(logits, torch.tensor([[0, 3]]), temperature, top_p=top_p, with_entropy=True)
    nucleus = -(4 / 7 * math.log(4 / 7) + 3 / 7 * math.log(3 / 7))
    torch.testing.assert_close(entropy, torch.tensor([[0.0, nucleus]]))
    tied = torch.tensor([[[0.2, 0.2, 0.4, 0.2]] * 2]).log()
    _, entropy = sequence_logprobs(tied, torch.tensor([[0, 2]]), top_p=0.7, with_entropy=True)
    torch.testing.assert_close(entropy, torch.tensor([[0.0, 1.5 * math.log(2)]]))


@pytest.mark.parametrize("chunk_tokens", [1, 4, 21, None])
@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.5])
def test_entropy_matches_the_plain_formula_for_any_chunking(chunk_tokens, top_p):
    generator = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(B, T, 50, generator=generator)  # [B, T, V]
    input_ids = torch.randint(0, 50, (B, T), generator=generator)
    scaled = logits[:, :-1] / 0.7
    if top_p < 1:
        scaled = scaled.masked_fill(vllm_nucleus_mask(scaled.reshape(-1, 50), top_p).view(scaled.shape), float("-inf"))
    p = scaled.softmax(dim=-1)
    plain = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(dim=-1)  # [B, T-1]
    _, entropy = sequence_logprobs(
        logits.requires_grad_(), input_ids, 0.7, top_p=top_p, chunk_tokens=chunk_tokens, with_entropy=True
    )
    assert (entropy[:, 0] == 0).all() and torch.isfinite(entropy).all()
    torch.testing.assert_close(entropy[:, 1:], plain, rtol=1e-5, atol=1e-5)
    if top_p < 1:  # not vacuous: the nucleus changed the entropy (the full softmax's is another number)
        full_p = (logits.detach()[:, :-1] / 0.7).softmax(dim=-1)
        full = -(full_p * full_p.log()).sum(dim=-1)
        assert (entropy[:, 1:] < full - 1e-3).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_banned_tokens_are_out_of_the_distribution_by_hand(dtype, top_p):
    """ban_tokens: a VLM's vision tokens (never sampled: vLLM's bad_words) leave the distribution
    the learner computes. Row of 4 equal logits and token 3 banned: the other three have
    p = 1/3 each, so log p(y) = -ln 3, the entropy is ln 3 (not nan), and the banned column gets
    no gradient; at T = 0.5 the same (equal logits stay equal)."""
    from learner.logprobs import ban_tokens

    for temperature in (1.0, 0.5):
        base = torch.zeros(1, 2, 4, dtype=dtype, requires_grad=True)
        logits = base * 1.0  # a non-leaf, as a model's output is
        ban_tokens(logits, torch.tensor([3]))
        input_ids = torch.tensor([[0, 1]])
        logprobs, entropy = sequence_logprobs(logits, input_ids, temperature, top_p=top_p, with_entropy=True)
        # p = 1/3 over the three kept tokens; top-p 0.9 keeps all three (2/3 < 0.9 of the mass with two)
        assert logprobs[0, 1].item() == pytest.approx(-math.log(3), abs=1e-6)
        assert entropy[0, 1].item() == pytest.approx(math.log(3), abs=1e-6)
        assert torch.isfinite(entropy).all()
        logprobs[0, 1].backward()
        # d log p(1) / d z at position 0 = (onehot(1) - p) / T: (-1/3, 2/3, -1/3, 0) / T
        expected = torch.tensor([-1 / 3, 2 / 3, -1 / 3, 0.0]) / temperature
        torch.testing.assert_close(
            base.grad[0, 0].float(), expected, atol=1e-2 if dtype != torch.float32 else 1e-6, rtol=0
        )
        assert base.grad[0, 0, 3].item() == 0.0  # the banned column: no gradient at all
