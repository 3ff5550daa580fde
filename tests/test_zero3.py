"""The learner at ZeRO-3 on CPU: world size 2, gloo, one shared learner for the module.

The model is built partitioned (``zero.Init``, each rank holds about half of every large
weight), and so is the frozen reference (``kl_coef > 0``). A non-finite loss on one rank
skips the step on both without a hang and leaves nothing behind: the next step equals a
plain-torch step from the start. Checkpoints restore weights, Adam's state and the LR
schedule exactly (a fresh learner that loads one takes the same next step bit for bit),
and ``save_pretrained`` writes the full weights. The gradient equivalence of ZeRO-3 with a
full-batch step is ``tests/test_learner_world.py``.
"""

import copy
import math
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from learner.algorithms import GRPOConfig
from learner.logprobs import sequence_logprobs
from orchestrator.config import LearnerConfig
from tests.test_learner_world import LR, _batch, _reference_step

pytestmark = pytest.mark.slow  # DeepSpeed ZeRO-3 ranks on Ray

TIMEOUT_S = 120  # a hang fails the test instead of blocking the suite; a step takes ~1 s
ALGO = GRPOConfig(kl_coef=0.1, clip_low=0.02, clip_high=0.02)  # kl_coef > 0: the reference is built too


def _group(tiny_model: str):
    from learner.world import LearnerWorld

    return LearnerWorld(
        world_size=2,
        micro_batch_tokens=20,
        resources_per_rank={"CPU": 0.5},
        max_len=32,
        worker_kwargs=dict(
            model_path=tiny_model,
            algo=ALGO.model_dump(),
            dtype="float32",
            temperature=1.0,
            total_steps=10,
            seed=0,
            learner=LearnerConfig(
                zero_stage=3,
                lr=LR,
                weight_decay=0.0,
                warmup_steps=0,
                # cosine: the LR of the step after a skip shows whether the skip moved it
                lr_schedule="cosine",
                max_grad_norm=1e6,
                gradient_checkpointing=False,
                # fixed: the checkpoint round trip compares bits with an uninterrupted learner,
                # whose update a timing-tuned count (the default) might have run on fewer threads
                cpu_threads=os.cpu_count() or 1,
            ).model_dump(),
        ),
    )


@pytest.fixture(scope="module")
def setup(ray_local, tiny_model):
    """(learner, model, batch): the untrained model, a batch with ref log-probs, a fresh learner."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(model.config.vocab_size, model)
    with torch.no_grad():
        batch.ref_logprobs = sequence_logprobs(
            model(batch.input_ids, attention_mask=batch.attention_mask).logits, batch.input_ids
        )  # [B, T]
    learner = _group(tiny_model)
    try:
        yield learner, model, batch
    finally:
        learner.shutdown()


def _on_each_rank(learner, fn) -> list:
    """``fn(worker)`` run inside every rank's actor (``fn`` must be a lambda or a nested function)."""
    import ray

    return ray.get([w.__ray_call__.remote(fn) for w in learner.workers], timeout=TIMEOUT_S)


def _state(worker) -> dict:
    """This rank's optimizer state: Adam's moments and step, the fp32 master partition, the schedule."""
    optimizer = worker.engine.optimizer
    adam = [
        {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.optimizer.state[p].items()}
        for group in optimizer.optimizer.param_groups
        for p in group["params"]
    ]
    return dict(
        adam=adam,
        master=[t.clone() for t in optimizer.fp32_partitioned_groups_flat],
        schedule=worker.engine.lr_scheduler.state_dict(),
        global_steps=worker.engine.global_steps,
    )


