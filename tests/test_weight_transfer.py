"""vLLM's weight-transfer API as this project uses it: the bucket plan both sides cut the
stream by, a broadcast whose receiver died failing within its timeout, and (GPU, >= 2 GPUs:
NCCL cannot put two ranks on one device) the same WeightSync over vLLM's NCCL engine."""

import multiprocessing
import socket
import time

import pytest
import torch

from orchestrator.config import LearnerConfig
from tests.engine_probes import engine_versions
from weight_sync.transfer import plan_buckets

MB = 2**20


def test_buckets_keep_one_dtype_and_the_size_cap():
    # a = 1 MiB, b = 0.5 MiB: over a 1.2 MiB cap -> separate; c changes dtype; d is 4 MiB alone.
    sizes = [(MB, "float32"), (MB // 2, "float32"), (8, "bfloat16"), (4 * MB, "float32"), (8, "float32")]
    assert plan_buckets(sizes, int(1.2 * MB)) == [[0], [1], [2], [3], [4]]
    assert plan_buckets(sizes, 8 * MB) == [[0, 1], [2], [3, 4]]
    assert plan_buckets([], MB) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _receiver_that_dies(port: int) -> None:
    from weight_sync.transfer import _open_group

    _open_group("127.0.0.1", port, 1, 2, timeout_s=30)
    time.sleep(0.5)  # joined the group, then dies before the broadcast


@pytest.mark.slow  # two child processes
def test_a_broadcast_whose_receiver_died_fails_within_its_timeout():
    from weight_sync.transfer import _broadcast, _close_group, _open_group

    port = _free_port()
    receiver = multiprocessing.get_context("spawn").Process(target=_receiver_that_dies, args=(port,))
    receiver.start()
    group = _open_group("127.0.0.1", port, 0, 2, timeout_s=30)
    receiver.join(timeout=60)
    assert receiver.exitcode == 0
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="sending layer0 did not complete within 3 s"):
        for _ in range(50):  # gloo may buffer the first sends; a dead peer fails one of them
            _broadcast(group, torch.zeros(MB), timeout_s=3, what="sending layer0")
    assert time.monotonic() - started < 3 * 50
    _close_group(group)


@pytest.mark.gpu
@pytest.mark.slow  # Ray, vLLM, DeepSpeed
def test_nccl_sync_matches_learner_weights(ray_local, tiny_model):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs (one engine, one learner rank): NCCL cannot put two ranks on one device")
    from learner.world import LearnerWorld
    from rollout.fleet import EngineFleet
    from weight_sync.driver import WeightSync

    fleet = EngineFleet(
        num_engines=1,
        resources_per_engine={"GPU": 1},
        engine_kwargs=dict(model_path=tiny_model, max_model_len=128, gpu_memory_utilization=0.3, seed=0),
    )
    learner = LearnerWorld(
        world_size=1,
        micro_batch_tokens=4096,
        resources_per_rank={"GPU": 1},
        max_len=32,
        worker_kwargs=dict(
            model_path=tiny_model,
            algo={"name": "grpo"},
            dtype="float32",
            temperature=1.0,
            total_steps=1,
            seed=0,
            learner=LearnerConfig(
                zero_stage=0,
                lr=1e-3,
                weight_decay=0.0,
                warmup_steps=0,
                lr_schedule="constant",
                max_grad_norm=1.0,
                gradient_checkpointing=False,
            ).model_dump(),
        ),
    )
    sync = WeightSync(fleet, learner, on_gpu=True, bucket_mb=1, timeout_s=120)
    assert sync.push() == 1 and engine_versions(fleet) == [1]
    assert sync.push(version=7) == 7 and engine_versions(fleet) == [7]
    sync.close()
