"""learner.logprobs: the chunked log-probs and their in-place backward against the plain
log-softmax, by hand and by autograd."""

import math

import pytest
import torch

from learner.logprobs import gathered_and_logsumexp, sequence_logprobs

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
    logits = torch.tensor([[[0.0, 2 * math.log(3), 2 * math.log(4)],
                            [2 * math.log(2), 2 * math.log(2), 0.0],
                            [1.0, 2.0, 3.0]]], requires_grad=True)
    input_ids = torch.tensor([[1, 2, 0]])
    torch.testing.assert_close(logits.detach()[0, :2] / temperature,
                               torch.tensor([[0.0, math.log(3), math.log(4)], [math.log(2), math.log(2), 0.0]]))

    gathered, logsumexp = gathered_and_logsumexp(logits.detach()[0, :2], torch.tensor([2, 0]), temperature, 1)
    torch.testing.assert_close(logsumexp, torch.tensor([math.log(1 + 3 + 4), math.log(2 + 2 + 1)]))
    torch.testing.assert_close(gathered, torch.tensor([math.log(4), math.log(2)]))

    logprobs = sequence_logprobs(logits, input_ids, temperature, chunk_tokens=2)
    # ln 4 - ln 8 = -ln 2; ln 2 - ln 5 = ln 0.4; position 0 has no context.
    torch.testing.assert_close(logprobs, torch.tensor([[0.0, -math.log(2), math.log(0.4)]]))

    logprobs.sum().backward()
    # (onehot(y) - softmax(z / T)) / T: ([0, 0, 1] - [1, 3, 4] / 8) / 2 and ([1, 0, 0] - [2, 2, 1] / 5) / 2.
    torch.testing.assert_close(logits.grad, torch.tensor([[[-1 / 16, -3 / 16, 1 / 4],
                                                           [0.3, -0.2, -0.1],
                                                           [0.0, 0.0, 0.0]]]))


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
    other = (logits ** 2).sum()  # saves the logits; its backward runs after ours
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