def _assert_equal(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    else:
        assert a == b


def test_policy_and_reference_are_built_partitioned_with_the_model_weights(setup):
    import ray

    learner, model, batch = setup
    hidden = model.config.hidden_size

    def placement(worker):
        return {
            name: [(p.numel(), p.ds_tensor.numel(), p.ds_numel) for _, p in engine.module.named_parameters()]
            for name, engine in (("policy", worker.engine), ("reference", worker.reference))
        }

    def load_fresh(worker):  # both ranks at once: loading gathers each weight to rank 0 and back
        model = worker._load_model(worker._ds_config(train=True))
        return [(p.numel(), p.ds_tensor.numel(), p.ds_numel) for p in model.parameters()]

    for params in _on_each_rank(learner, load_fresh):  # zero.Init: partitioned as it is built
        assert all(held == 0 and part == math.ceil(full / 2) for held, part, full in params)

    for rank, engines in enumerate(_on_each_rank(learner, placement)):
        for name, params in engines.items():
            # Weights over 10 x hidden live only as this rank's half (norms and biases stay whole).
            large = [(held, part, full) for held, part, full in params if full > 10 * hidden]
            assert len(large) >= 14, (rank, name)  # embedding, head, 2 x (4 attention + 3 MLP)
            assert all(held == 0 and part == math.ceil(full / 2) for held, part, full in large), (rank, name)

    weights = ray.get(learner.export_weights(), timeout=TIMEOUT_S)  # gathered: full shapes
    expected = model.state_dict()
    assert weights.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(weights[name], value), name

    reference = learner.logprobs(batch, "reference")  # [B, T]
    policy = learner.logprobs(batch, "policy")
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(reference[mask], batch.ref_logprobs[mask])
    torch.testing.assert_close(policy[mask], batch.ref_logprobs[mask])


def _train_every_rank(learner, batch) -> list[dict]:
    """``LearnerWorld.train``'s dispatch, answering every rank's metrics (and never waiting forever)."""
    import ray

    norms = dict(
        global_tokens=float(batch.loss_mask.sum()),
        global_seqs=float((batch.loss_mask.sum(dim=-1) > 0).sum()),
        max_len=learner.max_len,
    )
    calls = [
        w.train.remote([batch.select(rows) for rows in micro], norms)
        for w, micro in zip(learner.workers, learner._split(batch))
    ]
    return ray.get(calls, timeout=TIMEOUT_S)


def test_non_finite_loss_on_one_rank_skips_the_step_on_both_without_a_hang(setup):
    import ray

    learner, model, batch = setup
    assert _on_each_rank(learner, lambda w: w.engine.global_steps) == [0, 0], "needs the untrained learner"
    plan = learner._split(batch)
    rank1_rows = sorted(row for micro in plan[1] for row in micro)
    assert len(plan[1]) >= 2 and rank1_rows  # several micro-batches, so backwards follow the bad one
    # Poison rank 1's first micro-batch only: rank 0's losses stay finite, and rank 1 must keep
    # running backward (its later micro-batches included) while rank 0 reduces gradients.
    poisoned = copy.deepcopy(batch)
    poisoned.advantages[plan[1][0][0]] = float("nan")  # e.g. a reward function that returned NaN
    rank0_rows = {row for micro in plan[0] for row in micro}
    assert plan[1][0][0] not in rank0_rows and learner._split(poisoned) == plan

    before = ray.get(learner.export_weights(), timeout=TIMEOUT_S)
    states = _on_each_rank(learner, _state)
    skipped = _train_every_rank(learner, poisoned)
    assert [m["learner/skipped_nonfinite"] for m in skipped] == [1.0, 1.0]
    assert all(math.isnan(m["learner/lr"]) and math.isnan(m["learner/grad_norm"]) for m in skipped)
    after = ray.get(learner.export_weights(), timeout=TIMEOUT_S)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    for old, new in zip(states, _on_each_rank(learner, _state)):
        _assert_equal(old, new)  # Adam's state, master weights, LR schedule and step count: untouched

    def leftover_gradients(worker):
        buffer = worker.engine.optimizer.grad_partitions_flat_buffer
        params = worker.engine.module.parameters()
        return int(torch.count_nonzero(buffer)), sum(p.grad is not None for p in params)

    assert _on_each_rank(learner, leftover_gradients) == [(0, 0), (0, 0)]

    # The next step is the plain-torch step from the start: nothing of the skipped one remains.
    ref_loss, ref_norm, ref_grads, ref_weights = _reference_step(model, batch, ALGO)
    with ThreadPoolExecutor(1) as pool:  # the group's own train(), with a deadline
        metrics = pool.submit(learner.train, batch).result(timeout=TIMEOUT_S)
    trained = ray.get(learner.export_weights(), timeout=TIMEOUT_S)
    assert metrics["learner/skipped_nonfinite"] == 0.0
    assert metrics["learner/lr"] == LR  # cosine step 0: the skip did not advance the schedule
    assert metrics["loss/total"] == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    assert metrics["learner/grad_norm"] == pytest.approx(ref_norm, rel=1e-4)
    # As in test_learner_world: exact where |g| >> Adam's eps, bounded by LR elsewhere.
    for name, expected in ref_weights.items():
        clear = ref_grads[name].abs() > 1e-5
        torch.testing.assert_close(trained[name][clear], expected[clear], rtol=0, atol=1e-3 * LR)
        assert (trained[name] - expected).abs().max() <= 2 * LR, name
    assert _on_each_rank(learner, lambda w: w.engine.global_steps) == [1, 1]


def test_checkpoint_round_trip_resumes_with_the_same_step(setup, tmp_path, tiny_model):
    import ray

    learner, _, batch = setup
    learner.train(batch)  # Adam's moments and the schedule are not at their start
    saved_weights = ray.get(learner.export_weights(), timeout=TIMEOUT_S)
    saved_states = _on_each_rank(learner, _state)
    learner.save_checkpoint(str(tmp_path), {"step": 7})

    following = copy.deepcopy(batch)
    following.advantages = -following.advantages
    uninterrupted = learner.train(following)
    uninterrupted_weights = ray.get(learner.export_weights(), timeout=TIMEOUT_S)

    resumed = _group(tiny_model)  # a fresh learner, as a resumed run builds
    try:
        assert resumed.load_checkpoint(str(tmp_path))["step"] == 7
        weights = ray.get(resumed.export_weights(), timeout=TIMEOUT_S)
        for name in saved_weights:
            assert torch.equal(weights[name], saved_weights[name]), name
        for old, new in zip(saved_states, _on_each_rank(resumed, _state)):
            _assert_equal(old, new)
        step = resumed.train(following)
        step_weights = ray.get(resumed.export_weights(), timeout=TIMEOUT_S)
    finally:
        resumed.shutdown()
    assert step == uninterrupted
    for name in uninterrupted_weights:
        assert torch.equal(step_weights[name], uninterrupted_weights[name]), name


def test_save_pretrained_writes_the_full_weights(setup, tmp_path):
    import ray
    from transformers import AutoModelForCausalLM

    learner, _, _ = setup
    weights = ray.get(learner.export_weights(), timeout=TIMEOUT_S)
    learner.save_pretrained(str(tmp_path))
    saved = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).state_dict()
    assert saved.keys() == weights.keys()
    for name, value in weights.items():
        assert torch.equal(saved[name], value), name
