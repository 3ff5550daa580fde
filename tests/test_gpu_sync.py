"""GPU path: NCCL weight broadcast from learner rank 0 into a vLLM engine (needs >= 2 GPUs:
NCCL cannot put two ranks on one device). Run with `make test-gpu`."""

import pytest
import torch

from rollout.nccl_sync import plan_buckets

MB = 2**20


def test_buckets_keep_one_dtype_and_the_size_cap():
    metadata = [("a", "float32", [MB // 4]), ("b", "float32", [MB // 8]), ("c", "bfloat16", [4]),
                ("d", "float32", [MB]), ("e", "float32", [2])]
    # a = 1 MiB, b = 0.5 MiB: over a 1.2 MiB cap -> separate; c changes dtype; d is 4 MiB alone.
    assert plan_buckets(metadata, int(1.2 * MB)) == [[0], [1], [2], [3], [4]]
    assert plan_buckets(metadata, 8 * MB) == [[0, 1], [2], [3, 4]]


@pytest.mark.gpu
def test_nccl_sync_matches_learner_weights(ray_local, tiny_model):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs (one engine, one learner rank)")
    import ray

    from learner.group import LearnerGroup
    from rollout.fleet import EngineFleet
    from rollout.nccl_sync import NcclWeightSync

    fleet = EngineFleet(num_engines=1, resources_per_engine={"GPU": 1}, engine_kwargs=dict(
        model_path=tiny_model, max_model_len=128, gpu_memory_utilization=0.3, seed=0))
    learner = LearnerGroup(world_size=1, micro_batch_tokens=4096, resources_per_rank={"GPU": 1}, max_len=32,
                           worker_kwargs=dict(model_path=tiny_model, algo={"name": "grpo"}, dtype="float32",
                                              temperature=1.0, total_steps=1, seed=0, learner=dict(
                                                  zero_stage=0, lr=1e-3, weight_decay=0.0, warmup_steps=0,
                                                  lr_schedule="constant", max_grad_norm=1.0,
                                                  gradient_checkpointing=False)))
    sync = NcclWeightSync(fleet, learner, bucket_mb=1)
    weights = ray.get(learner.export_weights())
    perturbed = {k: v + 0.01 for k, v in weights.items()}
    ray.get(fleet.engines[0].update_weights.remote(0, perturbed))  # engine now differs from learner
    probe = [3, 14, 15, 92, 65, 35]
    off = torch.tensor(fleet.score([probe])[0])
    assert sync.push() == 1 and fleet.versions() == [1]
    on = torch.tensor(fleet.score([probe])[0])
    assert (on - off).abs().max() > 1e-3
    fleet.update_weights(learner.export_weights())  # object-store reference path, version 2
    assert (torch.tensor(fleet.score([probe])[0]) - on).abs().max() < 1e-4
