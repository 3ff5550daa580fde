"""The DeepSpeed learner on a Ray cluster: an optimizer step split over micro-batches and
two gloo ranks equals one plain-torch full-batch step (gradient norm, loss, new weights)."""

import copy

import pytest
import torch

from learner.algorithms import GRPOConfig, algorithm_loss
from learner.batch import TrainBatch, pad_rows
from learner.logprobs import sequence_logprobs
from orchestrator.config import LearnerConfig

pytestmark = pytest.mark.slow  # Ray and DeepSpeed learner ranks

LR = 1e-3
ROWS = [(5, 9), (4, 3), (6, 12), (5, 7), (4, 10), (6, 4), (5, 6)]  # (prompt, response) lengths


def _batch(vocab: int, model) -> TrainBatch:
    generator = torch.Generator().manual_seed(0)
    draw = lambda n: torch.randint(1, vocab, (n,), generator=generator).tolist()  # noqa: E731
    input_ids, attention_mask, loss_mask, _ = pad_rows([draw(p) for p, _ in ROWS], [draw(r) for _, r in ROWS], pad_id=0)
    batch = TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        advantages=torch.tensor([1.0, -0.5, 0.8, -1.2, 0.3, 0.9, -1.3]),
        group_index=torch.arange(len(ROWS)),
    )
    with torch.no_grad():  # behaviour policy slightly off the current one: ratios != 1, clipping live
        batch.old_logprobs = sequence_logprobs(model(input_ids, attention_mask=attention_mask).logits, input_ids) + 0.05
    return batch


def _reference_step(model, batch: TrainBatch, algo: GRPOConfig):
    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    logprobs = sequence_logprobs(model(batch.input_ids, attention_mask=batch.attention_mask).logits, batch.input_ids)
    loss, metrics = algorithm_loss(logprobs, batch, algo, max_len=32)
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    return loss.item(), grad_norm.item(), grads, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "agg_mode,zero_stage",
    [
        ("seq-mean-token-mean", 0),
        ("token-mean", 0),
        ("seq-mean-token-sum-norm", 0),
        ("seq-mean-token-mean", 2),
        ("seq-mean-token-mean", 3),
    ],
)
def test_two_ranks_and_micro_batches_equal_full_batch_step(ray_local, tiny_model, agg_mode, zero_stage):
    import ray
    from transformers import AutoModelForCausalLM

    from learner.world import LearnerWorld

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(model.config.vocab_size, model)
    algo = GRPOConfig(agg_mode=agg_mode, clip_low=0.02, clip_high=0.02)
    ref_loss, ref_norm, ref_grads, ref_weights = _reference_step(model, batch, algo)
    assert ref_norm > 1e-3  # a real gradient, so a wrong scale cannot hide

    lengths = batch.attention_mask.sum(-1).tolist()
    for world_size, budget in ((1, 10_000), (2, 20)):  # (2, 20): 2 ranks x several micro-batches
        group = LearnerWorld(
            world_size=world_size,
            micro_batch_tokens=budget,
            resources_per_rank={"CPU": 0.5},
            max_len=32,
            worker_kwargs=dict(
                model_path=tiny_model,
                algo=algo.model_dump(),
                dtype="float32",
                temperature=1.0,
                total_steps=10,
                seed=0,
                learner=LearnerConfig(
                    zero_stage=zero_stage,
                    lr=LR,
                    weight_decay=0.0,
                    warmup_steps=0,
                    lr_schedule="constant",
                    max_grad_norm=1e6,
                    gradient_checkpointing=False,
                ).model_dump(),
            ),
        )
        try:
            if world_size == 2:
                assert group._split(batch)[0] and len(group._split(batch)[0]) >= 2, lengths
            metrics = group.train(batch)
            weights = ray.get(group.export_weights())
        finally:
            group.shutdown()
        assert metrics["learner/skipped_nonfinite"] == 0.0
        assert metrics["loss/total"] == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
        assert metrics["learner/grad_norm"] == pytest.approx(ref_norm, rel=1e-4)
        # Adam's first step is lr * g / (|g| + eps): ~LR * sign(g) where |g| >> eps, so there
        # the weights must agree to 0.1% of LR; where |g| is near eps (1e-8), float rounding of
        # g is amplified and only the bound |step| <= LR holds. The gradient norm above pins
        # the scale, this pins the direction of every element.
        moved = max((ref_weights[n] - model.state_dict()[n]).abs().max().item() for n in ref_weights)
        assert moved == pytest.approx(LR, rel=0.01)
        checked = 0
        for name, expected in ref_weights.items():
            grad = ref_grads.get(name.removeprefix("module."))
            clear = grad.abs() > 1e-5 if grad is not None else torch.ones_like(expected, dtype=torch.bool)
            checked += int(clear.sum())
            torch.testing.assert_close(
                weights[name][clear], expected[clear], rtol=0, atol=1e-3 * LR, msg=lambda m, name=name: f"{name}: {m}"
            )
            assert (weights[name] - expected).abs().max() <= 2 * LR, name
        assert checked > 100_000  # most of the 0.6M weights are pinned exactly


