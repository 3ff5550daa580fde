"""Padding-free forward passes (learner.varlen): packing a micro-batch into one row and back,
attention kept within each row, the worker's packed log-probs equal to its padded ones, and
the planner bounding real tokens instead of padded size."""

import math
import random

import pytest
import torch

from learner.batch import TrainBatch, pad_rows
from learner.packing import plan_micro_batches
from learner.varlen import pack_rows, packed_attention
from learner.worker import PACKED_ATTENTION
from tests.in_process_learner import in_process_worker

# Rows of 3, 2 and 1 tokens, right-padded to 4 with token 0.
INPUT_IDS = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [4, 0, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])


def test_pack_rows_by_hand():
    packed = pack_rows(INPUT_IDS, MASK)
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 4]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1, 0]]  # restarting at each row
    assert packed.starts.tolist() == [[True, False, False, True, False, True]]
    assert packed.valid.tolist() == MASK.bool().tolist()


def test_unpack_by_hand_and_its_gradient():
    packed = pack_rows(INPUT_IDS, MASK)
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], requires_grad=True)
    out = packed.unpack(values)
    assert out.tolist() == [[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 0.0, 0.0], [6.0, 0.0, 0.0, 0.0]]
    # Each packed value lands in one place: d sum(w * out) / d values = w at that place.
    weights = torch.arange(12.0).view(3, 4)
    (out * weights).sum().backward()
    assert values.grad.tolist() == [[0.0, 1.0, 2.0, 4.0, 5.0, 8.0]]
    with pytest.raises(ValueError, match="do not match"):
        packed.unpack(values[:, :5])


def test_pack_rows_needs_right_padding():
    with pytest.raises(ValueError, match="right-padded"):
        pack_rows(INPUT_IDS, torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]))  # left padding
    with pytest.raises(ValueError, match="right-padded"):
        pack_rows(INPUT_IDS, torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]))  # a hole


def test_packed_attention_by_hand_stays_within_each_row():
    # Zero queries score every visible key alike, so each output is the mean of the values
    # its query sees: rows [1, 3] and [5] give 1, (1 + 3) / 2 = 2, and 5 (not (1 + 3 + 5) / 3).
    # Two query heads share one key/value head (grouped-query attention): both get the same.
    position_ids = torch.tensor([[0, 1, 0]])
    query = torch.zeros(1, 2, 3, 1)  # [1, heads, N, head_dim]
    key = torch.randn(1, 1, 3, 1)
    value = torch.tensor([1.0, 3.0, 5.0]).view(1, 1, 3, 1)
    out, weights = packed_attention(None, query, key, value, None, position_ids=position_ids)
    assert weights is None
    assert out.shape == (1, 3, 2, 1)  # [1, N, heads, head_dim]
    assert out[0, :, 0, 0].tolist() == [1.0, 2.0, 5.0]
    assert out[0, :, 1, 0].tolist() == [1.0, 2.0, 5.0]
    with pytest.raises(ValueError, match="no attention mask"):
        packed_attention(None, query, key, value, torch.ones(1, 3), position_ids=position_ids)


