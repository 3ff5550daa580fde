"""learner.logprobs: the chunked log-probs and their in-place backward against the plain
log-softmax, by hand and by autograd; the entropy metric; banned tokens. Top-p against vLLM's
nucleus rule: tests/test_logprobs_top_p.py."""

import math

import pytest
import torch

from learner.logprobs import gathered_and_logsumexp, sequence_logprobs
from tests.logprob_cases import B, T, random_case, reference, vllm_nucleus_mask


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
    hidden, weight, input_ids, _ = random_case()
    logits = (hidden @ weight).detach()  # [B, T, V]
    got = sequence_logprobs(logits, input_ids, temperature, chunk_tokens=chunk_tokens)
    assert got.shape == (B, T) and got.dtype == torch.float32
    assert (got[:, 0] == 0).all()
    torch.testing.assert_close(got, reference(logits, input_ids, temperature), atol=1e-6, rtol=0)


def test_bf16_logits_values_are_computed_in_fp32():
    hidden, weight, input_ids, _ = random_case()
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
    hidden, weight, input_ids, upstream = random_case()
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
    hidden, weight, input_ids, upstream = random_case()
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
    hidden, weight, input_ids, _ = random_case()
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
    hidden, weight, input_ids, upstream = random_case()
    leaf = (hidden @ weight).detach().requires_grad_()
    kept = leaf.detach().clone()
    (sequence_logprobs(leaf, input_ids) * upstream).sum().backward()
    assert torch.equal(leaf.detach(), kept) and leaf.grad.data_ptr() != leaf.data_ptr()

    base = hidden @ weight
    kept = base.detach().clone()
    (sequence_logprobs(base[:, :], input_ids) * upstream).sum().backward()
    assert torch.equal(base.detach(), kept)


def test_another_backward_that_needs_the_logits_fails_loudly():
    hidden, weight, input_ids, upstream = random_case()
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