def test_non_finite_loss_skips_the_step_without_touching_weights_or_schedule(ray_local, tiny_model):
    import ray
    from transformers import AutoModelForCausalLM

    from learner.world import LearnerWorld

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(model.config.vocab_size, model)
    poisoned = copy.deepcopy(batch)
    poisoned.advantages[3] = float("nan")  # e.g. a reward function that returned NaN
    group = LearnerWorld(
        world_size=1,
        micro_batch_tokens=20,
        resources_per_rank={"CPU": 0.5},
        max_len=32,
        worker_kwargs=dict(
            model_path=tiny_model,
            algo=GRPOConfig().model_dump(),
            dtype="float32",
            temperature=1.0,
            total_steps=10,
            seed=0,
            learner=LearnerConfig(
                zero_stage=0,
                lr=LR,
                weight_decay=0.0,
                warmup_steps=2,
                lr_schedule="constant",
                max_grad_norm=1.0,
                gradient_checkpointing=False,
            ).model_dump(),
        ),
    )
    try:
        before = ray.get(group.export_weights())
        skipped = group.train(poisoned)
        after_skip = ray.get(group.export_weights())
        trained = group.train(batch)
        after_train = ray.get(group.export_weights())
    finally:
        group.shutdown()
    assert skipped["learner/skipped_nonfinite"] == 1.0
    assert all(torch.equal(before[n], after_skip[n]) for n in before)
    assert trained["learner/skipped_nonfinite"] == 0.0
    assert trained["learner/lr"] == pytest.approx(LR / 3)  # warm-up step 1 of 2: the skip did not advance it
    assert any(not torch.equal(before[n], after_train[n]) for n in before)


def _sequential_reference(model, batch: TrainBatch, algo: GRPOConfig, steps: list[list[int]], lr: float):
    """Plain torch: one AdamW step per mini-batch in order, each with its own normalisers."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    clip_fracs = []
    for rows in steps:
        part = batch.select(rows)
        logprobs = sequence_logprobs(model(part.input_ids, attention_mask=part.attention_mask).logits, part.input_ids)
        loss, metrics = algorithm_loss(logprobs, part, algo, max_len=32)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        clip_fracs.append(metrics["loss/clip_frac"].item())
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, clip_fracs


def test_mini_batches_and_epochs_are_sequential_steps_where_clipping_acts(ray_local, tiny_model):
    """learner.mini_batch_size=3 groups, epochs=2 on 7 groups: steps [0-2], [3-5], [6], twice; the
    old log-probs are fixed before the first step, so later steps see ratios != 1 and the clip
    range acts; DAPO's clip-higher then changes the update relative to symmetric clipping."""
    import ray
    from transformers import AutoModelForCausalLM

    from learner.world import LearnerWorld

    lr = 1e-2  # large enough that the policy moves past the clip range within a few steps
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(model.config.vocab_size, model)
    batch.old_logprobs = batch.old_logprobs - 0.05  # exactly the current policy: ratio 1 at step 1
    steps = [[0, 1, 2], [3, 4, 5], [6]] * 2
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    results = {}
    for clip_high in (0.2, 0.28):
        algo = GRPOConfig(agg_mode="token-mean", clip_low=0.2, clip_high=clip_high)
        expected, ref_clip = _sequential_reference(model, batch, algo, steps, lr)
        group = LearnerWorld(
            world_size=1,
            micro_batch_tokens=10_000,
            resources_per_rank={"CPU": 0.5},
            max_len=32,
            mini_batch_size=3,
            epochs=2,
            worker_kwargs=dict(
                model_path=tiny_model,
                algo=algo.model_dump(),
                dtype="float32",
                temperature=1.0,
                total_steps=10,
                seed=0,
                learner=LearnerConfig(
                    zero_stage=0,
                    lr=lr,
                    weight_decay=0.0,
                    warmup_steps=0,
                    lr_schedule="constant",
                    max_grad_norm=1e6,
                    gradient_checkpointing=False,
                ).model_dump(),
            ),
        )
        try:
            assert group.optimizer_steps(batch) == 6
            metrics = group.train(batch)
            weights = ray.get(group.export_weights())
        finally:
            group.shutdown()
        assert metrics["learner/optimizer_steps"] == 6.0 and metrics["learner/skipped_nonfinite"] == 0.0
        assert ref_clip[0] == 0.0 and max(ref_clip) > 0.05  # ratio 1 at step 1, clipping later
        assert metrics["loss/clip_frac"] == pytest.approx(sum(ref_clip) / 6, abs=0.02)
        assert metrics["loss/clip_frac"] > 0.0
        # After six Adam steps, elements whose gradient is near Adam's eps differ by rounding;
        # the distance travelled must agree to 1%.
        travelled = sum(((expected[n] - initial[n]) ** 2).sum() for n in expected).sqrt()
        off = sum(((weights[n] - expected[n]) ** 2).sum() for n in expected).sqrt()
        assert off < 0.01 * travelled, (off, travelled)
        results[clip_high] = weights, off
    (symmetric, off_symmetric), (higher, off_higher) = results[0.2], results[0.28]
    changed = sum(((higher[n] - symmetric[n]) ** 2).sum() for n in symmetric).sqrt()
    # clip-higher acts: the two updates differ by several times the learner's reproduction error
    assert changed > 3 * max(off_symmetric, off_higher) and changed > 0.01 * travelled, (changed, off_symmetric)


def test_async_cpu_cores_are_disjoint_halves_dealt_out_per_actor():
    from orchestrator.placement import PlacementError, cpu_core_split

    assert cpu_core_split([0, 1], engines=1, ranks=1) == ([[0]], [[1]])  # this machine
    # 16 cores, 2 engines, 3 ranks: engines 0-7 in runs of 4; ranks 8-15 in runs of 2, the last
    # takes the remainder
    engines, ranks = cpu_core_split(list(range(16)), engines=2, ranks=3)
    assert engines == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert ranks == [[8, 9], [10, 11], [12, 13, 14, 15]]
    # more engines than their half: one core each, shared round-robin
    assert cpu_core_split([4, 5, 6], engines=3, ranks=1) == ([[4], [4], [4]], [[5, 6]])
    with pytest.raises(PlacementError, match="needs at least 2 cores, this node gives the run 1"):
        cpu_core_split([0], engines=1, ranks=1)