def test_packed_attention_equals_each_row_alone_with_gradients():
    generator = torch.Generator().manual_seed(0)
    lengths = [5, 1, 3]
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)  # [1, 9]
    query, key, value = (
        torch.randn(1, 2, 9, 4, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(3)
    )
    out, _ = packed_attention(None, query, key, value, None, position_ids=position_ids, scaling=0.3)
    pieces, start = [], 0
    for n in lengths:
        rows = slice(start, start + n)
        piece = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, rows], key[:, :, rows], value[:, :, rows], is_causal=True, scale=0.3
        )
        pieces.append(piece.transpose(1, 2))  # [1, n, heads, head_dim]
        start += n
    expected = torch.cat(pieces, dim=1)
    torch.testing.assert_close(out, expected)
    weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), (query, key, value))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (query, key, value))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_worker_packed_logprobs_and_gradients_equal_padded(tiny_model, top_p):
    """The worker's own forward, packed vs padded, on rows of 3 to 17 tokens: the same
    log-probs (0 at each row's first position and at padding) and the same gradients."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 12), (3, 1), (6, 9), (2, 1), (4, 7)]  # (prompt, response) tokens
    draw = lambda n: torch.randint(1, 300, (n,), generator=generator).tolist()  # noqa: E731
    input_ids, attention_mask, _, _ = pad_rows([draw(p) for p, _ in shapes], [draw(r) for _, r in shapes], pad_id=0)
    batch = TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=attention_mask.float(),
        advantages=torch.zeros(5),
        group_index=torch.arange(5),
    )
    weights = torch.rand(input_ids.shape, generator=generator) * attention_mask  # a loss on real tokens only
    results = {}
    for padding_free in (False, True):
        worker, model = in_process_worker(tiny_model, padding_free=padding_free, temperature=0.7, top_p=top_p)
        # Packed rows run through packed_attention, not transformers' dense-mask sdpa.
        assert (model.config._attn_implementation == PACKED_ATTENTION) == padding_free
        logprobs = worker._logprobs(model, batch)  # [B, T]
        (logprobs * weights).sum().backward()
        results[padding_free] = logprobs.detach(), {n: p.grad for n, p in model.named_parameters()}
    (padded, padded_grads), (packed, packed_grads) = results[False], results[True]
    real = attention_mask.bool()
    assert packed.shape == padded.shape
    assert (packed[~real] == 0).all() and (packed[:, 0] == 0).all()
    assert (packed[real][1:] != 0).any()
    assert (packed - padded)[real].abs().max() < 1e-5
    assert set(packed_grads) == set(padded_grads)
    for name, grad in padded_grads.items():
        assert grad.abs().max() > 0, name  # every weight has a gradient, so a mismatch cannot hide
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_flash_attention_varlen_packed_equals_padded_on_gpu(tiny_model):
    """On a GPU with flash_attn and bf16, packed rows take flash-attn's varlen kernel; its
    log-probs on real tokens match the padded forward's to bf16 precision."""
    pytest.importorskip("flash_attn")
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 40), (3, 7), (6, 25)]
    draw = lambda n: torch.randint(1, 300, (n,), generator=generator).tolist()  # noqa: E731
    input_ids, attention_mask, _, _ = pad_rows([draw(p) for p, _ in shapes], [draw(r) for _, r in shapes], pad_id=0)
    batch = TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=attention_mask.float(),
        advantages=torch.zeros(3),
        group_index=torch.arange(3),
    )
    results = {}
    for padding_free in (False, True):
        worker, model = in_process_worker(tiny_model, padding_free=padding_free, dtype="bfloat16")
        assert (model.config._attn_implementation == "flash_attention_2") == padding_free
        with torch.no_grad():
            results[padding_free] = worker._logprobs(model, batch).float().cpu()
    real = attention_mask.bool()
    assert (results[True] - results[False])[real].abs().max() < 0.05  # bf16 logits, two kernels


def test_padding_free_plan_bounds_tokens_not_padded_size():
    # [8, 2, 2, 2, 2] at 16: padded, {8, 2} is 2 x 8 = 16 and the rest a second micro-batch
    # (the smallest budget that keeps 2 is 8: {8}, {2, 2, 2, 2}); padding-free all five rows
    # hold 8 + 4 x 2 = 16 tokens: one micro-batch.
    assert plan_micro_batches([8, 2, 2, 2, 2], 1, 16) == [[[0], [1, 2, 3, 4]]]
    assert plan_micro_batches([8, 2, 2, 2, 2], 1, 16, padding_free=True) == [[[0, 1, 2, 3, 4]]]
    # Longest first, next fit at 20: {10, 9} (19) then {3, 3, 2, 2} (10); at 19 still 2.
    assert plan_micro_batches([10, 2, 9, 3, 2, 3], 1, 20, padding_free=True) == [[[0, 2], [1, 3, 4, 5]]]
    # An over-long row goes alone; an idle rank still gets one (empty) micro-batch.
    assert plan_micro_batches([50, 1], 1, 10, padding_free=True) == [[[0], [1]]]
    assert plan_micro_batches([3], 2, 10, padding_free=True) == [[[0]], [[]]]


def test_padding_free_plan_of_a_long_tailed_batch():
    # The long-tailed GRPO step of test_loop_parts (512 rows, 308,315 tokens, 4 ranks, 16,384
    # tokens per micro-batch): at least ceil(308,315 / 16,384) = 19 micro-batches, so 5 per rank.
    rng = random.Random(0)
    lengths = [rng.randint(60, 200) + min(2048, int(rng.lognormvariate(math.log(350), 0.8))) for _ in range(512)]
    plan = plan_micro_batches(lengths, world_size=4, token_budget=16_384, padding_free=True)
    assert [len(rank) for rank in plan] == [5] * 4
    assert sorted(r for rank in plan for micro in rank for r in micro) == list(range(512))
    sizes = [sum(lengths[r] for r in micro) for rank in plan for micro in rank]
    assert max(sizes) <= 16_384 and sum(sizes) == 308_315
